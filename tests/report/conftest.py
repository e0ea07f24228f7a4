"""Shared browser helper: open a self-contained report in headless Chromium, offline, and check its charts.

Needs a system Chromium (`apt-get install chromium`) and the `playwright` package; the `render_offline`
fixture skips, saying which is missing, when either is. Playwright drives Chromium through
`executable_path`, so `playwright install` is never needed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISMATCH = re.compile(r"version|protocol", re.IGNORECASE)


def find_chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _render(chromium: str, report: Path, screenshot: str | None) -> list[str]:
    """Every plotly chart on the page must draw marks, with no network, console or page errors.

    Returns the ids of the chart divs; saves a full-page screenshot under artifacts/screenshots/.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    console_errors: list[str] = []
    page_errors: list[str] = []
    external: list[str] = []

    def route(r) -> None:  # every request that is not a local file is refused, and recorded
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, timeout=20_000)
        except PlaywrightError as exc:
            if MISMATCH.search(str(exc)):
                pytest.skip(f"playwright cannot drive {chromium}: {str(exc).splitlines()[0]}")
            raise
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.route("**/*", route)
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page_errors.append(str(e)))

            page.goto(report.as_uri(), wait_until="load")
            assert page.evaluate("typeof window.Plotly") == "object", "plotly.js not loaded"
            ids = page.eval_on_selector_all("div.plotly-graph-div", "els => els.map(e => e.id)")
            for fig_id in ids:
                page.wait_for_selector(f"[id='{fig_id}'] .main-svg", state="attached")
                assert page.locator(f"[id='{fig_id}'] .main-svg .trace").count() > 0, f"#{fig_id}: no traces"
                marks = f"[id='{fig_id}'] .main-svg .trace path, [id='{fig_id}'] .main-svg .trace g.point"
                assert page.locator(marks).count() > 0, f"#{fig_id} has traces but no drawn marks"
            if screenshot:
                SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT_DIR / screenshot), full_page=True)
        finally:
            browser.close()

    assert not external, f"report tried to reach the network: {external}"
    assert not page_errors, f"page errors: {page_errors}"
    assert not console_errors, f"console errors: {console_errors}"
    return ids


@pytest.fixture
def render_offline() -> Callable[[Path, str | None], list[str]]:
    """`render_offline(html_path, screenshot_name_or_None) -> chart div ids`; skips without a browser."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")
    return lambda report, screenshot=None: _render(chromium, report, screenshot)
