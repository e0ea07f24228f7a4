"""`tokenomy ledger report`: spend by team/tier/class, workload, savings and what-ifs from a real ledger."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from tests.gateway.conftest import chat, self_hosted
from tests.gateway.test_app import COMPLEX, SIMPLE
from tokenomy.cli.main import app

runner = CliRunner()


@pytest.fixture
def config_with_traffic(twins, gateway, tmp_path: Path) -> Path:
    small, large = twins("small"), twins("large", "llama-3.1-70b", tp=4)
    config = {
        "state_dir": str(tmp_path / "state"),
        "tiers": [
            self_hosted("small", small, "llama-3.1-8b", ["simple"], deployment={"precision": "int4"}),
            self_hosted("large", large, "llama-3.1-70b", ["simple", "complex"], deployment={"count": 4}),
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    g = gateway(config, tmp_path / "state")
    for team, text in (("team-a", SIMPLE), ("team-a", SIMPLE), ("team-b", COMPLEX), ("team-a", SIMPLE)):
        _, key = g.new_key(team)
        r = httpx.post(f"{g.url}/v1/chat/completions", json=chat(text), headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200
    g.stop()
    return path


def test_report_json_and_html(config_with_traffic: Path, tmp_path: Path) -> None:
    html_path = tmp_path / "ledger.html"
    res = runner.invoke(
        app, ["ledger", "report", "--config", str(config_with_traffic), "--json", "--html", str(html_path)]
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["totals"]["requests"] == 4 and s["totals"]["answered"] == 4
    assert {k: v["attempts"] for k, v in s["by_team"].items()} == {"team-a": 3, "team-b": 1}
    assert {k: v["attempts"] for k, v in s["by_tier"].items()} == {"large": 1, "small": 3}
    assert s["workload"]["classes"] == {"complex": 1, "simple": 3}
    assert s["workload"]["output_tokens"]["p50"] == 16
    sav = s["savings"]
    assert sav["reference_tier"] == "large" and sav["usd_saved"] > 0 and 0 < sav["fraction_saved"] < 1
    assert s["what_if"]["large"]["usd_if_all"] == pytest.approx(sav["usd_if_all_on_reference"])
    assert s["what_if"]["small"]["replicas_for_peak"] >= 1 and s["what_if"]["small"]["always_on_usd_per_day"] > 0
    assert html_path.read_text().count("plotly-graph-div") == 4
    text = runner.invoke(app, ["ledger", "report", "--config", str(config_with_traffic)])
    assert text.exit_code == 0 and "savings:" in text.output and "what-if all on small" in text.output


def test_keys_cli_creates_lists_and_revokes(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "tiers": [
                    {
                        "name": "a",
                        "url": "http://127.0.0.1:1/v1",
                        "model": "m",
                        "classes": ["simple"],
                        "usd_per_mtok_input": 1,
                        "usd_per_mtok_output": 1,
                    }
                ]
            }
        )
    )
    created = runner.invoke(app, ["gateway", "keys", "create", "--config", str(config), "--team", "ops"])
    assert created.exit_code == 0, created.output
    key_id = created.output.split("key_id:")[1].split()[0]
    key = created.output.split("key:")[-1].split()[0]
    assert key.startswith("tk-")
    listed = runner.invoke(app, ["gateway", "keys", "list", "--config", str(config)])
    assert key_id in listed.output and key not in listed.output
    assert runner.invoke(app, ["gateway", "keys", "revoke", "--config", str(config), key_id]).exit_code == 0
    assert key_id not in runner.invoke(app, ["gateway", "keys", "list", "--config", str(config)]).output
    assert (tmp_path / ".tokenomy-gateway" / "ledger.sqlite").exists()  # state_dir is relative to the config file


def test_bad_config_names_the_file_and_field(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"tiers": [{"name": "a", "url": "ftp://x", "model": "m", "classes": ["simple"]}]}))
    res = runner.invoke(app, ["gateway", "--config", str(config)])
    assert res.exit_code == 2
    assert str(config) in res.output and "tiers.0.url" in res.output
