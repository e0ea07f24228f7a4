"""A fleet run hour by hour: requests, cost and SLO attainment of each hour of arrivals (for day comparisons)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenomy.sim.run import SLO
from tokenomy.sim.workload import Workload

if TYPE_CHECKING:
    from tokenomy.sim.fleet import Fleet, FleetRun

SECONDS_PER_HOUR = 3600.0


def fleet_hours(fleet: Fleet, run: FleetRun, workload: Workload, slo: SLO | None) -> dict[str, Any]:
    """Per hour of arrival time: requests, USD, SLO attainment (with an SLO) and TTFT p99.

    GPU tiers cost their usd_per_hour for the part of each hour inside the run (they are always on, as in
    simulate_fleet); an API tier costs its token prices for the requests of that hour it served. The hours'
    USD therefore sum to the run's total cost.
    """
    from tokenomy.sim.fleet import GpuTier

    log = run.result.log
    # the hour each request arrived in the run (a session's later turns: when the answer before let them)
    hour = np.floor(log.arrival_s / SECONDS_PER_HOUR).astype(np.int64) if len(workload) else np.zeros(0, int)
    span_h = run.result.duration_s / SECONDS_PER_HOUR
    n = max(int(hour.max()) + 1 if hour.size else 0, math.ceil(span_h))
    starts = np.arange(n, dtype=float)
    in_run = np.clip(span_h - starts, 0.0, 1.0)  # share of each hour inside the run
    usd = np.zeros(n)
    for i, tier in enumerate(fleet.tiers):
        if isinstance(tier, GpuTier):
            usd += tier.usd_per_hour() * in_run
        else:
            served = (run.tier_of == i) & log.done
            cost = (log.input_tokens * tier.usd_per_mtok_input + log.output_tokens * tier.usd_per_mtok_output) / 1e6
            usd += np.bincount(hour[served], weights=cost[served], minlength=n)[:n]
    requests = np.bincount(hour, minlength=n)[:n]
    ttft = log.first_token_s - log.arrival_s
    p99 = []
    for h in range(n):
        v = ttft[(hour == h) & log.done]
        p99.append(float(np.percentile(v, 99)) if v.size else None)
    out: dict[str, Any] = {
        "hour": list(range(n)),
        "requests": requests.astype(int).tolist(),
        "usd": usd.tolist(),
        "ttft_p99_s": p99,
    }
    if slo is not None and slo.given:
        met = np.bincount(hour, weights=slo.met(log).astype(float), minlength=n)[:n]
        out["slo_attainment"] = [float(m / r) if r else None for m, r in zip(met, requests, strict=True)]
    return out
