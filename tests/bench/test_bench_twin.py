"""`tokenomy bench` against real `tokenomy twin` servers on 127.0.0.1: counts, timing, send lag, errors, SLO search.

The twin serves in this process on a background thread, faster than real time (`speedup`); bench
measures wall-clock time, so predictions are compared after dividing them by the speedup.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from tokenomy.bench.client import Endpoint
from tokenomy.bench.economics import predicted_summary
from tokenomy.bench.load import LiveCounts
from tokenomy.bench.runner import BenchOutcome, BenchPlan, SearchSettings, run_bench
from tokenomy.bench.search import CapacitySettings, parse_slo
from tokenomy.bench.simprobe import simulate_capacity, unloaded_latency_s
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.workload import WorkloadSpec
from tokenomy.twin.server import running_twin

MODEL, GPU = "llama-3.1-8b", "H100-SXM"
SPEEDUP = 10.0
# The twin answers a request a few ms (wall) after the cost model's prefill time: HTTP parsing, prompt
# tokenisation and the step boundary, with client and server sharing this process. Measured ≈ 6–10 ms idle.
TWIN_TTFT_OVERHEAD_MAX_S = 0.05  # ~5x the idle figure: holds at load average 5 on 2 cores
N_RATE_RUN = 40
TIMING_REL = 0.15  # measured vs predicted ÷ speedup, at load average 5 on 2 cores
# Long enough outputs that a late first or last token (a busy machine: the client shares this process and the
# CPUs with other work) moves a request's decode time by a few percent at most: ~90 ms of decode per request.
OSL_RATE_RUN = 128


@pytest.fixture(scope="module")
def twin_url() -> Iterator[str]:
    with running_twin(MODEL, GPU, speedup=SPEEDUP) as url:
        yield url


def bench(url: str, spec: WorkloadSpec, **plan: object) -> BenchOutcome:
    return run_bench(BenchPlan(Endpoint(url + "/v1", MODEL), spec, **plan))  # type: ignore[arg-type]


def twin_stats(url: str, reset: bool = False) -> dict:
    """The twin's /twin/stats (counters and the lateness of its token writes), reset first if asked."""
    if reset:
        return httpx.post(url + "/twin/stats/reset", timeout=10).raise_for_status().json()
    return httpx.get(url + "/twin/stats", timeout=10).json()


@dataclass(frozen=True)
class TwinSchedule:
    """How far the twin's token writes strayed from its schedule during the rate run (wall seconds)."""

    behind_s: float  # the schedule moved forward (stalls over MAX_LAG_S)
    lateness_min_s: float  # earliest write (negative: ahead of its slot)
    lateness_p50_s: float  # median lateness of a write
    lateness_max_s: float  # latest write


@pytest.fixture(scope="module")
def rate_run(twin_url: str) -> tuple[BenchOutcome, TwinSchedule]:
    spec = WorkloadSpec(isl="256", osl=str(OSL_RATE_RUN), rate=20, num_requests=N_RATE_RUN, seed=1)
    before_s = twin_stats(twin_url, reset=True)["counters"]["behind_s"]
    outcome = bench(twin_url, spec)
    after = twin_stats(twin_url)
    late = after["emission_lateness_s"]
    schedule = TwinSchedule(
        behind_s=after["counters"]["behind_s"] - before_s,
        lateness_min_s=min(late.get("min", 0.0), 0.0),
        lateness_p50_s=max(late.get("p50", 0.0), 0.0),
        lateness_max_s=max(late.get("max", 0.0), 0.0),
    )
    return outcome, schedule


def test_token_counts_match_the_server_usage_and_the_client_count(rate_run: tuple[BenchOutcome, TwinSchedule]) -> None:
    s = rate_run[0].main.summary
    n = N_RATE_RUN
    assert s["requests"] == {"total": n, "completed": n, "failed": 0}
    assert s["errors"]["total"] == 0
    tok = s["tokens"]
    assert tok["usage_reported"] == n
    assert tok["output"] == n * OSL_RATE_RUN == tok["output_client_count"]  # max_tokens honoured, counted exactly
    assert tok["output_mismatched_requests"] == 0
    assert tok["input"] == n * 256 == tok["input_requested"]  # chat prompts sized for the template
    assert tok["chunks"] == n * OSL_RATE_RUN and tok["mean_tokens_per_chunk"] == 1.0  # one event per step
    assert int(rate_run[0].main.arrays.itl_s.size) == n * (OSL_RATE_RUN - 1)  # one gap per token after the first


