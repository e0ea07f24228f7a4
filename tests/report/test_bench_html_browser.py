"""The `tokenomy bench --html` page, from a real bench of a twin (a two-rate sweep with predictions), in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenomy.cli.main import app
from tokenomy.report.bench_html import CDF_ID, PREDICTION_ID
from tokenomy.report.sim_html import LATENCY_ID, SWEEP_ID
from tokenomy.twin.server import running_twin

ALL_CHARTS = {CDF_ID, PREDICTION_ID, LATENCY_ID, SWEEP_ID}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "bench.html"
    with running_twin("llama-3.1-8b", "H100-SXM", speedup=10.0) as url:
        args = ["bench", "--no-progress", "--url", url, "--gpu", "H100-SXM", "--speedup", "10", "--isl", "128"]
        args += ["--osl", "16", "--sweep-rates", "20,60", "--num-requests", "30", "--html", str(path)]
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return path


def test_bench_report_has_every_chart_once(report: Path) -> None:
    page = report.read_text()
    assert set(re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page)) == ALL_CHARTS
    assert page.count("<script") == 1 + len(ALL_CHARTS)  # plotly.js inlined once, one script per chart
    for label in ("Prediction vs measurement", "Rate sweep", "send lag p99", "$/Mtok output", "achieved MBU"):
        assert label in page


@pytest.mark.browser
def test_bench_report_renders_offline_in_chromium(report: Path, render_offline) -> None:
    assert set(render_offline(report, "bench_report.png")) == ALL_CHARTS
