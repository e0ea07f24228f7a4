"""A whole bench: reach the endpoint, warm up, then one run, a rate sweep or an SLO search, all on one client.

Each run's summary has docs/design.md's shared keys plus `load` (kind and value in wall-clock units)
and, for sweeps and probes, `rate`. The SLO search is `tokenomy.bench.search.find_capacity` (the search
`simulate --find-capacity` runs too) with probes against the endpoint: a probe's summary covers its measured
window (after the warm-up) and carries its verdict under `probe`; the verification run at the rate found is
judged the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import numpy as np

from tokenomy.bench.client import Endpoint, RequestRecord, new_pool
from tokenomy.bench.load import LiveCounts, PlannedRequest, plan_requests, run_load
from tokenomy.bench.metrics import RunArrays, met_slo, run_arrays, slo_values, summarise
from tokenomy.bench.search import (
    MIN_WINDOW_ARRIVALS,
    CapacitySettings,
    Probe,
    ProbeSize,
    RateSearch,
    SloTerm,
    at_exact_rate,
    find_capacity,
    judge_probe,
    per_request_limits,
    probe_size,
    window_stats,
)
from tokenomy.http1 import Pool
from tokenomy.sim.workload import Workload, WorkloadSpec, build_workload
from tokenomy.tokenizer import count_tokens

UNLOADED_REQUESTS = 4  # sent one at a time before a search: the unloaded latency sizes the first probe
PREFLIGHT_TIMEOUT_S = 5.0

Watch = Callable[[LiveCounts], None]
WatchFactory = Callable[[str, int], Watch | None]  # (label, requests) -> progress callback


class BenchError(RuntimeError):
    """The bench cannot go on (endpoint unreachable, no model): a message for the person running it."""


@dataclass
class SearchSettings:
    """Bounds of the SLO search (req/s), its probe budget, each probe's shortest measured window and the
    verification run at the rate found (0: none); see tokenomy.bench.search for how a probe is sized and judged."""

    start_rps: float = 1.0
    min_rps: float = 0.05
    max_rps: float = 1e4
    max_probes: int = 10
    rel_tol: float = 0.05
    probe_s: float = 15.0  # shortest measured window of a probe (longer when steady state needs it)
    verify_s: float = 40.0  # seconds of arrivals of the verification run
    max_window_s: float = 600.0
    min_window_arrivals: int = MIN_WINDOW_ARRIVALS

    def capacity(self) -> CapacitySettings:
        return CapacitySettings(
            self.start_rps,
            self.min_rps,
            self.max_rps,
            self.max_probes,
            self.rel_tol,
            self.probe_s,
            self.max_window_s,
            self.min_window_arrivals,
        )


@dataclass
class BenchPlan:
    """Everything one `tokenomy bench` does."""

    endpoint: Endpoint
    spec: WorkloadSpec
    warmup: int = 0
    timeout_s: float = 300.0
    slo: Sequence[SloTerm] = ()
    sweep_rates: Sequence[float] | None = None
    search: SearchSettings | None = None
    max_error_rate: float = 0.0  # a probe with a larger share of failed requests fails


@dataclass
class RunOutcome:
    """One measured run: its workload, records, arrays and summary."""

    workload: Workload
    records: list[RequestRecord]
    arrays: RunArrays
    summary: dict[str, Any]


@dataclass
class BenchOutcome:
    endpoint: Endpoint  # as used: the model filled in from /models when not given
    main: RunOutcome
    sweep: list[RunOutcome] = field(default_factory=list)
    search: RateSearch | None = None
    warmup_errors: int = 0
    verification: Probe | None = None  # the run at the rate found, judged like a probe


def load_of(spec: WorkloadSpec) -> dict[str, Any]:
    """The load a spec applies: rate (req/s), concurrency, trace (its own timing) or offline (all at once)."""
    if spec.concurrency is not None:
        return {"kind": "concurrency", "value": spec.concurrency}
    if spec.rate is not None:
        return {"kind": "rate", "value": spec.rate, "burstiness": spec.burstiness}
    if spec.trace is not None:
        return {"kind": "trace", "value": None, "time_scale": spec.time_scale}
    return {"kind": "offline", "value": None}


def with_load(spec: WorkloadSpec, rate_rps: float, num_requests: int | None = None) -> WorkloadSpec:
    """The same workload (lengths, seed) at another Poisson/gamma rate."""
    data = {**spec.model_dump(), "rate": rate_rps, "concurrency": None, "daily_rates": None}
    if num_requests is not None:
        data["num_requests"] = num_requests
    return WorkloadSpec(**data)


async def preflight(client: httpx.AsyncClient, endpoint: Endpoint) -> list[str]:
    """GET {base}/models: the served model ids; an unreachable endpoint raises BenchError with the reason."""
    try:
        resp = await client.get(endpoint.base_url + "/models", headers=endpoint.headers(), timeout=PREFLIGHT_TIMEOUT_S)
    except httpx.ConnectError as exc:
        raise BenchError(f"cannot reach {endpoint.base_url}: {exc or 'connection refused'}") from exc
    except httpx.TimeoutException as exc:
        raise BenchError(f"cannot reach {endpoint.base_url}: no answer in {PREFLIGHT_TIMEOUT_S:g} s") from exc
    except httpx.TransportError as exc:
        raise BenchError(f"cannot reach {endpoint.base_url}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code in (401, 403):
        raise BenchError(f"{endpoint.base_url}/models answered {resp.status_code}: check --api-key-env")
    if resp.status_code != 200:
        return []  # some servers have no /models; the requests will tell
    try:
        return [str(m["id"]) for m in resp.json().get("data", []) if isinstance(m, dict) and "id" in m]
    except (ValueError, AttributeError):
        return []


async def measure(
    client: Pool,
    endpoint: Endpoint,
    workload: Workload,
    seed: int,
    terms: Sequence[SloTerm],
    watch: Watch | None,
) -> RunOutcome:
    """Run one workload and summarise it."""
    requests = plan_requests(workload, endpoint.kind, seed)
    result = await run_load(client, endpoint, requests, workload.concurrency, watch)
    arrays = run_arrays(result.records, count_tokens)
    summary = summarise(arrays, terms, [r.http_status for r in result.records], result.loop_lag_s, result.records)
    return RunOutcome(workload, result.records, arrays, summary)


async def warm_up(client: Pool, endpoint: Endpoint, spec: WorkloadSpec, n: int, watch: Watch | None) -> int:
    """Send n requests (the workload's first lengths, distinct prompts) all at once; returns how many failed."""
    w = build_workload(WorkloadSpec(**{**spec.model_dump(), "rate": None, "concurrency": None, "num_requests": n}))
    w = w.subset(np.arange(min(n, len(w))))
    w.arrival_s = np.zeros(len(w))
    requests = [
        PlannedRequest(r.index, 0.0, r.input_tokens, r.output_tokens, r.prompt)
        for r in plan_requests(w, endpoint.kind, seed=spec.seed + 7_919)
    ]
    result = await run_load(client, endpoint, requests, None, watch)
    return sum(r.error is not None for r in result.records)


def judge_run(
    run: RunOutcome, size: ProbeSize, terms: Sequence[SloTerm], max_error_rate: float
) -> tuple[Probe, RunArrays, list[RequestRecord]]:
    """A probe's verdict on its measured window: the requests that arrived after the warm-up (search.judge_probe);
    with the window's arrays and records."""
    a = run.arrays
    end_s = float(np.max(a.intended_s)) if a.intended_s.size else size.duration_s
    stats = window_stats(a.intended_s, a.end_s, min(size.warmup_s, end_s), end_s)
    measured = [r for r, m in zip(run.records, stats.measured, strict=True) if m]
    window = run_arrays(measured, count_tokens)
    e2e = window.e2e_s[window.ok]
    probe = judge_probe(
        size.rate_rps,
        stats,
        slo_values(window, terms),
        list(terms),
        failed=int((~window.ok).sum()),
        mean_latency_s=float(np.mean(e2e)) if e2e.size else None,
        max_error_rate=max_error_rate,
    )
    met = met_slo(window, per_request_limits(list(terms)))
    probe.goodput_rps = float(met.sum()) / max(stats.end_s - stats.start_s, 1e-12)
    return probe, window, measured


async def unloaded_latency_s(client: Pool, endpoint: Endpoint, spec: WorkloadSpec, watch: Watch | None) -> float:
    """Mean E2E of a few requests sent one at a time: the first guess that sizes the first probe."""
    one = WorkloadSpec(**{**spec.model_dump(), "rate": None, "concurrency": 1, "num_requests": UNLOADED_REQUESTS})
    run = await measure(client, endpoint, build_workload(one), spec.seed + 104_729, (), watch)
    e2e = run.arrays.e2e_s[run.arrays.ok]
    if not e2e.size:
        raise BenchError(f"no request to {endpoint.url} succeeded: {first_error(run.records)}")
    return float(np.mean(e2e))


def first_error(records: Sequence[RequestRecord]) -> str:
    """The first failure of a run in words: its kind, HTTP status and the server's message."""
    from tokenomy.bench.metrics import describe_error

    for r in records:
        if r.error is not None:
            return describe_error(r.error, r.http_status, r.error_detail)
    return "no response"


async def _probe_run(
    client: Pool, plan: BenchPlan, size: ProbeSize, label: str, watch_for: WatchFactory
) -> tuple[Probe, RunOutcome]:
    """Offer size.rate_rps for size.duration_s (Poisson, the spec's lengths) and judge it."""
    spec = with_load(plan.spec, size.rate_rps, size.requests)
    workload = build_workload(spec)
    workload.arrival_s = at_exact_rate(workload.arrival_s, size.rate_rps)
    run = await measure(client, plan.endpoint, workload, spec.seed, plan.slo, watch_for(label, size.requests))
    probe, window, measured = judge_run(run, size, plan.slo, plan.max_error_rate)
    # the probe's figures (summary, arrays) are its measured window's, after the warm-up; run.records keeps every
    # request (for --requests-csv)
    client_lag = run.summary["client"]  # the client's lag over the whole run
    run.summary = summarise(window, plan.slo, [r.http_status for r in measured], None, measured)
    run.summary["client"] = client_lag
    run.arrays = window
    run.summary["rate"] = size.rate_rps
    run.summary["load"] = load_of(spec)
    run.summary["probe"] = probe.as_dict()
    return probe, run


def run_bench(plan: BenchPlan, watch_for: WatchFactory | None = None) -> BenchOutcome:
    """Warm-up, then a sweep, an SLO search (and its verification run), or one run of the spec's workload;
    on a fresh event loop (uvloop's when installed: less CPU per request)."""
    watch_for = watch_for or (lambda label, n: None)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        plan, client, warmup_errors = runner.run(_connect(plan, watch_for))
        try:
            if plan.search is not None and not plan.sweep_rates:
                return _search(runner, client, plan, plan.search, watch_for, warmup_errors)
            return runner.run(_runs(client, plan, watch_for, warmup_errors))
        finally:
            client.close()


async def run_bench_async(plan: BenchPlan, watch_for: WatchFactory | None = None) -> BenchOutcome:
    """A sweep or one run on the running event loop (the SLO search needs run_bench: it blocks between probes)."""
    watch_for = watch_for or (lambda label, n: None)
    plan, client, warmup_errors = await _connect(plan, watch_for)
    try:
        return await _runs(client, plan, watch_for, warmup_errors)
    finally:
        client.close()


async def _connect(plan: BenchPlan, watch_for: WatchFactory) -> tuple[BenchPlan, Pool, int]:
    """Reach the endpoint (the model from /models when not given) and send the warm-up requests."""
    async with httpx.AsyncClient() as http:
        models = await preflight(http, plan.endpoint)
    endpoint = plan.endpoint
    if not endpoint.model:
        if not models:
            raise BenchError(f"{endpoint.base_url}/models lists no model: give --model")
        endpoint = replace(endpoint, model=models[0])
    plan = replace(plan, endpoint=endpoint)
    client = new_pool(plan.endpoint, plan.timeout_s)
    warmup_errors = 0
    if plan.warmup:
        warmup_errors = await warm_up(client, endpoint, plan.spec, plan.warmup, watch_for("warm-up", plan.warmup))
    return plan, client, warmup_errors


async def _runs(client: Pool, plan: BenchPlan, watch_for: WatchFactory, warmup_errors: int) -> BenchOutcome:
    """A sweep (one run per rate) or one run of the spec's workload."""
    spec, endpoint = plan.spec, plan.endpoint
    if plan.sweep_rates:
        points = []
        for rate in plan.sweep_rates:
            w = build_workload(with_load(spec, rate))
            run = await measure(client, endpoint, w, spec.seed, plan.slo, watch_for(f"{rate:g} req/s", len(w)))
            run.summary["rate"] = rate
            run.summary["load"] = load_of(with_load(spec, rate))
            points.append(run)
        return BenchOutcome(endpoint, points[-1], points, None, warmup_errors)
    w = build_workload(spec)
    run = await measure(client, endpoint, w, spec.seed, plan.slo, watch_for("bench", len(w)))
    run.summary["load"] = load_of(spec)
    return BenchOutcome(endpoint, run, [], None, warmup_errors)


def _search(
    runner: asyncio.Runner,
    client: Pool,
    plan: BenchPlan,
    settings: SearchSettings,
    watch_for: WatchFactory,
    warmup_errors: int,
) -> BenchOutcome:
    """find_capacity with probes against the endpoint, then a verification run at the rate found.

    The outcome's main run is the verification run (else the best passing probe, else the last probe)."""
    runs: list[tuple[Probe, RunOutcome]] = []

    def probe(size: ProbeSize) -> Probe:
        label = f"probe {size.rate_rps:.4g} req/s, {size.duration_s:.3g} s"
        result, run = runner.run(_probe_run(client, plan, size, label, watch_for))
        runs.append((result, run))
        return result

    latency = runner.run(unloaded_latency_s(client, plan.endpoint, plan.spec, watch_for("unloaded latency", 4)))
    search = find_capacity(probe, settings.capacity(), latency)
    counted = {id(p) for p in search.probes}
    probes = [(p, r) for p, r in runs if id(p) in counted]  # a probe rerun longer counts once, as its last run
    passing = [(p, r) for p, r in probes if p.ok and p.rate_rps == search.best_ok]
    main = passing[-1][1] if passing else probes[-1][1]
    verification = None
    if search.best_ok is not None and settings.verify_s > 0:
        seen = max(latency, passing[-1][0].mean_latency_s or latency)
        warmup = min(probe_size(search.best_ok, seen, settings.probe_s, 1).warmup_s, settings.verify_s / 2)
        size = ProbeSize(search.best_ok, warmup, settings.verify_s - warmup)
        label = f"verify {search.best_ok:.4g} req/s, {settings.verify_s:g} s"
        verification, main = runner.run(_probe_run(client, plan, size, label, watch_for))
    sweep = sorted((r for _, r in probes), key=lambda r: r.summary["rate"])
    return BenchOutcome(plan.endpoint, main, sweep, search, warmup_errors, verification)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
