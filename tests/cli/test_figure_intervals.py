"""80% intervals on every predicted figure of `tokenomy plan` and `tokenomy simulate` (issue 13): each interval holds
its prediction, a thin residual pool gives a wider one and says so, and --json, the tables and the HTML carry them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenomy.cli.main import app
from tokenomy.cli.planning import PlanRequest, run_plans
from tokenomy.costmodel import intervals
from tokenomy.costmodel.intervals import build_residual_table, figure_metric, shipped_residual_table
from tokenomy.report.html import plan_report
from tokenomy.report.sim_html import simulation_report

runner = CliRunner()

needs_table = pytest.mark.skipif(
    shipped_residual_table() is None, reason="catalog/data/residual_quantiles.json not generated"
)

PLAN_FIGURES = (
    "ttft_s",
    "itl_s",
    "itl_at_max_batch_s",
    "max_output_tokens_per_s_per_replica",
    "max_output_tokens_per_s_deployment",
    "usd_per_mtok.input",
    "usd_per_mtok.output",
)
SIM_FIGURES = (
    "throughput.output_tokens_per_s",
    "throughput.requests_per_s",
    "ttft_s.mean",
    "ttft_s.p99",
    "itl_s.p50",
    "tpot_s.p90",
    "e2e_s.mean",
    "usd_per_mtok.output",
)


def value_at(result: dict[str, Any], path: str) -> float:
    """The figure a key path names: 'ttft_s' or one level down, 'usd_per_mtok.output'."""
    if path in result:
        return result[path]
    key, sub = path.split(".", 1)
    return result[key][sub]


def assert_holds_its_prediction(result: dict[str, Any], paths: tuple[str, ...]) -> None:
    ivs = result["intervals_80"]
    missing = [p for p in paths if p not in ivs]
    assert not missing, f"no 80% interval for {missing}; have {sorted(ivs)}"
    for path, iv in ivs.items():
        lo, hi = iv["interval_80"]
        value = value_at(result, path)
        assert lo <= value <= hi and lo < hi, f"{path}: {value} not in [{lo}, {hi}]"
        assert iv["pool"].startswith((iv["metric"], "kind:", "*")) and iv["n"] > 0
        assert isinstance(iv["thin"], bool)


def simulate_json(*args: str) -> dict[str, Any]:
    res = runner.invoke(app, ["simulate", "--model", "llama-3.1-8b", "--gpu", "H100-SXM", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture
def thin_and_rich_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A residual table rich for Hopper × Llama (tight) and holding nothing for Blackwell × gpt-oss."""
    rng = np.random.default_rng(3)
    rows = []
    for metric in ("output_throughput", "mean_ttft", "mean_itl"):
        rows += [(metric, "hopper", "llama", r) for r in rng.normal(0.0, 0.05, 300)]
        rows += [(metric, "ampere", "mistral", r) for r in rng.normal(0.0, 0.6, 300)]
    table = build_residual_table(rows)
    monkeypatch.setattr(intervals, "shipped_residual_table", lambda: table)


def test_every_figure_maps_to_a_residual_metric_costs_inversely() -> None:
    assert figure_metric("max_output_tokens_per_s_per_replica") == ("output_throughput", 1)
    assert figure_metric("usd_per_mtok.output") == ("output_throughput", -1)
    assert figure_metric("ttft_s.p99") == ("mean_ttft", 1)
    assert figure_metric("tpot_s.mean") == ("mean_itl", 1)
    assert figure_metric("max_batch") is None and figure_metric("memory.weights_bytes") is None


@needs_table
def test_plan_json_carries_an_interval_holding_each_prediction() -> None:
    res = runner.invoke(app, ["plan", "--json"])
    assert res.exit_code == 0, res.output
    for p in json.loads(res.stdout):
        assert_holds_its_prediction(p, PLAN_FIGURES)
        # $/Mtok = $/hour ÷ throughput: its band is the throughput's, inverted
        t_lo, t_hi = p["intervals_80"]["max_output_tokens_per_s"]["interval_80"]
        c_lo, c_hi = p["intervals_80"]["usd_per_mtok.output"]["interval_80"]
        tput, cost = p["max_output_tokens_per_s"], p["usd_per_mtok"]["output"]
        assert c_lo / cost == pytest.approx(tput / t_hi) and c_hi / cost == pytest.approx(tput / t_lo)
        assert p["intervals_80"]["usd_per_mtok.output"]["inverse"] is True


