"""The recommended plan's busiest hour, simulated as one fleet (`tokenomy.sim.fleet`).

Every self-hosted tier gets the replicas the plan runs at that hour behind the fleet router
(least outstanding requests). The share of a class the plan sends to its API in that hour goes
there directly (the plan's split, drawn at random per request), as do API-only classes. The API's
latency is the workload's assumed p99 TTFT, as a log-normal with the fleet simulator's default spread.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tokenomy.advise.advisor import Advice
from tokenomy.sim.fleet import ApiTier, Fleet, GpuTier, simulate_fleet
from tokenomy.sim.replica import ReplicaConfig, SpecDecoding
from tokenomy.sim.run import SLO
from tokenomy.sim.workload import Workload, parse_lengths, poisson_arrivals

API_TTFT_SIGMA = 0.4  # ApiTier's default log-normal spread
Z_99 = 2.3263  # standard normal 99th percentile


def api_tier(name: str, usd_in: float, usd_out: float, ttft_p99_s: float, tpot_s: float) -> ApiTier:
    return ApiTier(
        name, usd_in, usd_out, ttft_median_s=ttft_p99_s / math.exp(API_TTFT_SIGMA * Z_99), tpot_median_s=tpot_s
    )


def peak_hour_fleet(advice: Advice, minutes: float = 10.0, seed: int = 0) -> dict[str, Any] | None:
    """Simulate `minutes` of the busiest hour on the plan's fleet; None when nothing is self-hosted."""
    table, wl = advice.table, advice.workload
    hour = int(np.argmax(wl.rates_rps))
    tiers: list[GpuTier | ApiTier] = []
    routes: dict[str, tuple[str, ...]] = {}
    apis: dict[str, ApiTier] = {}
    for plan in advice.tiers:
        g = plan.group
        for c in g.classes:
            api = g.api.per_class.get(c.name) if g.api else None
            if api is not None and api.name not in apis:
                apis[api.name] = api_tier(
                    api.name,
                    api.usd_per_mtok_input,
                    api.usd_per_mtok_output,
                    wl.candidates.api_ttft_p99_s,
                    wl.candidates.api_tpot_s,
                )
            if plan.row is not None:
                routes[c.name] = (g.name,)
            if api is not None:
                routes[api_class(c.name)] = (api.name,)
        if plan.row is None or plan.day is None:
            continue
        r = plan.row
        spec = None
        if table.spec[r]:
            sp = wl.candidates.speculative
            spec = SpecDecoding(table.drafts[table.dep[r]], sp.draft_tokens, sp.acceptance)
        slots = int(table.slots[r] if table.spec[r] else table.max_batch[r])
        replicas = max(int(plan.day.replicas[hour]), 1)
        config = ReplicaConfig(max_num_seqs=slots, spec=spec)
        tiers.append(
            GpuTier(
                g.name,
                table.deployments[table.dep[r]],
                replicas,
                min(plan.day.reserved, replicas),
                "least_outstanding",
                None,
                config,
            )
        )
    if not tiers:
        return None
    tiers.extend(apis.values())
    routes["*"] = next(iter(routes.values()))
    fleet = Fleet(tuple(tiers), routes)
    workload = hour_workload(advice, hour, minutes, seed)
    mine = np.array([str(c) for c in workload.classes], dtype=object)
    for plan in advice.tiers:  # the plan's API share of each class in this hour
        rate = float(plan.group.rates_rps[hour])
        share = 1.0 if plan.day is None else float(plan.day.api_rps[hour]) / rate if rate else 0.0
        for c in plan.group.classes:
            if plan.group.api is None or c.name not in plan.group.api.per_class:
                continue
            rng = np.random.default_rng(seed + 7)
            moved = (mine == c.name) & (rng.random(len(mine)) < share)
            workload.classes[moved] = api_class(c.name)
    slo_ttft = min(c.spec.slo.ttft_s for c in wl.classes)
    slo_tpot = min(c.spec.slo.tpot_s for c in wl.classes)
    run = simulate_fleet(fleet, workload, seed, SLO(ttft_s=slo_ttft, tpot_s=slo_tpot))
    per_class = {}
    log = run.result.log
    ttft = log.first_token_s - log.arrival_s
    tpot = np.where(log.output_tokens > 1, (log.finish_s - log.first_token_s) / np.maximum(log.output_tokens - 1, 1), 0)
    for c in wl.classes:
        mine = (workload.classes == c.name) | (workload.classes == api_class(c.name))
        met = mine & log.done & (ttft <= c.spec.slo.ttft_s) & (tpot <= c.spec.slo.tpot_s)
        per_class[c.name] = {
            "requests": int(mine.sum()),
            "slo_attainment": float(met.sum() / max(mine.sum(), 1)),
            "ttft_p99_s": float(np.nanquantile(ttft[mine & log.done], 0.99)) if (mine & log.done).any() else None,
        }
    s = run.summary
    return {
        "hour": hour,
        "minutes": minutes,
        "requests": int(len(workload)),
        "rate_rps": float(wl.rates_rps[hour]),
        "replicas": {t.name: t.replicas for t in tiers if isinstance(t, GpuTier)},
        "to_api": int(sum((workload.classes == api_class(c.name)).sum() for c in wl.classes)),
        "dropped": s.get("dropped", 0),
        "classes": per_class,
        "tiers": {k: {"requests": v["requests"], "usd": v["usd"]} for k, v in s.get("tiers", {}).items()},
    }


def api_class(name: str) -> str:
    """The fleet class of a class's requests the plan sends to its API."""
    return f"{name}@api"


def hour_workload(advice: Advice, hour: int, minutes: float, seed: int) -> Workload:
    """`minutes` of Poisson arrivals at the hour's total rate, classes by their share of that hour."""
    wl = advice.workload
    rates = np.array([c.rates_rps[hour] for c in wl.classes])
    total = float(rates.sum())
    rng = np.random.default_rng(seed)
    n = max(int(total * minutes * 60), 1)
    which = rng.choice(len(rates), size=n, p=rates / total)
    isl, osl = np.ones(n, dtype=np.int64), np.ones(n, dtype=np.int64)
    for k, c in enumerate(wl.classes):
        mine = which == k
        isl[mine] = parse_lengths(c.spec.isl, "isl").sample(int(mine.sum()), rng)
        osl[mine] = parse_lengths(c.spec.osl, "osl").sample(int(mine.sum()), rng)
    names = np.array([c.name for c in wl.classes], dtype=object)[which]
    return Workload(poisson_arrivals(total, n, rng), isl, osl, classes=names, name=f"peak hour {hour}")
