"""The replay report (`tokenomy replay … --html`), of a trace on the shipped example alternatives, rendered
offline in Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenomy.cli.main import app

REPO = Path(__file__).resolve().parents[2]
CHARTS = {"cost-by-hour", "ttft-cdf", "tpot-cdf", "tier-mix"}


@pytest.mark.browser
def test_replay_report_renders_offline_in_chromium(render_offline, tmp_path: Path) -> None:
    path = tmp_path / "replay.html"
    alternatives = REPO / "examples" / "alternatives.yaml"
    args = ["replay", "azure-conv", "--alternatives", str(alternatives), "--time-scale", "20", "--html", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    page = path.read_text()
    assert "Quality floor per class" in page and "hybrid" in page and "all-api" in page
    assert set(render_offline(path, "replay_report.png")) == CHARTS