def test_thin_pool_gives_a_wider_interval_and_says_so(thin_and_rich_table: None) -> None:
    rich = run_plans(PlanRequest(model="llama-3.1-8b", gpu="H100-SXM", precisions=["fp8"]))[0]
    thin = run_plans(PlanRequest(model="gpt-oss-120b", gpu="B200", precisions=["native"]))[0]
    for path in ("max_output_tokens_per_s", "ttft_s", "itl_s", "usd_per_mtok.output"):
        r, t = rich["intervals_80"][path], thin["intervals_80"][path]
        assert not r.thin and t.thin and "gpt-oss-moe has 0" in t.note
        rich_width = r.interval_80[1] / r.interval_80[0]
        thin_width = t.interval_80[1] / t.interval_80[0]
        assert thin_width > 2 * rich_width, path
    assert any(n.startswith("80% interval of") and "has 0" in n for n in thin["notes"])
    assert not any(n.startswith("80% interval of") for n in rich["notes"])


@needs_table
def test_plan_table_shows_the_intervals_and_what_they_are() -> None:
    res = runner.invoke(app, ["plan", "--model", "llama-3.1-8b", "--precision", "fp8"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    ttft_row = next(line for line in res.stdout.splitlines() if "TTFT (single stream)" in line)
    assert re.search(r"\d ms \[[\d.,]+–[\d.,]+\*?\]", ttft_row), ttft_row
    assert "80% intervals (in brackets): cross-validated residuals" in res.stdout


def test_plan_that_does_not_serve_has_no_intervals() -> None:
    p = run_plans(PlanRequest(model="llama-3.1-405b", gpu="L4", tp=1, precisions=["native"]))[0]
    assert p.fits is False and p.intervals_80 == {}


@needs_table
def test_simulate_json_carries_intervals_for_percentiles_and_throughput() -> None:
    offline = simulate_json("--num-requests", "60")
    assert_holds_its_prediction(offline, SIM_FIGURES)
    closed = simulate_json("--concurrency", "8", "--num-requests", "60")
    assert_holds_its_prediction(closed, SIM_FIGURES)


@needs_table
def test_open_loop_throughput_follows_the_arrivals_and_has_no_interval() -> None:
    run = simulate_json("--rate", "4", "--num-requests", "60")
    assert_holds_its_prediction(run, ("ttft_s.p50", "itl_s.p99", "e2e_s.p90"))
    assert not any(k.startswith(("throughput.", "usd_per_mtok.")) for k in run["intervals_80"])
    assert any("open-loop" in n for n in run["notes"])
    sweep = simulate_json("--sweep-rates", "2,6", "--num-requests", "40")
    for point in sweep["sweep"]:
        assert_holds_its_prediction(point, ("ttft_s.p50", "ttft_s.p99", "itl_s.p50"))


@needs_table
def test_html_reports_draw_error_bars(tmp_path: Path) -> None:
    plans = run_plans(PlanRequest(model="llama-3.1-8b", gpu="H100-SXM", precisions=["fp8", "int4"]))
    path = tmp_path / "plan.html"
    plan_report(plans, path)
    body = path.read_text().split("</head>", 1)[1]  # the charts, not plotly.js
    # throughput and ITL curves and the self-hosted cost line of both plans: six traces with error bars
    assert body.count('"error_y":{"array"') == 6 and "80% intervals from the cost model" in body
    sweep = simulate_json("--sweep-rates", "2,6", "--num-requests", "40")
    body = simulation_report(sweep, None, sweep["sweep"]).split("</head>", 1)[1]
    assert body.count('"error_y":{"array"') == 4  # TTFT and ITL, p50 and p99
