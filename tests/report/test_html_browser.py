"""Open the `tokenomy plan --html` report in headless Chromium and check it really renders, offline.

The browser helper (`render_offline`, in conftest.py) blocks every non-file request and fails on
console or page errors; it skips, saying what is missing, without Chromium or Playwright.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tokenomy.cli.planning import PlanRequest, run_plans
from tokenomy.report.html import plan_report

pytestmark = pytest.mark.browser

FIGURE_IDS = ("memory", "throughput", "itl", "cost")


def test_plan_report_renders_offline_in_chromium(
    tmp_path: Path, render_offline: Callable[[Path, str | None], list[str]]
) -> None:
    plans = run_plans(PlanRequest(model="llama-3.1-70b", gpu="H100-SXM", gpus=8, precisions=["fp16", "fp8", "int4"]))
    path = tmp_path / "report.html"
    plan_report(plans, path)
    ids = render_offline(path, "plan_report.png")
    assert sorted(ids) == sorted(FIGURE_IDS)
    shot = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots" / "plan_report.png"
    assert shot.exists() and shot.stat().st_size > 20_000
