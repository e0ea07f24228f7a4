"""Parameter counts from config.json against published figures, and config errors."""

import json
import math

import pytest

from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.models import DATA_DIR, load_config_file, load_model, model_ids
from tokenomy.costmodel.params import param_counts

REQUIRED = [
    "llama-2-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "llama-3.2-1b",
    "llama-3.2-3b",
    "llama-3.3-70b",
    "llama-4-scout-17b-16e",
    "llama-4-maverick-17b-128e",
    "mistral-7b",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "qwen2.5-7b",
    "qwen2.5-72b",
    "qwen3-8b",
    "qwen3-14b",
    "qwen3-32b",
    "qwen3-30b-a3b",
    "qwen3-235b-a22b",
    "deepseek-v3",
    "gemma-3-27b",
    "gpt-oss-20b",
    "gpt-oss-120b",
    "smollm2-135m",
]


def tolerance(published: float) -> float:
    """1%, or one unit of the last digit a rounded figure gives.

    Publishers round or truncate ('3.3B' for Qwen3-30B-A3B's 3.353B), so a two-digit figure
    cannot support a tighter check than its last digit.
    """
    digits = int(published)
    unit = 1
    while digits and digits % 10 == 0:
        digits //= 10
        unit *= 10
    return max(0.01 * published, unit)


def test_catalogue_has_every_required_model():
    assert set(REQUIRED) <= set(model_ids())


@pytest.mark.parametrize("model_id", REQUIRED)
def test_params_match_published_within_one_percent(model_id):
    m = load_model(model_id)
    pub = m.published
    p = param_counts(m)
    total_pub = pub.get("params_text_total", pub["params_total"])
    active_pub = pub.get("params_text_active", pub["params_active"])
    assert abs(p.total - total_pub) <= tolerance(total_pub), (p.total, total_pub)
    active = p.active - (p.embedding if pub.get("active_excludes_embedding") else 0)
    assert abs(active - active_pub) <= tolerance(active_pub), (active, active_pub)


def test_moe_active_is_a_fraction_of_total():
    p = param_counts(load_model("mixtral-8x7b"))
    assert 0.25 < p.active / p.total < 0.3  # 12.9B of 46.7B


def test_unknown_model_suggests_nearest():
    with pytest.raises(CatalogError) as exc:
        load_model("llama-3.1-7b")
    assert "unknown model 'llama-3.1-7b'" in str(exc.value)
    assert "llama-3.1-70b" in str(exc.value) or "llama-3.1-8b" in str(exc.value)


def test_any_config_json_path_works(tmp_path):
    cfg = json.loads((DATA_DIR / "models" / "llama-3.1-8b.json").read_text())
    (tmp_path / "my-model").mkdir()
    path = tmp_path / "my-model" / "config.json"
    path.write_text(json.dumps(cfg))
    m = load_model(str(path))
    assert m.id == "my-model"
    assert param_counts(m).total == param_counts(load_model("llama-3.1-8b")).total


def test_malformed_config_names_file_and_field(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 32000, "intermediate_size": 11008})
    )
    with pytest.raises(CatalogError) as exc:
        load_config_file(path)
    assert str(path) in str(exc.value) and "num_attention_heads" in str(exc.value)


def test_negative_field_is_rejected(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "hidden_size": -4096,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "vocab_size": 32000,
                "intermediate_size": 11008,
            }
        )
    )
    with pytest.raises(CatalogError, match="hidden_size.*positive"):
        load_config_file(path)


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "hidden_size": 4096,\n  oops\n}')
    with pytest.raises(CatalogError, match=r"line 3"):
        load_config_file(path)


def test_sliding_and_hybrid_layers_are_read():
    gemma = load_model("gemma-3-27b")
    assert gemma.sliding_window == 1024 and gemma.n_sliding_layers == 52  # 5 local : 1 global over 62 layers
    oss = load_model("gpt-oss-20b")
    assert oss.sliding_window == 128 and oss.n_sliding_layers == 12
    assert oss.native_precision == "mxfp4-experts"
    assert not math.isnan(param_counts(oss).total)
