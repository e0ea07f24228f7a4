"""Shipped engine profiles: they differ where the engines differ, every number has a source, borrowing is said."""

import json
from dataclasses import fields

import pytest
from typer.testing import CliRunner

from tokenomy.catalog.profiles import PROFILE_DIR, load_profile, profile_notes
from tokenomy.cli.main import app
from tokenomy.costmodel.profile import FITTED, EngineProfile

GPU_ENGINES = ("vllm", "sglang", "tensorrt-llm")
# Scheduler and memory settings each engine documents for itself (catalog/data/SOURCES.md).
DOCUMENTED = ("max_num_seqs", "max_num_batched_tokens", "kv_block_tokens", "gpu_memory_utilization")
NUMERIC = [f.name for f in fields(EngineProfile) if f.type in ("float", "int")]
runner = CliRunner()


def _raw(name: str) -> dict:
    return json.loads((PROFILE_DIR / f"{name}.json").read_text())


@pytest.mark.parametrize("a,b", [("vllm", "sglang"), ("vllm", "tensorrt-llm"), ("sglang", "tensorrt-llm")])
def test_engine_profiles_differ_in_documented_scheduler_and_memory_settings(a, b):
    pa, pb = load_profile(a), load_profile(b)
    differing = [k for k in DOCUMENTED if getattr(pa, k) != getattr(pb, k)]
    assert len(differing) >= 2, f"{a} and {b} differ only in {differing}"


def test_each_engine_has_its_documented_kv_page_size():
    # vLLM 16-token blocks, SGLang a token-granular pool (page size 1), TensorRT-LLM 32-token blocks.
    assert [load_profile(e).kv_block_tokens for e in GPU_ENGINES] == [16, 1, 32]


@pytest.mark.parametrize("name", ["vllm", "vllm-rocm", "sglang", "sglang-rocm", "tensorrt-llm", "generic"])
def test_every_numeric_field_of_a_gpu_profile_has_a_source(name):
    raw = _raw(name)
    numbers = [k for k in NUMERIC if k in raw]
    assert set(numbers) == set(NUMERIC)  # the file spells every numeric field out
    missing = [k for k in numbers if not str(raw.get("sources", {}).get(k, "")).strip()]
    assert not missing, f"profiles/{name}.json: no source for {missing}"


@pytest.mark.parametrize("name", ["vllm", "sglang", "generic"])
def test_a_borrowing_profile_says_what_it_borrows_and_holds_those_values(name):
    prof, trt = load_profile(name), load_profile("tensorrt-llm")
    assert prof.borrows_from == "tensorrt-llm" and prof.borrowed
    assert set(prof.borrowed) <= set(FITTED)
    for k in prof.borrowed:
        assert getattr(prof, k) == getattr(trt, k), k
    (note,) = profile_notes(prof)
    assert name in note and "tensorrt-llm" in note


def test_the_fitted_profile_borrows_nothing():
    assert load_profile("tensorrt-llm").borrows_from == ""
    assert profile_notes(load_profile("tensorrt-llm")) == []


def test_borrowing_fields_round_trip_through_a_profile_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(load_profile("sglang").to_dict()))
    again = load_profile(str(path))
    assert again == load_profile("sglang")
    assert again.borrowed == load_profile("sglang").borrowed and again.sources == load_profile("sglang").sources


def _plan(engine: str) -> dict:
    args = ["plan", "--model", "llama-3.1-8b", "--gpu", "H100-SXM", "--precision", "fp8", "--engine", engine]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_plan_json_carries_the_borrowing_note_and_the_fitted_engine_none():
    vllm, trt = _plan("vllm"), _plan("tensorrt-llm")
    assert any("borrows" in n and "tensorrt-llm" in n for n in vllm["notes"])
    assert not any("borrows" in n for n in trt["notes"])  # other notes (e.g. how an 80% interval was built) may be


def test_plan_text_prints_the_borrowing_note():
    args = ["plan", "--model", "llama-3.1-8b", "--gpu", "H100-SXM", "--precision", "fp8", "--engine", "sglang"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "note: engine profile 'sglang' borrows" in result.output


def test_sglang_and_vllm_plans_differ_in_kv_capacity_as_their_memory_rules_say():
    vllm, sglang = _plan("vllm"), _plan("sglang")
    # SGLang's static pool (0.835 of an 80 GB H100) is smaller than vLLM's 0.9 budget less activations and overhead.
    assert sglang["memory"]["kv_capacity_tokens"] < vllm["memory"]["kv_capacity_tokens"]


def test_simulate_json_carries_the_borrowing_note():
    args = ["simulate", "--model", "llama-3.1-8b", "--engine", "sglang", "--num-requests", "20", "--rate", "2"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert any("'sglang' borrows" in n for n in json.loads(result.stdout)["notes"])


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("moe_routing_alpha", "1.2", "field 'moe_routing_alpha': expected a number, got '1.2'"),
        ("bw_efficiency", True, "field 'bw_efficiency': expected a number, got True"),
        ("moe_attention_dp", 1, "field 'moe_attention_dp': expected true or false, got 1"),
        (
            "frees_chunked_attention_kv",
            "yes",
            "field 'frees_chunked_attention_kv': expected true or false, got 'yes'",
        ),
        ("python_executor_since", 1.15, "field 'python_executor_since': expected a string, got 1.15"),
        ("max_num_seqs", 255.5, "field 'max_num_seqs': expected a whole number, got 255.5"),
        ("moe_routing_alpha", -1.2, "field 'moe_routing_alpha': a power-law exponent, 0 (balanced) or more, got -1.2"),
    ],
)
def test_a_profile_file_with_a_value_of_the_wrong_type_is_an_error_naming_the_file_and_field(
    tmp_path, field, value, expected
):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", field: value}))
    result = CliRunner().invoke(app, ["plan", "--model", "llama-3.1-8b", "--gpu", "H100-SXM", "--engine", str(path)])
    assert result.exit_code != 0
    assert "mine.json" in result.output and expected in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_profile_file_may_give_a_whole_number_where_a_fraction_is_allowed(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "bw_efficiency": 1, "moe_routing_alpha": 1, "max_num_seqs": 128.0}))
    profile = load_profile(str(path))
    assert profile.bw_efficiency == 1 and profile.moe_routing_alpha == 1 and profile.max_num_seqs == 128


def test_an_unreadable_routing_imbalance_table_names_its_file_and_line(tmp_path, monkeypatch):
    from tokenomy.catalog import accelerators
    from tokenomy.catalog.errors import CatalogError

    (tmp_path / accelerators.MOE_IMBALANCE_FILE).write_text("alpha,experts,ep,ratio\n1.2,128,8,1.769\n1.2,x,4,1.4\n")
    monkeypatch.setattr(accelerators, "DATA_DIR", tmp_path)
    accelerators.moe_imbalance_table.cache_clear()
    try:
        with pytest.raises(CatalogError, match=r"moe_routing_imbalance.csv:3: cannot read .*moe_imbalance_aic.py"):
            accelerators.moe_imbalance_table()
    finally:
        accelerators.moe_imbalance_table.cache_clear()
