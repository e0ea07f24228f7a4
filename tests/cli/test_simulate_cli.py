"""`tokenomy simulate`: the docs/design.md summary keys, outputs, fleets and clear errors on bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenomy.cli.main import app

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*args: str):
    return runner.invoke(app, ["simulate", *args])


def test_json_summary_has_the_stable_keys(tmp_path: Path) -> None:
    csv_path = tmp_path / "requests.csv"
    res = run(
        "--rate",
        "8",
        "--num-requests",
        "300",
        "--slo-ttft",
        "1",
        "--slo-tpot",
        "0.05",
        "--json",
        "--requests-csv",
        str(csv_path),
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    for key in ("ttft_s", "itl_s", "tpot_s", "e2e_s"):
        assert set(s[key]) >= {"mean", "p50", "p90", "p99"}
        assert 0 < s[key]["p50"] <= s[key]["p99"]
    assert s["throughput"]["output_tokens_per_s"] > 0 and s["throughput"]["requests_per_s"] > 0
    assert 0 < s["goodput_rps"] <= s["throughput"]["requests_per_s"] + 1e-9
    assert s["usd_per_mtok"]["output"] > s["usd_per_mtok"]["input"] > 0
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 300 and float(rows[0]["ttft_s"]) > 0


def test_fleet_file_spills_and_compares_a_day(tmp_path: Path) -> None:
    rates = ",".join(["0.2"] * 8 + ["3"] * 8 + ["0.2"] * 8)
    res = run(
        "--fleet",
        str(EXAMPLES / "fleet.yaml"),
        "--daily-rates",
        rates,
        "--classes",
        "chat=0.8,analysis=0.2",
        "--isl",
        "lognormal:800:0.8",
        "--osl",
        "lognormal:250:0.7",
        "--compare-day",
        "--json",
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert set(s["tiers"]) == {"small-int4", "large-fp8", "api"}
    assert set(s["comparison"]) == {"all_api", "all_self_hosted"}
    assert s["comparison"]["all_self_hosted"]["cost"]["gpu_hours"] >= s["cost"]["gpu_hours"]
    assert s["comparison"]["all_api"]["cost"]["gpu_hours"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "llama-3.1-8c"], "llama-3.1-8b"),
        (["--gpu", "H100-SMX"], "H100-SXM"),
        (["--model", "llama-3.1-405b", "--tp", "1", "--gpu", "L4"], "does not fit"),
        (["--rate", "5", "--slo-ttft", "0.0001"], "below the unloaded TTFT"),
        (["--rate", "5", "--concurrency", "4"], "at most one of"),
        (["--isl", "gaussian:5"], "isl"),
        (["--scheduler", "fifo"], "unknown scheduler"),
    ],
)
def test_bad_input_is_a_clear_error(args: list[str], message: str) -> None:
    res = run(*args)
    assert res.exit_code == 2
    assert message in res.output


def test_malformed_trace_names_file_and_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        '{"arrival_s": 0, "input_tokens": 10, "output_tokens": 5}\n{"arrival_s": 1, "input_tokens": "x"}\n'
    )
    res = run("--trace", str(trace))
    assert res.exit_code == 2
    assert "t.jsonl" in res.output and ":2" in res.output


def test_malformed_fleet_file_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("tiers:\n  - name: a\n    model: llama-3.1-8b\n    replicas: -1\nroutes:\n  '*': [a]\n")
    res = run("--fleet", str(bad))
    assert res.exit_code == 2
    assert "fleet.yaml" in res.output and "replicas" in res.output


def test_unknown_api_in_fleet_file_suggests_names(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("tiers:\n  - name: api\n    api: OpenAI/gpt-4o-minni\nroutes:\n  '*': [api]\n")
    res = run("--fleet", str(bad), "--rate", "1", "--num-requests", "5")
    assert res.exit_code == 2
    assert "fleet.yaml" in res.output and "OpenAI/gpt-4o-mini" in res.output


def test_tensorrt_llm_admits_at_full_length_and_kv_admission_overrides_it() -> None:
    """TensorRT-LLM's replica queues what its KV cache cannot hold at full length (no preemption); the same run
    admitted on demand, as vLLM does, preempts; a misspelt rule is named with its choices."""
    shape = ["--engine", "tensorrt-llm", "--model", "llama-3.1-70b", "--precision", "fp8", "--gpu", "H100-SXM"]
    load = ["--tp", "1", "--concurrency", "64", "--isl", "1000", "--osl", "1000", "--num-requests", "200", "--json"]
    full = run(*shape, *load)
    on_demand = run(*shape, *load, "--kv-admission", "on_demand")
    assert full.exit_code == 0 and on_demand.exit_code == 0, (full.output, on_demand.output)
    full_s, on_demand_s = json.loads(full.output), json.loads(on_demand.output)
    assert full_s["preemptions"] == 0 < on_demand_s["preemptions"]
    assert full_s["ttft_s"]["mean"] > on_demand_s["ttft_s"]["mean"]  # the excess waits instead
    assert full_s["itl_s"]["mean"] < on_demand_s["itl_s"]["mean"]  # in a smaller batch
    bad = run(*shape, "--kv-admission", "eager", "--num-requests", "10")
    assert bad.exit_code != 0 and "eager" in bad.output and "on_demand, full_length" in bad.output
    assert "Traceback" not in bad.output


def test_kv_admission_with_contiguous_kv_and_an_unknown_rule_in_a_profile_file_are_named(tmp_path: Path) -> None:
    """--kv-admission means nothing for contiguous KV: an error naming the option; a profile file whose
    kv_admission is not a known rule: an error naming the file and the choices. No traceback either way."""
    res = run("--kv", "contiguous", "--kv-admission", "full_length", "--num-requests", "5")
    assert res.exit_code != 0 and "--kv-admission applies to paged KV" in res.output
    shipped = Path(__file__).resolve().parents[2] / "src/tokenomy/catalog/data/profiles/vllm.json"
    profile = json.loads(shipped.read_text())
    profile["kv_admission"] = "eager"
    path = tmp_path / "eager.json"
    path.write_text(json.dumps(profile))
    res = run("--engine", str(path), "--num-requests", "5")
    assert res.exit_code != 0 and str(path) in res.output.replace("\n", "")
    assert "kv_admission 'eager' is not one of on_demand, full_length" in res.output
    assert "Traceback" not in res.output
