"""The reports a user gets from the command line (plan, simulate, compare-day, sweep), built through the CLI and
opened in headless Chromium; screenshots kept under artifacts/screenshots/ (issue 15)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenomy.cli.main import app
from tokenomy.report.sim_html import DAY_COST_ID, DAY_SLO_ID, SWEEP_ID

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DAY_RATES = ",".join(["0.05"] * 8 + ["0.4"] * 8 + ["0.1"] * 8)  # a quiet night, a busy day, an evening


def chart_ids(page: str) -> set[str]:
    return set(re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page))


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reports")
    paths = {name: d / f"{name}.html" for name in ("plan", "no_fit", "offline", "sweep", "day")}
    invoke("plan", "--model", "llama-3.1-70b", "--gpus", "8", "--precision", "fp8,int4", "--html", str(paths["plan"]))
    invoke("plan", "--model", "llama-3.1-405b", "--gpu", "L4", "--tp", "1", "--html", str(paths["no_fit"]))
    invoke("simulate", "--num-requests", "300", "--html", str(paths["offline"]))
    invoke(
        "simulate",
        "--num-requests",
        "200",
        "--sweep-rates",
        "2,8,20",
        "--slo-ttft",
        "1",
        "--slo-tpot",
        "0.05",
        "--html",
        str(paths["sweep"]),
    )
    invoke(
        "simulate",
        "--fleet",
        str(EXAMPLES / "fleet.yaml"),
        "--daily-rates",
        DAY_RATES,
        "--classes",
        "chat=0.7,analysis=0.3",
        "--compare-day",
        "--slo-ttft",
        "1",
        "--slo-tpot",
        "0.05",
        "--html",
        str(paths["day"]),
    )
    return paths


def test_plan_report_labels_every_figure_per_replica_or_deployment(reports: dict[str, Path]) -> None:
    page = reports["plan"].read_text().replace("\\u002f", "/")  # plotly escapes "/" in its JSON
    assert chart_ids(page) == {"memory", "throughput", "itl", "cost"}
    for label in (
        "GiB per replica",
        "output tokens/s (per replica)",
        "sequences per replica",
        "all replicas together",
        "max tok/s / replica",
        "max tok/s / deployment",
    ):
        assert label in page, label
    body = page.split("<body>")[1].split("<details>")[0]
    assert " GB" not in body  # sizes in GiB, like the terminal table and the twin


def test_plan_report_of_a_model_that_does_not_fit_explains_instead_of_empty_charts(reports: dict[str, Path]) -> None:
    page = reports["no_fit"].read_text()
    assert "Does not serve" in page and "needs" in page and "GiB per replica" in page
    assert chart_ids(page) == {"memory"}  # the chart that shows why; no empty throughput/ITL/cost charts


def test_offline_simulation_report_names_model_gpu_and_workload_and_says_offline(reports: dict[str, Path]) -> None:
    page = reports["offline"].read_text()
    assert "llama-3.1-8b" in page and "H100-SXM" in page and "isl 512, osl 256" in page
    assert "offline run" in page


def test_sweep_only_report_has_no_offline_headline(reports: dict[str, Path]) -> None:
    page = reports["sweep"].read_text()
    assert chart_ids(page) == {SWEEP_ID}
    assert "<h2>Latency</h2>" not in page and "offline run" not in page
    assert "goodput req/s" in page


def test_compare_day_report_charts_cost_and_slo_by_hour_for_each_fleet(reports: dict[str, Path]) -> None:
    page = reports["day"].read_text()
    assert {DAY_COST_ID, DAY_SLO_ID} <= chart_ids(page)
    for name in ("hybrid (as given)", "all-API", "all-self-hosted"):
        assert name in page
    summary = json.loads(
        re.search(r"<pre>(.*)</pre>", page, re.S)
        .group(1)
        .replace("&quot;", '"')
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
    )["summary"]
    for variant in (summary, *summary["comparison"].values()):
        hourly = variant["hourly"]
        assert len(hourly["usd"]) == 24 and len(hourly["slo_attainment"]) == 24
        assert sum(hourly["usd"]) == pytest.approx(variant["cost"]["usd"], rel=1e-6)  # the hours add up


@pytest.mark.browser
@pytest.mark.parametrize(
    ("name", "charts"),
    [
        ("plan", {"memory", "throughput", "itl", "cost"}),
        ("no_fit", {"memory"}),
        ("offline", {"latency-over-time", "kv-over-time"}),
        ("sweep", {SWEEP_ID}),
        ("day", {DAY_COST_ID, DAY_SLO_ID}),
    ],
)
def test_cli_reports_render_offline_in_chromium(reports: dict[str, Path], render_offline, name, charts) -> None:
    assert charts <= set(render_offline(reports[name], f"cli_{name}_report.png"))
