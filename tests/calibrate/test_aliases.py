"""Precision names as engines and vendors publish them map to tokenomy's formats."""

import pytest

from tokenomy.catalog.errors import CatalogError
from tokenomy.costmodel.quant import (
    PRECISION_ALIASES,
    WEIGHT_FORMATS,
    canonical_kv_precision,
    canonical_precision,
    kv_bytes_per_value,
    weight_format,
)

PUBLISHED = [
    ("FP4", "nvfp4"),  # TensorRT-LLM perf tables call NVFP4 "FP4"
    ("fp4", "nvfp4"),
    ("NVFP4", "nvfp4"),
    ("FP8", "fp8"),
    ("fp8_e4m3", "fp8"),
    ("W8A8-FP8", "fp8"),
    ("BF16", "bf16"),
    ("bfloat16", "bf16"),
    ("fp16", "fp16"),
    ("FP16", "fp16"),
    ("float16", "fp16"),
    ("W4A16", "int4"),
    ("int4-awq", "awq"),
    ("INT4_AWQ", "awq"),
    ("w4a16 awq", "awq"),
    ("int4-gptq", "gptq"),
    ("W8A8-SQ", "int8"),
    ("MXFP4", "mxfp4"),
    ("mxfp4-experts", "mxfp4-experts"),
    ("Q4_K_M", "q4_k_m"),
]


@pytest.mark.parametrize(("published", "ours"), PUBLISHED)
def test_published_precision_names_map_to_our_formats(published, ours):
    assert canonical_precision(published) == ours
    assert weight_format(published) is WEIGHT_FORMATS[ours]


@pytest.mark.parametrize("alias", sorted(PRECISION_ALIASES))
def test_every_alias_in_the_table_resolves_to_a_known_format(alias):
    assert PRECISION_ALIASES[alias] in WEIGHT_FORMATS
    assert canonical_precision(alias.upper().replace("_", "-")) == PRECISION_ALIASES[alias]


def test_fp4_is_nvfp4_not_mxfp4():
    assert weight_format("FP4").bits_per_weight == pytest.approx(4.5)


@pytest.mark.parametrize(
    ("published", "ours"), [("FP8", "fp8"), ("bfloat16", "bf16"), ("NVFP4", "fp4"), ("auto", "auto")]
)
def test_kv_precision_aliases(published, ours):
    assert canonical_kv_precision(published) == ours


def test_kv_bytes_accept_aliases():
    assert kv_bytes_per_value("FP8_E4M3") == 1.0


def test_unknown_precision_names_suggestions():
    with pytest.raises(CatalogError, match="unknown precision 'fp5'.*Did you mean"):
        canonical_precision("fp5")
