"""plan warns when a weight format's matmuls cannot run as its name says: no 8- or 4-bit matrix units (the weights are
dequantised to 16-bit matmuls), or NVIDIA's NVFP4 asked of an AMD accelerator that runs MX formats."""

from __future__ import annotations

import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.plan import Workload, warnings


def _warnings(gpu: str, precision: str) -> list[str]:
    d = Deployment(load_model("llama-3.1-8b"), load_accelerator(gpu), precision=precision, profile=load_profile("vllm"))
    return warnings(d, Workload(prompt_tokens=1024, output_tokens=256))


@pytest.mark.parametrize(
    ("gpu", "precision", "compute"), [("H100-SXM", "nvfp4", "fp4"), ("A100-SXM-80GB", "fp8", "fp8")]
)
def test_a_low_precision_format_without_its_matrix_units_says_it_runs_dequantised(
    gpu: str, precision: str, compute: str
) -> None:
    (warning,) = _warnings(gpu, precision)
    assert f"{gpu} has no {compute} matrix units" in warning and "bf16 matmuls" in warning


def test_nvfp4_on_an_amd_gpu_with_fp4_units_names_mxfp4() -> None:
    (warning,) = _warnings("MI355X", "nvfp4")
    assert "NVIDIA's FP4 format" in warning and "--precision mxfp4" in warning


@pytest.mark.parametrize(
    ("gpu", "precision"), [("MI355X", "mxfp4"), ("B200", "nvfp4"), ("H100-SXM", "fp8"), ("A100-SXM-80GB", "int4")]
)
def test_a_format_that_runs_as_named_or_is_weight_only_by_design_warns_nothing(gpu: str, precision: str) -> None:
    assert _warnings(gpu, precision) == []