def test_measured_timing_agrees_with_the_prediction_divided_by_the_speedup(
    rate_run: tuple[BenchOutcome, TwinSchedule],
) -> None:
    outcome, twin = rate_run
    d = resolve(DeploymentSpec(model=MODEL, gpu=GPU, tp=1)).deployment
    s = outcome.main.summary
    p = predicted_summary(d, outcome.main.workload, SPEEDUP)
    # Means over whole decodes and medians over requests: one late write cannot move them by much, and TIMING_REL
    # covers a quiet machine (how close they come there is benchmarks/bench_vs_simulate.py's figure). On a busy
    # one (the client shares this process and two cores with other work) the bounds widen by what the twin and
    # the client report they strayed from their schedules, so they hold at any load: a gap measured = its
    # scheduled gap + the change of its write's lateness + the change of the client's read delay, and over a
    # stream's OSL - 1 gaps those changes add up to last minus first, at most the twin's lateness range, the
    # schedule it moved forward meanwhile (resyncs over MAX_LAG_S) and the client's event-loop lag (p99); a run's
    # duration stretches by the schedule the twin moved and its latest write.
    client_lag_s = s["client"]["loop_lag_s"] or {"p50": 0.0, "p99": 0.0}
    stretch_s = twin.lateness_max_s - twin.lateness_min_s + twin.behind_s + client_lag_s["p99"]
    gap_slack_s = stretch_s / (OSL_RATE_RUN - 1)
    late = (twin.behind_s + twin.lateness_max_s) / s["duration_s"]
    for measured, predicted in ((s["itl_s"]["mean"], p["itl_s"]["mean"]), (s["tpot_s"]["p50"], p["tpot_s"]["p50"])):
        assert predicted / (1 + TIMING_REL) <= measured <= predicted * (1 + TIMING_REL) + gap_slack_s, (twin, s)
    measured_tps, predicted_tps = s["throughput"]["output_tokens_per_s"], p["throughput"]["output_tokens_per_s"]
    assert predicted_tps / (1 + TIMING_REL + late) <= measured_tps <= predicted_tps * (1 + TIMING_REL), twin
    excess = s["ttft_s"]["p50"] - p["ttft_s"]["p50"]
    assert 0 < excess < TWIN_TTFT_OVERHEAD_MAX_S + twin.lateness_p50_s + client_lag_s["p50"], twin


def test_a_slow_client_shows_as_send_lag_and_latency_counts_from_the_intended_time(twin_url: str) -> None:
    def blocking_progress(_label: str, _n: int):
        def watch(_counts: LiveCounts) -> None:
            time.sleep(0.08)  # a progress display that hogs the event loop

        return watch

    spec = WorkloadSpec(isl="64", osl="8", rate=60, num_requests=60, seed=2)
    out = run_bench(BenchPlan(Endpoint(twin_url + "/v1", MODEL), spec), blocking_progress)
    a = out.main.arrays
    lag = a.send_lag_s
    assert lag.max() >= 0.05
    assert out.main.summary["client"]["bottleneck"] is True
    assert out.main.summary["client"]["loop_lag_s"]["p99"] >= 0.05
    late = lag > 0.03
    assert late.sum() >= 3
    # TTFT counts from the intended send time, so it includes the lag; from the actual send it would not
    assert np.all(a.ttft_s[late] >= lag[late])
    assert np.all(a.first_token_s - a.sent_s < a.ttft_s)


def post_fail(url: str, mode: str | None, after_tokens: int = 0) -> None:
    httpx.post(f"{url}/twin/fail", json={"mode": mode, "after_tokens": after_tokens}, timeout=5).raise_for_status()


