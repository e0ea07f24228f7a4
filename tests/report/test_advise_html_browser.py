"""The `advise_report` page: built from a real (small) advisor run, rendered offline in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.advise.conftest import small_advice, small_report  # noqa: F401 (fixtures)
from tokenomy.report.advise_html import HOURS_ID, MIX_ID, PARETO_ID, advise_report


def chart_ids(page: str) -> set[str]:
    return set(re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', page))


def test_report_has_the_three_charts_and_the_headline_tables(small_report) -> None:  # noqa: F811
    page = advise_report(small_report)
    assert chart_ids(page) == {PARETO_ID, HOURS_ID, MIX_ID}
    assert page.count("<script") == 1 + 3  # plotly.js once, then one per chart
    for words in ("Recommended plan", "Why", "break-even", "fp16, static batching", "Closed form vs simulator"):
        assert words in page


@pytest.mark.browser
def test_advise_report_renders_offline_in_chromium(small_report, render_offline, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "advise.html"
    path.write_text(advise_report(small_report))
    assert set(render_offline(path, "advise_report.png")) == {PARETO_ID, HOURS_ID, MIX_ID}
