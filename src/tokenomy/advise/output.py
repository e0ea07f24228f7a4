"""The advisor's report: one typed AdviceReport (tokenomy.results) with the plan, both estimates, baselines,
savings and break-even.

`run_advisor` runs everything (search, verification, the fp16-static baseline, the peak-hour
fleet check) and `build_report` turns the results into the report. Money in USD, times in
seconds, fractions in 0-1; every figure is a closed-form or simulated result (see each module).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tokenomy.advise.advisor import CAPACITY_TOLERANCE, TPOT_TOLERANCE, Advice, TierPlan, advise
from tokenomy.advise.baselines import (
    StaticTier,
    all_on_most_capable_api,
    break_even,
    cheapest_floor_meeting_api,
    class_means,
    most_capable_api,
    static_baseline,
)
from tokenomy.advise.escalation import add_chains
from tokenomy.advise.explain import explain
from tokenomy.advise.hourly import HOURS, SECONDS_PER_HOUR
from tokenomy.advise.peak import peak_hour_fleet
from tokenomy.advise.search import PARETO_FACTORS
from tokenomy.advise.workload import Workload
from tokenomy.costmodel.economics import DAYS_PER_MONTH
from tokenomy.costmodel.escalation import usd_per_valid_answer
from tokenomy.results import AdviceReport
from tokenomy.sim.sweep import executor_session

# Seam for escalation chains (issue 7): today every class is answered by one tier whose answers all count as
# valid; a chain with measured pass rates replaces this single-tier chain in `usd_per_valid_answer`.
PASS_RATE = 1.0


def finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def tokens_per_day(workload: Workload) -> float:
    return sum(c.requests_per_day * sum(class_means(c)) for c in workload.classes)


def per_mtok(usd_per_day: float, tokens: float) -> float | None:
    return finite(usd_per_day / tokens * 1e6) if tokens else None


def tier_name(plan: TierPlan) -> str:
    return plan.group.name if plan.row is not None else f"api:{plan.group.name}"


def gpu_tier_dict(advice: Advice, plan: TierPlan) -> dict[str, Any]:
    """A self-hosted tier: what runs, how many replicas each hour, what it costs, and why."""
    table, r, day = advice.table, plan.row, plan.day
    key = table.keys[table.dep[r]]
    q = advice.workload.quality
    draft = table.drafts[table.dep[r]] if table.spec[r] else None
    sp = advice.workload.candidates.speculative
    v = plan.verified
    return {
        "name": tier_name(plan),
        "kind": "gpu",
        "classes": [c.name for c in plan.group.classes],
        "model": key.model,
        "gpu": key.gpu,
        "gpus_per_replica": key.tp,
        "tp": key.tp,
        "precision": key.precision,
        "kv_precision": key.kv_precision,
        "speculative": {"draft": draft.model.id, "draft_tokens": sp.draft_tokens, "acceptance": sp.acceptance}
        if draft
        else None,
        "max_batch": int(table.max_batch[r]),
        "engine": advice.workload.candidates.engine,
        "capacity_rps": {"closed_form": float(table.capacity_rps[r]), "simulated": plan.capacity_rps},
        "usd_per_replica_hour": {"on_demand": float(table.usd_on_demand[r]), "reserved": float(table.usd_reserved[r])},
        "reserved": day.reserved,
        "peak_replicas": int(day.replicas.max()),
        "replicas_by_hour": day.replicas.astype(int).tolist(),
        "on_demand_by_hour": day.on_demand.astype(int).tolist(),
        "api_rps_by_hour": day.api_rps.tolist(),
        "spill_api": {c: a.name for c, a in plan.group.api.per_class.items()} if plan.group.api else {},
        "usd_per_day": plan.usd_per_day,
        "quality": {b: q.model_score(key.model, key.precision, b) for b in plan.group.floors},
        "slo": plan.group.slo.model_dump(),
        "slo_attainment_at_capacity": v.probes[-1]["slo_attainment"] if v and v.probes else None,
        "ttft_tail_s_at_capacity": v.probes[-1]["ttft_tail_s"] if v and v.probes else None,
        "explain": [x.as_dict() for x in explain(advice, plan)],
    }


def api_tier_dict(advice: Advice, plan: TierPlan) -> dict[str, Any]:
    api = plan.group.api
    return {
        "name": tier_name(plan),
        "kind": "batch" if api and api.batch else "api",  # batch: the providers' Batch APIs, 24 h turnaround
        "classes": [c.name for c in plan.group.classes],
        "apis": {c: a.name for c, a in api.per_class.items()} if api else {},
        "usd_per_request": api.usd_per_request if api else None,
        "usd_per_day": finite(plan.usd_per_day),
        "quality": {
            c: {b: advice.workload.quality.api_score(a.name, b) for b in plan.group.floors}
            for c, a in (api.per_class.items() if api else [])
        },
        "explain": [x.as_dict() for x in explain(advice, plan)],
    }


def hours_table(advice: Advice) -> list[dict[str, Any]]:
    """Per hour of the day: traffic, replicas per tier, API traffic and spend."""
    rows = []
    for h in range(HOURS):
        gpu, api_rps, usd = {}, 0.0, 0.0
        for plan in advice.tiers:
            if plan.day is not None:
                gpu[plan.group.name] = int(plan.day.replicas[h])
                api_rps += float(plan.day.api_rps[h])
                usd += float(plan.day.gpu_usd[h] + plan.day.api_usd[h])
            else:
                rate = float(plan.group.rates_rps[h])
                api_rps += rate
                usd += rate * SECONDS_PER_HOUR * (plan.group.api.usd_per_request if plan.group.api else math.nan)
        rows.append(
            {
                "hour": h,
                "rate_rps": float(advice.workload.rates_rps[h]),
                "replicas": gpu,
                "api_rps": api_rps,
                "usd": finite(usd),
            }
        )
    return rows


def class_costs(advice: Advice) -> dict[str, dict[str, Any]]:
    """Per class: $ per request and per Mtok (a shared tier's spend split by token share), and per valid answer."""
    out = {}
    for plan in advice.tiers:
        tokens = {c.name: c.requests_per_day * sum(class_means(c)) for c in plan.group.classes}
        total_tokens = sum(tokens.values())
        attainment = None
        if plan.verified and plan.verified.probes:
            passing = [p for p in plan.verified.probes if p["slo_attainment"] >= plan.group.slo.attainment]
            attainment = (passing or plan.verified.probes)[-1]["slo_attainment"]
        for c in plan.group.classes:
            usd = plan.usd_per_day * tokens[c.name] / total_tokens if total_tokens else math.nan
            per_request = usd / c.requests_per_day if c.requests_per_day else math.nan
            served_by = tier_name(plan)
            if plan.row is None and plan.group.api:
                served_by = plan.group.api.per_class[c.name].name
            out[c.name] = {
                "requests_per_day": c.requests_per_day,
                "usd_per_day": finite(usd),
                "usd_per_request": finite(per_request),
                "usd_per_mtok": per_mtok(usd, tokens[c.name]),
                "slo_attainment": attainment if plan.row is not None else None,
                "usd_per_request_meeting_slo": finite(per_request / attainment) if attainment else finite(per_request),
                "pass_rate": PASS_RATE,
                "usd_per_valid_answer": finite(float(usd_per_valid_answer([per_request], [PASS_RATE]))),
                "quality_floors": c.spec.quality,
                "served_by": served_by,
            }
    add_chains(advice.workload, out)  # top tier only vs cheap tier first, per class (advise/escalation.py)
    return out


def estimates(advice: Advice) -> list[dict[str, Any]]:
    """Stage 2 side by side: closed form and simulator for every verified candidate."""
    table, out = advice.table, []
    for v in advice.verified:
        r, sim = v.row, v.at_capacity
        tpot_cf = float(table.tpot_s[r])
        out.append(
            {
                "candidate": table.label(r),
                "group": table.groups[v.group].name,
                "closed_form": {
                    "capacity_rps": v.capacity_cf_rps,
                    "ttft_tail_s": finite(table.ttft_tail_s[r]),
                    "tpot_mean_s": finite(tpot_cf),
                    "tpot_tail_s": finite(table.tpot_tail_s[r]),
                    "usd_per_day": finite(v.usd_per_day_cf),
                },
                "simulated": {
                    "capacity_rps": v.capacity_sim_rps,
                    "ttft_tail_s": finite(sim.get("ttft_tail_s", math.nan)),
                    "tpot_mean_s": finite(sim.get("tpot_mean_s", math.nan)),
                    "tpot_p99_s": finite(sim.get("tpot_p99_s", math.nan)),
                    "slo_attainment": sim.get("slo_attainment"),
                    "usd_per_day": finite(v.usd_per_day_sim),
                    "probes": [
                        {"fraction": p["fraction"], "rate_rps": p["rate_rps"], "slo_attainment": p["slo_attainment"]}
                        for p in v.probes
                    ],
                },
                "capacity_diff": finite(v.capacity_sim_rps / v.capacity_cf_rps - 1) if v.capacity_cf_rps else None,
                "tpot_diff": finite(sim.get("tpot_mean_s", math.nan) / tpot_cf - 1),
                "agrees": v.agrees(tpot_cf),
            }
        )
    return out


def pareto(advice: Advice) -> dict[str, list[dict[str, Any]]]:
    """Per chosen group: the cheapest daily cost of self-hosting all of it at each tail-TTFT target (closed form)."""
    table, out = advice.table, {}
    for g_index in advice.partition:
        g = table.groups[g_index]
        rows = np.flatnonzero(table.group == g_index)
        points = []
        for t, target in enumerate(table.pareto_targets_s[g_index]):
            costs = table.pareto_usd[rows, t]
            if not len(rows) or not np.isfinite(costs).any():
                points.append({"ttft_target_s": float(target), "usd_per_day": None, "candidate": None})
                continue
            best = int(rows[np.argmin(costs)])
            points.append(
                {
                    "ttft_target_s": float(target),
                    "slo_multiple": PARETO_FACTORS[t],
                    "usd_per_day": float(costs.min()),
                    "candidate": table.label(best),
                }
            )
        api = g.api_usd_per_day()
        out[g.name] = {
            "points": points,
            "api_only_usd_per_day": finite(api),
            "api_ttft_p99_s": advice.workload.candidates.api_ttft_p99_s,
        }
    return out


def break_even_dict(b) -> dict[str, Any] | None:  # noqa: ANN001
    if b is None:
        return None
    return {
        "api": b.api,
        "volume_scale": b.scale,
        "requests_per_day": b.requests_per_day,
        "tokens_per_day": b.tokens_per_day,
        "self_hosted_usd_per_day": b.self_hosted_usd_per_day,
        "api_usd_per_day": b.api_usd_per_day,
        "at_step": b.at_step,
    }


def static_dict(static: list[StaticTier], tokens: float) -> dict[str, Any] | None:
    if not static:
        return None
    usd = sum(t.usd_per_day for t in static)
    return {
        "usd_per_day": usd,
        "usd_per_month": usd * DAYS_PER_MONTH,
        "usd_per_mtok": per_mtok(usd, tokens),
        "tiers": [
            {
                "classes": [c.name for c in t.group.classes],
                "deployment": f"{t.best.key.model} fp16 tp{t.best.key.tp} {t.best.key.gpu} static batch {t.best.batch}",
                "capacity_rps": t.capacity_sim_rps,
                "ttft_tail_s_closed_form": t.best.ttft_tail_s,
                "slo_attainment_simulated": t.probes[0]["slo_attainment"] if t.probes else None,
                "ttft_tail_s_simulated": t.probes[0]["ttft_tail_s"] if t.probes else None,
                "meets_slo": t.meets_slo_sim,
                "reserved": t.day.reserved,
                "peak_replicas": int(t.day.replicas.max()),
                "usd_per_day": t.usd_per_day,
                "candidates_evaluated": t.evaluated,
            }
            for t in static
        ],
    }


def build_report(
    advice: Advice, static: list[StaticTier], peak: dict | None, seconds: dict[str, float]
) -> AdviceReport:
    """The advisor's results as the typed report `tokenomy advise --json` prints (results.AdviceReport)."""
    wl, table = advice.workload, advice.table
    tokens = tokens_per_day(wl)
    usd_sim = sum(t.usd_per_day for t in advice.tiers)
    usd_cf = sum(float(table.usd_per_day[t.row]) if t.row is not None else t.usd_per_day for t in advice.tiers)
    all_api = all_on_most_capable_api(wl)
    static_usd = sum(t.usd_per_day for t in static) if static else None
    top = most_capable_api(wl)
    report: dict[str, Any] = {
        "workload": {
            "name": wl.name,
            "source": wl.source,
            "requests_per_day": sum(c.requests_per_day for c in wl.classes),
            "tokens_per_day": tokens,
            "classes": {
                c.name: {
                    "requests_per_day": c.requests_per_day,
                    "isl_mean": class_means(c)[0],
                    "osl_mean": class_means(c)[1],
                    "quality_floors": c.spec.quality,
                    "slo": c.spec.slo.model_dump(),
                    "allow_api": c.spec.allow_api,
                }
                for c in wl.classes
            },
        },
        "search": {
            "candidates_evaluated": len(table),
            "candidates_fitting": int((table.slots > 0).sum()),
            "candidates_feasible": int(table.feasible().sum()),
            "quality_pruned": table.quality_pruned,
            "groups": [g.name for g in table.groups],
            "verified": len(advice.verified),
            "simulations": sum(len(v.probes) for v in advice.verified),
            "sim_requests_per_run": advice.sim_requests,
            "executor": advice.executor,
            "seconds": seconds,
        },
        "recommendation": {
            "tiers": [
                gpu_tier_dict(advice, t) if t.row is not None else api_tier_dict(advice, t) for t in advice.tiers
            ],
            "routes": routes(advice),
            "usd_per_day": {"closed_form": finite(usd_cf), "simulated": finite(usd_sim)},
            "usd_per_month": {
                "closed_form": finite(usd_cf * DAYS_PER_MONTH),
                "simulated": finite(usd_sim * DAYS_PER_MONTH),
            },
            "usd_per_mtok": {"closed_form": per_mtok(usd_cf, tokens), "simulated": per_mtok(usd_sim, tokens)},
            "hours": hours_table(advice),
            "classes": class_costs(advice),
        },
        "estimates": estimates(advice),
        "tolerance": {"capacity": CAPACITY_TOLERANCE, "tpot_mean": TPOT_TOLERANCE},
        "pareto": pareto(advice),
        "baselines": {
            "all_api": {
                "api": all_api.api.name,
                "usd_per_day": all_api.usd_per_day,
                "usd_per_month": all_api.usd_per_day * DAYS_PER_MONTH,
                "usd_per_mtok": per_mtok(all_api.usd_per_day, tokens),
            }
            if all_api
            else None,
            "fp16_static": static_dict(static, tokens),
        },
        "savings": {
            "vs_all_api": _saving(usd_sim, all_api.usd_per_day if all_api else None),
            "vs_fp16_static": _saving(usd_sim, static_usd),
        },
        "break_even": {
            "vs_most_capable_api": break_even_dict(break_even(advice, lambda c: top, top.name)) if top else None,
            "vs_cheapest_floor_meeting_api": break_even_dict(
                break_even(
                    advice, lambda c: cheapest_floor_meeting_api(wl, c), "cheapest API meeting each class's floors"
                )
            ),
        },
        "peak_hour": peak,
        "infeasible": [
            {
                "class": p.cls,
                "what": p.what,
                "asked": p.asked,
                "best_reachable": finite(p.best_reachable),
                "by": p.by,
                "needed": p.needed,
                "planned_with": finite(p.planned_with),
            }
            for p in advice.infeasible
        ],
        "notes": table.notes
        + [
            "API latency is the workload's assumption (candidates.api_ttft_p99_s, api_tpot_s), not a measurement.",
            "Speculative decoding uses the workload's assumed acceptance rate.",
            "KV-cache precision is assumed not to change quality scores (no published per-benchmark figure).",
        ],
    }
    return AdviceReport.model_validate(report)


def _saving(plan_usd: float, other_usd: float | None) -> dict[str, Any] | None:
    if other_usd is None or not math.isfinite(other_usd) or other_usd <= 0 or not math.isfinite(plan_usd):
        return None
    return {
        "usd_per_day": other_usd - plan_usd,
        "usd_per_month": (other_usd - plan_usd) * DAYS_PER_MONTH,
        "fraction": 1 - plan_usd / other_usd,
    }


def routes(advice: Advice) -> dict[str, list[str]]:
    """Per class: the tiers in order (self-hosted first, then the API it spills to)."""
    out = {}
    for plan in advice.tiers:
        for c in plan.group.classes:
            chain = [tier_name(plan)] if plan.row is not None else []
            api = plan.group.api.per_class.get(c.name) if plan.group.api else None
            out[c.name] = chain + ([api.name] if api else [])
    return out


def run_advisor(
    workload: Workload,
    executor: str = "local",
    verify: int = 20,
    sim_requests: int = 3000,
    seed: int = 0,
    on_job: Callable[[int, int], None] | None = None,
    baseline: bool = True,
) -> AdviceReport:
    """Everything `tokenomy advise` reports, as one typed report (results.AdviceReport)."""
    t0 = time.perf_counter()
    with executor_session(executor):
        advice = advise(workload, executor, verify, sim_requests, seed, on_job)
        t1 = time.perf_counter()
        static = static_baseline(advice.workload, sim_requests, seed, executor, on_job) if baseline else []
        t2 = time.perf_counter()
    peak = peak_hour_fleet(advice, seed=seed)
    t3 = time.perf_counter()
    seconds = {**advice.seconds, "baseline_s": t2 - t1, "peak_hour_s": t3 - t2}
    report = build_report(advice, static, peak, seconds)
    report["search"]["seconds"]["total_s"] = time.perf_counter() - t0
    return report
