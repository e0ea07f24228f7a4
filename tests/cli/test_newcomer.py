"""Issue 15, "a newcomer's first hour": each mistake gets one clear line and a non-zero exit, each wrong input is
refused or reported in the result, and the output says what it is."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenomy.catalog.models import load_model
from tokenomy.cli.main import app

runner = CliRunner()
CATALOG = Path(__file__).resolve().parents[2] / "src" / "tokenomy" / "catalog" / "data" / "models"


def run(*args: str, **env: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", **env})


def one_error_line(result) -> str:
    """The refusal: non-zero exit, exactly one line starting "error:", no traceback or pydantic text."""
    assert result.exit_code != 0, result.output
    text = result.output
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    for bad in ("Traceback", "errors.pydantic.dev", "validation error for", "🅰", "💯"):
        assert bad not in text
    return lines[0]


# ---- crashes become one line naming the input ------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("num_key_value_heads", 0, "'num_key_value_heads' must be a positive integer, got 0"),
        ("num_key_value_heads", 5, "num_key_value_heads 5 must divide num_attention_heads 32"),
        ("num_attention_heads", 0, "'num_attention_heads' must be a positive integer"),
        ("hidden_size", -4096, "'hidden_size' must be a positive integer"),
        ("vocab_size", "many", "'vocab_size' must be a positive integer"),
    ],
)
def test_a_config_json_that_no_engine_could_build_is_refused_on_load(tmp_path: Path, field, value, says) -> None:
    cfg = json.loads((CATALOG / "llama-3.1-8b.json").read_text())
    cfg[field] = value
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    line = one_error_line(run("plan", "--model", str(path)))
    assert str(path) in line and says in line


def test_every_catalogued_model_passes_the_load_checks() -> None:
    from tokenomy.catalog.models import model_ids

    for mid in model_ids():
        assert load_model(mid).n_heads % load_model(mid).n_kv_heads == 0


@pytest.mark.parametrize("rates", ["5,-1", "0", "nan", "5,x"])
def test_bad_sweep_rates_are_refused_before_any_worker_starts(rates: str) -> None:
    assert "--sweep-rates" in one_error_line(run("simulate", "--num-requests", "20", "--sweep-rates", rates))


def test_twin_on_a_port_in_use_exits_3_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("twin", "--port", str(port))
    assert result.exit_code == 3
    line = one_error_line(result)
    assert f"--port {port}" in line and "in use" in line


def test_an_unexpected_exception_is_one_line_and_exit_1_and_the_traceback_is_one_variable_away(monkeypatch) -> None:
    import tokenomy.cli.planning as planning

    def boom(*_a, **_k):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(planning, "run_plans", boom)
    result = run("plan")
    assert result.exit_code == 1
    assert "ZeroDivisionError: float division by zero" in one_error_line(result)
    assert "TOKENOMY_DEBUG=1" in result.output
    debug = run("plan", TOKENOMY_DEBUG="1")
    assert isinstance(debug.exception, ZeroDivisionError)  # re-raised: python prints the traceback


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["plan", "--utilisation", "nan"], "--utilisation"),
        (["simulate", "--rate", "inf"], "--rate"),
        (["simulate", "--burstiness", "nan", "--rate", "1"], "--burstiness"),
    ],
)
def test_nan_and_infinite_numbers_are_refused_for_every_option(args: list[str], option: str) -> None:
    line = one_error_line(run(*args))
    assert option in line and "finite" in line


# ---- accepted though wrong -----------------------------------------------------------------------


@pytest.mark.parametrize("acceptance", ["1.5", "-0.1", "1"])
def test_an_impossible_acceptance_rate_is_refused(acceptance: str) -> None:
    line = one_error_line(
        run("simulate", "--num-requests", "20", "--draft-model", "llama-3.2-1b", "--acceptance", acceptance)
    )
    assert "acceptance" in line


def test_tp_that_does_not_divide_the_heads_does_not_fit_with_the_reason_in_table_and_json() -> None:
    result = run("plan", "--model", "llama-3.1-8b", "--tp", "3", "--json")
    assert result.exit_code == 0
    p = json.loads(result.output)
    assert p["fits"] is False and "tp=3 does not divide" in p["why_not"] and p["constraints"]
    assert p["ttft_s"] is None and "curve" not in p
    table = run("plan", "--model", "llama-3.1-8b", "--tp", "3").output
    assert "no: tp=3 does not divide llama-3.1-8b's 32 attention heads" in " ".join(table.split()).replace("│ ", "")


def test_a_request_longer_than_the_context_does_not_fit_with_the_reason_in_the_result() -> None:
    p = json.loads(run("plan", "--model", "llama-3.1-8b", "--isl", "200000", "--json").output)
    assert p["fits"] is False and "exceeds llama-3.1-8b's context window of 131,072" in p["why_not"]


def test_simulate_and_twin_refuse_a_tp_the_engine_would_refuse() -> None:
    assert "does not divide" in one_error_line(run("simulate", "--tp", "3", "--num-requests", "10"))


def test_plan_chain_refuses_a_negative_cost_and_says_costs_more_not_a_negative_saving() -> None:
    line = one_error_line(run("plan-chain", "--tier", "a:usd=-0.001,pass=0.5", "--tier", "b:usd=0.01,pass=1"))
    assert "'usd' must be a finite number >= 0" in line
    out = run("plan-chain", "--tier", "small:usd=0.01,pass=0.1", "--tier", "big:usd=0.001,pass=0.9").output
    assert "costs 10.8× more" in out and "saves -" not in out


def test_advise_workload_accepts_lengths_as_yaml_numbers() -> None:
    from tokenomy.advise.workload import parse_workload

    wl = parse_workload(
        {
            "volume": {"requests_per_day": 1000},
            "classes": {"c": {"share": 1, "isl": 800, "osl": 200}},
            "candidates": {"models": ["llama-3.1-8b"], "gpus": ["L4"]},
        }
    )
    assert wl.spec.classes["c"].isl == "800" and wl.classes[0].isl.kind == "fixed"


# ---- output ---------------------------------------------------------------------------------------


def test_help_prints_length_forms_as_written_not_as_emoji() -> None:
    out = run("simulate", "--help").output
    assert "uniform:A:B" in out and "🅰" not in out


def test_a_bad_length_says_what_is_wrong_in_plain_text() -> None:
    line = one_error_line(run("simulate", "--isl", "uniform:100:50"))
    assert "'uniform:100:50'" in line and "min 100 > max 50" in line


def test_markup_in_a_user_string_prints_as_typed() -> None:
    line = one_error_line(run("plan", "--model", "[red]x[/red]:100:"))
    assert "[red]x[/red]:100:" in line


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["simulate", "--num-requests", "0"], "--num-requests"),
        (["simulate", "--concurrency", "0"], "--concurrency"),
        (["simulate", "--rate", "1", "--concurrency", "2"], "options"),
        (["plan", "--isl", "-5"], "--isl"),
        (["plan", "--precision", "fp8", "--gpus", "0"], "--gpus"),
    ],
)
def test_validation_errors_name_the_option_not_pydantic(args: list[str], option: str) -> None:
    assert option in one_error_line(run(*args))


def test_a_fleet_file_error_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("tiers:\n  - name: a\n    model: llama-3.2-1b\n    replicas: -1\nroutes: {'*': [a]}\n")
    line = one_error_line(run("simulate", "--fleet", str(path)))
    assert str(path) in line and "tiers.0" in line and "replicas" in line


def test_an_offline_simulation_says_so_and_names_model_gpu_and_workload() -> None:
    out = run("simulate", "--num-requests", "50").output
    assert "llama-3.1-8b bf16 on 1× H100-SXM" in out and "isl 512, osl 256" in out
    assert "offline run: every request arrives at t=0" in out


def test_a_sweep_without_a_rate_runs_no_offline_headline_and_shows_goodput() -> None:
    out = run("simulate", "--num-requests", "40", "--sweep-rates", "2,8", "--slo-ttft", "1", "--slo-tpot", "0.1")
    assert out.exit_code == 0
    assert "offline" not in out.output and "TTFT" in out.output
    assert "goodput" in out.output and "requests:" not in out.output  # the sweep table, no headline lines
    js = json.loads(run("simulate", "--num-requests", "40", "--sweep-rates", "2", "--json").output)
    assert "requests" not in js and len(js["sweep"]) == 1


def test_engine_busy_is_not_called_gpu_busy_and_the_load_is_compared_with_capacity() -> None:
    out = " ".join(run("simulate", "--num-requests", "100", "--rate", "2").output.split())
    assert "GPU busy" not in out and "engine stepping" in out and "of the replica's capacity" in out


def test_fleet_figures_print_a_dash_not_nan_and_json_is_strict(tmp_path: Path) -> None:
    fleet = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
    args = ["simulate", "--fleet", str(fleet), "--rate", "1", "--num-requests", "60", "--classes", "chat=1"]
    out = run(*args).output
    assert "nan" not in out.lower().replace("nano", "")
    raw = run(*args, "--json").output
    data = json.loads(raw, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["tiers"]["api"]["usd_per_mtok"] is None


def test_json_output_never_holds_nan() -> None:
    from tokenomy.results import json_safe

    assert (
        json.dumps(json_safe({"a": math.nan, "b": [math.inf, 1.0]}), allow_nan=False) == '{"a": null, "b": [null, 1.0]}'
    )


def test_catalog_prints_ids_whole() -> None:
    out = runner.invoke(app, ["catalog", "apis"], env={"COLUMNS": "80"}).output
    assert "…" not in out
    from tokenomy.catalog.prices import api_prices

    for p in api_prices():
        assert p.model in out


def test_plan_sizes_are_gib_and_rows_say_per_replica_or_deployment() -> None:
    out = run("plan", "--model", "llama-3.1-70b", "--gpus", "8", "--precision", "fp8").output
    assert " GiB" in out and " GB " not in out
    for label in (
        "weights (per replica)",
        "max output throughput (per replica)",
        "max output throughput (deployment)",
        "$/hour (per GPU)",
        "$/hour (deployment)",
    ):
        assert label in out, label
    p = json.loads(run("plan", "--model", "llama-3.1-70b", "--gpus", "8", "--precision", "fp8", "--json").output)
    assert p["max_output_tokens_per_s_per_replica"] * p["replicas"] == pytest.approx(p["max_output_tokens_per_s"])
    assert p["max_output_tokens_per_s_deployment"] == p["max_output_tokens_per_s"]  # the old key kept
    assert p["usd_per_hour_per_replica"] == pytest.approx(p["usd_per_gpu_hour"] * p["gpus_per_replica"])


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("tokenomy ")
