"""A whole bench: reach the endpoint, warm up, then one run, a rate sweep or an SLO search, all on one client.

Each run's summary has DESIGN.md's shared keys plus `load` (kind and value in wall-clock units)
and, for sweeps and probes, `rate`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import numpy as np

from tokenomy.bench.client import Endpoint, RequestRecord, new_pool
from tokenomy.bench.load import LiveCounts, PlannedRequest, plan_requests, run_load
from tokenomy.bench.metrics import RunArrays, run_arrays, slo_met, slo_values, summarise
from tokenomy.bench.search import RateSearch, SloTerm
from tokenomy.http1 import Pool
from tokenomy.sim.workload import Workload, WorkloadSpec, build_workload
from tokenomy.tokenizer import count_tokens

MIN_PROBE_REQUESTS = 20
PREFLIGHT_TIMEOUT_S = 5.0

Watch = Callable[[LiveCounts], None]
WatchFactory = Callable[[str, int], Watch | None]  # (label, requests) -> progress callback


class BenchError(RuntimeError):
    """The bench cannot go on (endpoint unreachable, no model): a message for the person running it."""


@dataclass
class SearchSettings:
    """Bounds of the SLO search (req/s), its probe budget and how long each probe runs."""

    start_rps: float = 1.0
    min_rps: float = 0.05
    max_rps: float = 1e4
    max_probes: int = 10
    rel_tol: float = 0.05
    probe_s: float = 15.0  # each probe sends max(MIN_PROBE_REQUESTS, rate × probe_s) requests (≤ --num-requests)


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
    summary = summarise(arrays, terms, [r.http_status for r in result.records], result.loop_lag_s)
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


def probe_requests(rate_rps: float, settings: SearchSettings, cap: int) -> int:
    """Requests one probe sends: enough for `probe_s` seconds at the rate, at least MIN_PROBE_REQUESTS, at most cap."""
    return int(min(max(MIN_PROBE_REQUESTS, math.ceil(rate_rps * settings.probe_s)), cap))


async def run_bench_async(plan: BenchPlan, watch_for: WatchFactory | None = None) -> BenchOutcome:
    """Warm-up, then a sweep, an SLO search, or one run of the spec's workload."""
    watch_for = watch_for or (lambda label, n: None)
    spec = plan.spec
    async with httpx.AsyncClient() as http:
        models = await preflight(http, plan.endpoint)
    client = new_pool(plan.endpoint, plan.timeout_s)
    try:
        endpoint = plan.endpoint
        if not endpoint.model:
            if not models:
                raise BenchError(f"{endpoint.base_url}/models lists no model: give --model")
            endpoint = replace(endpoint, model=models[0])
        plan = replace(plan, endpoint=endpoint)
        warmup_errors = 0
        if plan.warmup:
            warmup_errors = await warm_up(client, endpoint, spec, plan.warmup, watch_for("warm-up", plan.warmup))
        if plan.sweep_rates:
            points = []
            for rate in plan.sweep_rates:
                w = build_workload(with_load(spec, rate))
                run = await measure(client, endpoint, w, spec.seed, plan.slo, watch_for(f"{rate:g} req/s", len(w)))
                run.summary["rate"] = rate
                run.summary["load"] = load_of(with_load(spec, rate))
                points.append(run)
            return BenchOutcome(endpoint, points[-1], points, None, warmup_errors)
        if plan.search is not None:
            return await _search(client, plan, plan.search, watch_for, warmup_errors)
        w = build_workload(spec)
        run = await measure(client, endpoint, w, spec.seed, plan.slo, watch_for("bench", len(w)))
        run.summary["load"] = load_of(spec)
        return BenchOutcome(endpoint, run, [], None, warmup_errors)
    finally:
        client.close()


async def _search(
    client: Pool, plan: BenchPlan, settings: SearchSettings, watch_for: WatchFactory, warmup_errors: int
) -> BenchOutcome:
    """Probe rates until the search settles; the outcome's main run is the best passing probe (else the last)."""
    search = RateSearch(settings.start_rps, settings.min_rps, settings.max_rps, settings.max_probes, settings.rel_tol)
    runs: dict[float, RunOutcome] = {}
    rate = search.next_rate()
    while rate is not None:
        n = probe_requests(rate, settings, plan.spec.num_requests)
        spec = with_load(plan.spec, rate, n)
        run = await measure(
            client, plan.endpoint, build_workload(spec), spec.seed, plan.slo, watch_for(f"probe {rate:.3g} req/s", n)
        )
        values = slo_values(run.arrays, plan.slo)
        ok = slo_met(values, plan.slo)
        run.summary["rate"] = rate
        run.summary["load"] = load_of(spec)
        search.record(rate, ok, values)
        runs[rate] = run
        rate = search.next_rate()
    best = runs.get(search.best_ok) if search.best_ok is not None else runs[search.probes[-1].rate_rps]
    assert best is not None
    return BenchOutcome(plan.endpoint, best, [runs[r] for r in sorted(runs)], search, warmup_errors)


def run_bench(plan: BenchPlan, watch_for: WatchFactory | None = None) -> BenchOutcome:
    """run_bench_async on a fresh event loop (uvloop's when installed: less CPU per request)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(run_bench_async(plan, watch_for))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
