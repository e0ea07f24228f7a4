"""The capacity search's probe on the simulator: `tokenomy simulate --slo … --find-capacity`.

The same search as `bench` (tokenomy.bench.search.find_capacity): each probe replays the workload at one
Poisson rate on one replica through `tokenomy.sim.run.simulate` (its public API only), long enough for
steady state, and is judged on the requests that arrived in its measured window. Requests the replica
rejected count as failed. ITL terms use the run's pooled inter-token-gap histogram (warm-up included: the
simulator pools gaps over the whole run); TTFT, TPOT and E2E terms use the window's requests only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenomy.bench.search import (
    CapacitySettings,
    Probe,
    ProbeSize,
    RateSearch,
    SloTerm,
    at_exact_rate,
    find_capacity,
    judge_probe,
    per_request_limits,
    window_stats,
)
from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import SimResult, simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload


@dataclass
class SimCapacity:
    """What the simulated search found: the search (best rate, every probe) and the unloaded latency it began at."""

    search: RateSearch
    unloaded_latency_s: float

    def to_json(self) -> dict[str, Any]:
        return {**self.search.outcome(), "unloaded_e2e_s": self.unloaded_latency_s, "rate_unit": "req/s per replica"}


def at_rate(spec: WorkloadSpec, rate_rps: float, num_requests: int) -> WorkloadSpec:
    """The same lengths and seed at another Poisson (or gamma) rate and request count."""
    return spec.model_copy(
        update={"rate": rate_rps, "concurrency": None, "daily_rates": None, "trace": None, "num_requests": num_requests}
    )


def unloaded_latency_s(d: Deployment, spec: WorkloadSpec, config: ReplicaConfig) -> float:
    """Mean E2E of a few requests sent one at a time: the first guess that sizes the first probe."""
    one = spec.model_copy(update={"rate": None, "concurrency": 1, "daily_rates": None, "trace": None})
    one = one.model_copy(update={"num_requests": 4})
    log = simulate(d, build_workload(one), config, seed=spec.seed).log
    e2e = log.e2e_s()
    return float(np.mean(e2e)) if e2e.size else 1.0


def term_values(result: SimResult, measured: np.ndarray, terms: Sequence[SloTerm]) -> dict[str, float]:
    """Each SLO term's statistic over the measured requests (a request not finished counts as infinitely slow)."""
    log = result.log
    done = log.done & measured
    failed = int((measured & ~log.done).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        per_request = {
            "ttft": (log.first_token_s - log.arrival_s)[done],
            "e2e": (log.finish_s - log.arrival_s)[done],
            "tpot": np.where(
                log.output_tokens > 1,
                (log.finish_s - log.first_token_s) / np.maximum(log.output_tokens - 1, 1),
                np.nan,
            )[done],
        }
    out: dict[str, float] = {}
    for t in terms:
        if t.metric == "itl":
            hist = result.itl
            value = hist.mean() if t.stat == "mean" else hist.percentile(float(t.stat[1:]))
            out[t.key] = math.inf if failed else float(value)
            continue
        samples = per_request[t.metric]
        samples = np.concatenate([samples[~np.isnan(samples)], np.full(failed, math.inf)])
        out[t.key] = t.value(samples)
    return out


def goodput_rps(result: SimResult, measured: np.ndarray, terms: Sequence[SloTerm], window_s: float) -> float:
    """Measured requests per second that finished within every per-request limit (itl checked on TPOT)."""
    log = result.log
    ok = log.done & measured
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(
            log.output_tokens > 1, (log.finish_s - log.first_token_s) / np.maximum(log.output_tokens - 1, 1), 0.0
        )
        values = {"ttft": log.first_token_s - log.arrival_s, "e2e": log.finish_s - log.arrival_s}
        for metric, limit in per_request_limits(list(terms)).items():
            ok &= np.nan_to_num(values.get(metric, tpot), nan=math.inf) <= limit
    return float(ok.sum()) / max(window_s, 1e-12)


def simulated_probe(
    d: Deployment, spec: WorkloadSpec, config: ReplicaConfig, terms: Sequence[SloTerm]
) -> Callable[[ProbeSize], Probe]:
    """probe(size): simulate `size.requests` Poisson arrivals at the rate, judge the window after the warm-up."""

    def probe(size: ProbeSize) -> Probe:
        workload = build_workload(at_rate(spec, size.rate_rps, size.requests))
        workload.arrival_s = at_exact_rate(workload.arrival_s, size.rate_rps)
        result = simulate(d, workload, config, seed=spec.seed)
        log = result.log
        end_s = float(np.max(log.arrival_s)) if len(log.arrival_s) else size.duration_s
        stats = window_stats(log.arrival_s, np.where(log.done, log.finish_s, np.nan), size.warmup_s, end_s)
        measured = stats.measured
        e2e = (log.finish_s - log.arrival_s)[measured & log.done]
        judged = judge_probe(
            size.rate_rps,
            stats,
            term_values(result, measured, terms),
            list(terms),
            failed=int((measured & ~log.done).sum()),
            mean_latency_s=float(np.mean(e2e)) if e2e.size else None,
        )
        judged.goodput_rps = goodput_rps(result, measured, terms, stats.end_s - stats.start_s)
        return judged

    return probe


def simulate_capacity(
    d: Deployment,
    spec: WorkloadSpec,
    config: ReplicaConfig,
    terms: Sequence[SloTerm],
    settings: CapacitySettings,
    on_probe: Callable[[Probe], None] | None = None,
) -> SimCapacity:
    """The highest Poisson rate (req/s, one replica) at which the simulated replica meets every SLO term."""
    latency = unloaded_latency_s(d, spec, config)
    search = find_capacity(simulated_probe(d, spec, config, terms), settings, latency, on_probe)
    return SimCapacity(search, latency)
