"""`watch` against a twin: a steady run raises no alarm; slowing the twin mid-run is caught within 3 intervals.

Intervals are short (0.4 s) and the twin fast (10×). The ITL the twin reports comes from its step schedule, so
it does not depend on how busy this machine is; the alarm needs two out-of-band intervals in a row.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tokenomy.catalog.profiles import load_profile
from tokenomy.cli.main import app
from tokenomy.cli.watch import report_table
from tokenomy.costmodel.intervals import figure_interval_80
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.watch.compare import WINDOW_BANDS
from tokenomy.watch.loop import watch_loop
from tokenomy.watch.session import EngineWatch, IntervalReport, WatchOptions

MODEL = "llama-3.1-8b"
SPEEDUP = 10.0
INTERVAL_S = 0.4

Twin = Callable[..., str]


@pytest.fixture
def loaded_twin(twin: Twin) -> Iterator[str]:
    """A twin kept busy by 3 closed-loop clients (200-token prompts, 32 output tokens)."""
    url = twin(speedup=SPEEDUP)
    stop = threading.Event()
    body = {"model": MODEL, "prompt": "hello " * 200, "max_tokens": 32}

    def client() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    c.post(f"{url}/v1/completions", json=body)
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        yield url
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)


def run_watch(url: str, intervals: int, on_interval: Callable[[IntervalReport], None]) -> EngineWatch:
    d = resolve(DeploymentSpec(model=MODEL, gpu="H100-SXM")).deployment
    w = EngineWatch(url, d, WatchOptions(alarm_on=("itl_s",), confirm=2))
    watch_loop([w], INTERVAL_S, lambda reports: on_interval(reports[0]), iterations=intervals)
    return w


def test_steady_twin_no_alarm_and_refit_near_the_profile(loaded_twin: str) -> None:
    reports: list[IntervalReport] = []
    run_watch(loaded_twin, 6, reports.append)
    assert [r.index for r in reports] == [1, 2, 3, 4, 5, 6]
    assert all(r.time_scale == SPEEDUP for r in reports)  # read from twin:speedup
    assert not any(r.alarms for r in reports), [(r.index, r.alarms) for r in reports]
    judged = [r for r in reports if r.observation is not None and r.observation.itl_count >= 20]
    assert len(judged) >= 4
    for r in judged:
        itl = next(c for c in r.checks if c.metric == "itl_s")
        assert itl.status == "ok", itl
    # the twin is the cost model stepped exactly: the closed form's step overhead is recovered within 30%
    fit = reports[-1].fit
    assert fit is not None
    assert fit.step_overhead_s == pytest.approx(load_profile("vllm").step_overhead_s, rel=0.3)
    # judged against the prediction's 80 % interval for H100 × Llama, shown with its pool on the dashboard
    itl = next(c for c in judged[-1].checks if c.metric == "itl_s")
    assert itl.source == "80% interval" and itl.pool.startswith("mean_itl|")
    assert itl.interval[0] <= itl.predicted <= itl.interval[1]
    console = Console(record=True, width=200)
    console.print(report_table(judged[-1]))
    assert f"80% interval, {itl.pool}" in console.export_text()


def test_slowed_twin_alarms_within_three_intervals(loaded_twin: str) -> None:
    changed_after = 3
    reports: list[IntervalReport] = []

    def on_interval(r: IntervalReport) -> None:
        reports.append(r)
        if r.index == changed_after:
            assert httpx.post(f"{loaded_twin}/twin/speed", json={"speedup": SPEEDUP / 2}).status_code == 200

    run_watch(loaded_twin, changed_after + 4, on_interval)
    before = [r for r in reports if r.index <= changed_after]
    assert not any(r.alarms for r in before)
    alarmed = [r.index for r in reports if "itl_s" in r.alarms]
    assert alarmed, [(r.index, [(c.metric, c.status) for c in r.checks]) for r in reports]
    assert alarmed[0] - changed_after <= 3
    itl = next(c for c in reports[-1].checks if c.metric == "itl_s")
    assert itl.status == "high" and itl.ratio == pytest.approx(2.0, rel=0.3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_json_profile_and_own_metrics(loaded_twin: str, tmp_path) -> None:  # noqa: ANN001
    port = free_port()
    seen: dict[str, str] = {}

    def scrape_own_metrics() -> None:  # while the command runs
        for _ in range(100):
            try:
                seen["text"] = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if "tokenomy_watch_observed{" in seen["text"]:
                    return
            except httpx.HTTPError:
                pass
            threading.Event().wait(0.1)

    scraper = threading.Thread(target=scrape_own_metrics, daemon=True)
    scraper.start()
    profile = tmp_path / "fitted.json"
    args = ["watch", loaded_twin, "--interval", str(INTERVAL_S), "--iterations", "4", "--json", "--band-itl", "0.3"]
    result = CliRunner().invoke(app, [*args, "--profile-out", str(profile), "--metrics-port", str(port)])
    scraper.join(timeout=15)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [x["index"] for x in lines] == [1, 2, 3, 4]
    assert {c["metric"] for c in lines[-1]["checks"]} == {
        "ttft_s",
        "itl_s",
        "output_tokens_per_s",
        "kv_usage",
        "waiting",
    }
    checks = {c["metric"]: c for c in lines[-1]["checks"]}
    itl, ttft, kv = checks["itl_s"], checks["ttft_s"], checks["kv_usage"]
    assert (itl["source"], itl["band"]) == ("band", 0.3)  # --band-itl replaces the interval
    assert itl["interval"] == pytest.approx([itl["predicted"] / 1.3, itl["predicted"] * 1.3])
    assert ttft["source"] == "80% interval" and ttft["band"] is None and isinstance(ttft["thin"], bool)
    expected = figure_interval_80("ttft_s", "H100-SXM", MODEL, ttft["predicted"])
    assert expected is not None and ttft["pool"] == expected.pool
    floor = WINDOW_BANDS["ttft_s"]  # the interval, never narrower than a window's scatter
    lo, hi = (
        min(expected.interval_80[0], ttft["predicted"] / (1 + floor)),
        max(expected.interval_80[1], ttft["predicted"] * (1 + floor)),
    )
    assert ttft["interval"] == pytest.approx([lo, hi])
    assert kv["source"] == "band (no residual pool)"
    assert load_profile(str(profile)).fitted_on.startswith("tokenomy watch http://127.0.0.1")
    assert 'tokenomy_watch_observed{engine="' in seen.get("text", "")


def test_cli_bad_input_and_unreachable_engine() -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["watch", "127.0.0.1:9"])
    assert r.exit_code == 2 and "must start with http://" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["watch", "http://127.0.0.1:9", "--alarm-on", "itl,latency"])
    assert r.exit_code == 2 and "'latency'" in r.output and "ttft" in r.output
    r = runner.invoke(app, ["watch", "http://127.0.0.1:9", "--gpu", "H100-SMX"])
    assert r.exit_code == 2 and "H100-SXM" in r.output  # the nearest valid name is suggested
    port = free_port()  # nothing listens there
    r = runner.invoke(app, ["watch", f"http://127.0.0.1:{port}", "--interval", "0.05", "--iterations", "2", "--json"])
    assert r.exit_code == 0, r.output
    notes = [json.loads(line)["note"] for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(notes) == 2 and all("ConnectError" in n for n in notes)
