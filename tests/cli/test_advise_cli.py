"""`tokenomy advise`: the default example, a workload file with outputs, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tests.advise.conftest import SMALL
from tokenomy.cli.main import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["advise", *args])


def test_no_options_advises_on_the_built_in_example() -> None:
    res = run("--verify", "1", "--sim-requests", "300", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["workload"]["name"] == "support + coding assistants"
    assert report["search"]["candidates_evaluated"] >= 10_000
    assert set(report["recommendation"]["routes"]) == {"support", "coding"}


def test_workload_file_with_html_and_gateway_config(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    html, gateway = tmp_path / "a.html", tmp_path / "g.yaml"
    res = run(
        str(path), "--verify", "2", "--sim-requests", "800", "--html", str(html), "--emit-gateway-config", str(gateway)
    )
    assert res.exit_code == 0, res.output
    for words in ("tokenomy advise — small", "$/day", "break-even", "why ", "closed form vs simulator"):
        assert words in res.output
    assert html.read_text().count("plotly-graph-div") == 3
    assert yaml.safe_load(gateway.read_text())["tiers"]


def test_json_has_the_plan_keys(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    res = run(str(path), "--verify", "1", "--sim-requests", "500", "--json", "--requests-per-day", "200000")
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["workload"]["requests_per_day"] == 200000
    rec = r["recommendation"]
    assert set(rec["usd_per_mtok"]) == {"closed_form", "simulated"} and len(rec["hours"]) == 24
    for name in ("chat", "code"):
        c = rec["classes"][name]
        assert c["usd_per_request"] > 0 and c["usd_per_valid_answer"] == c["usd_per_request"]
    assert r["estimates"] and r["pareto"] and r["savings"]["vs_all_api"]["fraction"] is not None


def test_unknown_gpu_suggests_the_nearest_names() -> None:
    res = run("--gpus", "H100-SMX")
    assert res.exit_code == 2
    assert "unknown GPU 'H100-SMX'" in res.output and "H100-SXM" in res.output


def test_bad_executor_is_refused() -> None:
    res = run("--executor", "slurm", "--verify", "1")
    assert res.exit_code == 2 and "local, ray" in res.output