@pytest.mark.parametrize(
    ("mode", "after", "kind", "status"),
    [
        ("http500", 0, "http", "500"),
        ("refuse", 0, "http", "503"),
        ("cut", 3, "stream_cut", None),
        ("stall", 2, "timeout", None),
    ],
)
def test_twin_faults_are_counted_by_kind_without_ending_the_run(
    twin: Callable[..., str], mode: str, after: int, kind: str, status: str | None
) -> None:
    url = twin(model=MODEL, gpu=GPU, speedup=SPEEDUP)
    spec = WorkloadSpec(isl="32", osl="8", num_requests=4, seed=3)
    post_fail(url, mode, after)
    failed = bench(url, spec, timeout_s=0.5)
    post_fail(url, None)
    healthy = bench(url, spec)
    errors = failed.main.summary["errors"]
    assert errors["total"] == errors[kind] == 4
    if status:
        assert errors["http_status"] == {status: 4}
    if mode in ("cut", "stall"):
        assert all(len(r.chunk_s) == after for r in failed.main.records)  # tokens before the fault were received
    assert healthy.main.summary["errors"]["total"] == 0 and healthy.main.summary["requests"]["completed"] == 4


def test_slo_search_agrees_with_the_same_search_on_the_simulator(twin: Callable[..., str]) -> None:
    """Against a twin with 4 sequences at most, bench's search for E2E p90 <= 2x the unloaded E2E lands near the
    same search run on the simulator (bench.simprobe); a busy machine slows the twin, so lower is allowed."""
    speedup = 4.0
    spec = WorkloadSpec(isl="256", osl="32", seed=0)
    d = resolve(DeploymentSpec(model=MODEL, gpu=GPU, tp=1)).deployment
    config = ReplicaConfig(max_num_seqs=4)
    unloaded = unloaded_latency_s(d, spec, config)
    terms = parse_slo(f"e2e_p90<={2 * unloaded:.4f}s")
    sim = simulate_capacity(d, spec, config, terms, CapacitySettings(start_rps=8, max_probes=12, min_window_s=5.0))
    assert sim.search.best_ok is not None and sim.search.lowest_fail is not None
    wall_terms = parse_slo(f"e2e_p90<={2 * unloaded / speedup:.4f}s")
    settings = SearchSettings(
        start_rps=sim.search.best_ok * speedup * 0.7, max_probes=3, rel_tol=0.15, probe_s=1.0, verify_s=2.0,
        min_window_arrivals=60,
    )  # fmt: skip
    out = bench(twin(model=MODEL, gpu=GPU, speedup=speedup, max_num_seqs=4), spec, slo=wall_terms, search=settings)
    found = out.search
    assert found is not None and found.best_ok is not None and len(found.probes) <= settings.max_probes
    # Lower bound: the search's own grid one failure down. A first probe (0.7× the simulator's capacity) that fails
    # on a slowed twin halves the rate, then bisects: the best it can then find is 0.7 / √2 ≈ 0.495× (the old bound,
    # 0.5×, failed exactly there); two failures or a failing bisection still fail the test.
    lowest = 0.7 / math.sqrt(2) * (1 - 1e-6)
    assert lowest * sim.search.best_ok <= found.best_ok / speedup <= 1.2 * sim.search.lowest_fail
    for p in found.probes:  # every probe ran to steady state on its own schedule, not a --num-requests burst
        assert p.measured_requests >= 60 and (p.ok or p.reasons)
    assert out.verification is not None and out.verification.rate_rps == found.best_ok
    assert out.main.summary["rate"] == found.best_ok and out.main.summary["probe"]["rate_rps"] == found.best_ok


def test_the_progress_rate_ends_on_the_summarys_request_rate(twin_url: str) -> None:
    """The bar shows completed requests per second from the first intended send to the latest completion:
    by its last update that is exactly the summary's requests_per_s (not the last seconds' completions)."""
    seen: list[float] = []

    def progress(_label: str, _n: int):
        def watch(counts: LiveCounts) -> None:
            seen.append(counts.rate_rps())

        return watch

    spec = WorkloadSpec(isl="64", osl="16", rate=40, num_requests=30, seed=4)
    out = run_bench(BenchPlan(Endpoint(twin_url + "/v1", MODEL), spec), progress)
    assert seen and seen[-1] == pytest.approx(out.main.summary["throughput"]["requests_per_s"], rel=1e-9)
