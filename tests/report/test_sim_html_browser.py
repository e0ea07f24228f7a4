"""The `simulation_report` page: built from a real simulation and rate sweep, rendered offline in Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.report.sim_html import KV_ID, LATENCY_ID, SWEEP_ID, pooled_timeline, simulation_report
from tokenomy.sim.metrics import Timeline
from tokenomy.sim.run import SLO, SimResult, simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload

SLO_GIVEN = SLO(ttft_s=1.0, tpot_s=0.05)
SWEEP_RATES = (5.0, 15.0, 30.0)


def deployment() -> Deployment:
    return Deployment(
        load_model("llama-3.1-8b"), load_accelerator("H100-SXM"), 1, 1, "bf16", "auto", load_profile("vllm")
    )


def workload(rate: float, n: int):
    spec = WorkloadSpec(isl="lognormal:1000:0.8", osl="lognormal:200:0.8", rate=rate, num_requests=n, seed=0)
    return build_workload(spec)


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, Any], SimResult]:
    r = simulate(deployment(), workload(20, 2000))
    return r.summary(SLO_GIVEN), r


@pytest.fixture(scope="module")
def sweep() -> list[dict[str, Any]]:
    d = deployment()
    return [{**simulate(d, workload(rate, 300)).summary(SLO_GIVEN), "rate": rate} for rate in SWEEP_RATES]


def chart_ids(page: str) -> set[str]:
    return set(re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page))


def test_report_has_every_chart_and_the_headline_tables(run, sweep) -> None:
    summary, result = run
    page = simulation_report(summary, result, sweep)
    assert chart_ids(page) == {LATENCY_ID, KV_ID, SWEEP_ID}
    assert page.count("<script") == 1 + 3  # plotly.js once, then one per chart
    for label in ("TTFT", "ITL", "TPOT", "E2E", "goodput", "KV utilisation", "engine stepping", "$/Mtok output"):
        assert label in page
    assert r"30 req\u002fs" in page  # sweep rates reach the hover text (plotly escapes "/" in its JSON)


def test_without_a_result_only_the_sweep_is_charted(run, sweep) -> None:
    summary, _ = run
    assert chart_ids(simulation_report(summary, None, sweep)) == {SWEEP_ID}
    assert chart_ids(simulation_report(summary, None)) == set()


def test_fleet_summary_gets_tier_and_class_tables(run) -> None:
    summary = {
        **run[0],
        "tiers": {"gpu-a": {"requests": 10, "usd": 1.5, "ttft_s": {"p50": 0.1, "p99": 0.5}}, "api-b": {"requests": 3}},
        "classes": {"chat": {"requests": 13, "usd_per_mtok": 0.2}},
    }
    page = simulation_report(summary, None)
    assert "<h2>Tiers</h2>" in page and "gpu-a" in page and "api-b" in page
    assert "<h2>Request classes</h2>" in page and "chat" in page


def test_timelines_of_several_replicas_sum_on_the_longest_grid() -> None:
    a = Timeline([0.0, 1.0, 2.0], [1, 2, 3], [0, 0, 1], [10.0, 20.0, 30.0], [16.0, 32.0, 32.0])
    b = Timeline([0.0, 1.0], [5, 5], [1, 1], [1.0, 2.0], [16.0, 16.0])
    pooled = pooled_timeline([a, b, Timeline()])
    assert pooled is not None
    assert pooled.t_s == [0.0, 1.0, 2.0]
    assert pooled.running == [6, 7, 3]
    assert pooled.kv_live_tokens == [11.0, 22.0, 30.0]
    assert pooled.kv_allocated_tokens == [32.0, 48.0, 32.0]


@pytest.mark.browser
def test_simulation_report_renders_offline_in_chromium(run, sweep, render_offline, tmp_path: Path) -> None:
    summary, result = run
    path = tmp_path / "simulate.html"
    path.write_text(simulation_report(summary, result, sweep))
    assert set(render_offline(path, "simulate_report.png")) == {LATENCY_ID, KV_ID, SWEEP_ID}


@pytest.mark.browser
def test_sweep_only_report_renders_offline_in_chromium(run, sweep, render_offline, tmp_path: Path) -> None:
    path = tmp_path / "sweep.html"
    path.write_text(simulation_report(run[0], None, sweep, title="tokenomy sweep"))
    assert render_offline(path, None) == [SWEEP_ID]
