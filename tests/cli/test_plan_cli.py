"""`tokenomy plan`, `catalog` and `validate` through the real command line."""

import json
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tokenomy.catalog.models import DATA_DIR
from tokenomy.cli.main import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_default_plan_json_is_a_list_of_three_precisions_with_stable_keys():
    result = run("plan", "--json")
    assert result.exit_code == 0, result.output
    plans = json.loads(result.stdout)
    assert [p["precision"] for p in plans] == ["fp16", "fp8", "int4"]
    for p in plans:
        assert p["model"] == "llama-3.1-70b" and p["gpu"] == "H100-SXM"
        for key in ("ttft_s", "itl_s", "max_output_tokens_per_s", "fits"):
            assert key in p
        assert p["params"]["total"] > 70e9 and p["params"]["active"] == p["params"]["total"]
        assert p["memory"]["weights_bytes"] > 0 and p["memory"]["kv_bytes_per_token"] == 327_680
        assert p["memory"]["kv_capacity_tokens"] > 0
        assert p["max_concurrency"]["paged"] > p["max_concurrency"]["static"] >= 0
        assert p["usd_per_mtok"]["input"] > 0 and p["usd_per_mtok"]["output"] > p["usd_per_mtok"]["input"]
    # Lower precision: fewer weight bytes, and a cheaper output token.
    assert (
        plans[0]["memory"]["weights_bytes"] > plans[1]["memory"]["weights_bytes"] > plans[2]["memory"]["weights_bytes"]
    )
    assert plans[1]["usd_per_mtok"]["output"] < plans[0]["usd_per_mtok"]["output"]


def test_single_plan_json_is_one_object():
    result = run("plan", "--model", "llama-3.1-8b", "--gpu", "H100-SXM", "--precision", "fp8", "--json")
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    assert p["precision"] == "fp8" and p["tp"] == 1 and p["fits"] is True
    assert 0 < p["itl_s"] < 0.02 and p["ttft_s"] > 0
    assert p["break_even"] and all("tokens_per_day" in b for b in p["break_even"])


def test_model_that_does_not_fit_is_a_result_with_needed_and_available_memory():
    result = run("plan", "--model", "llama-3.1-405b", "--gpu", "L4", "--tp", "1", "--json")
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    assert p["fits"] is False
    assert p["memory"]["needed_bytes"] > 800e9 > p["memory"]["usable_bytes"]
    assert "needs" in p["why_not"] and "usable" in p["why_not"]
    table = run("plan", "--model", "llama-3.1-405b", "--gpu", "L4", "--tp", "1")
    assert table.exit_code == 0 and "no" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "lama-3.1-70b"], "llama-3.1-70b"),
        (["--gpu", "H100"], "H100-SXM"),
        (["--precision", "int3"], "unknown precision"),
        (["--isl", "0"], "--isl"),
        (["--osl", "-5"], "--osl"),
        (["--tp", "0"], "--tp"),
        (["--kv-precision", "fp9"], "unknown KV precision"),
    ],
)
def test_bad_input_is_a_clear_error(args, message):
    result = run("plan", "--model", "llama-3.1-8b", *args) if "--model" not in args else run("plan", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_catalog_lists_models_gpus_apis_and_engines():
    for what, expected in (("models", "deepseek-v3"), ("gpus", "MI300X"), ("apis", "OpenAI"), ("engines", "vllm")):
        result = run("catalog", what, "--json")
        assert result.exit_code == 0, result.output
        assert expected in result.stdout


def test_validate_on_shipped_measurements_meets_the_accuracy_goal():
    result = run("validate", str(DATA_DIR / "measurements.csv"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    out = data["metrics"]["output_throughput"]
    assert out["n"] >= 290
    assert out["median_ape"] <= 0.12
    assert out["p90_ape"] is not None
    skipped = [r for r in data["rows"] if "skipped_reason" in r]
    assert skipped and all(r["skipped_reason"] for r in skipped)  # counted, with a reason, never dropped
    n_rows = len((DATA_DIR / "measurements.csv").read_text().splitlines()) - 1
    assert 501 <= len(data["rows"]) <= n_rows  # every row reported (a row may predict several metrics: never more)


def test_validate_names_file_line_and_field_of_a_bad_row(tmp_path):
    path = tmp_path / "m.csv"
    lines = (DATA_DIR / "measurements.csv").read_text().splitlines()[:3]
    lines[2] = lines[2].replace(",128,128,", ",12x,128,", 1)
    path.write_text("\n".join(lines) + "\n")
    result = run("validate", str(path))
    # The broken row is skipped with its file, line and field named; the others are still validated.
    assert result.exit_code == 0
    assert str(path) in result.output.replace("\n", "") and "line 3" in result.output and "'isl'" in result.output


def test_plan_answers_in_under_a_second_as_a_process():
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tokenomy.cli.main", "plan", "--model", "llama-3.1-70b", "--gpu", "H100-SXM", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    assert json.loads(proc.stdout)["fits"] is True
    print(f"tokenomy plan: {elapsed:.2f} s")


def test_prompt_longer_than_the_context_window_does_not_fit_with_the_reason_in_the_result():
    result = run("plan", "--model", "llama-2-70b", "--precision", "fp8", "--isl", "8000", "--json")
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    assert p["fits"] is False and "exceeds llama-2-70b's context window of 4,096" in p["why_not"]


def test_request_larger_than_the_kv_cache_does_not_fit():
    result = run("plan", "--model", "llama-3.1-70b", "--precision", "fp8", "--tp", "1", "--isl", "8192", "--json")
    p = json.loads(result.stdout)
    assert p["fits"] is False and "one request of 8,448 tokens needs" in p["why_not"]
    assert p["max_output_tokens_per_s"] == 0.0


def test_gpus_must_be_a_multiple_of_the_replica_size():
    result = run("plan", "--model", "llama-3.1-70b", "--gpus", "6", "--tp", "4")
    assert result.exit_code == 2 and "not a multiple of tp × pp = 4" in result.output


def test_pipeline_parallel_keeps_micro_batches_in_flight():
    def tps(*args):
        return json.loads(run("plan", "--model", "llama-3.1-70b", "--precision", "fp8", *args, "--json").stdout)

    tp4 = tps("--tp", "4", "--gpus", "4")
    tp4pp2 = tps("--tp", "4", "--pp", "2", "--gpus", "8")
    assert tp4pp2["max_output_tokens_per_s"] > 1.8 * tp4["max_output_tokens_per_s"]
    assert tp4pp2["itl_s"] >= tp4["itl_s"]  # the stages run one after another for one request


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [(",128,128,", ",128,0,", "osl"), (",28836.77,", ",0,", "value"), (",28836.77,", ",nan,", "value")],
)
def test_zero_or_non_finite_measurement_fields_are_rejected(tmp_path, old, new, field):
    lines = (DATA_DIR / "measurements.csv").read_text().splitlines()[:2]
    lines[1] = lines[1].replace(old, new, 1)
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run("validate", str(path))
    assert "line 2" in result.output and f"field '{field}'" in result.output  # skipped, with the reason
