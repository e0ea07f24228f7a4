"""Advice from history (`tokenomy advise --from-ledger SOURCE`): size the reserved baseline from observed traffic.

Reads SOURCE with replay's readers, takes one replica's figures from `tokenomy plan`'s cost model (the deployment
named by --models/--gpus/--precisions, one each, or the advisor's pick for the workload file at the history's
volume), prices the burst API on the history's own tokens, then advise/history.py does the math. The caller
supplies how a replica is planned and how the advisor picks (`PlanReplica`, `AdvisorPick`), so this package does
not depend on the command line. The gateway config comes from advise/gateway.py's emitter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokenomy.advise.history import Baseline, HourlyDemand, ReplicaEconomics, baseline, hourly_demand
from tokenomy.catalog.errors import CatalogError, unknown_name_error
from tokenomy.catalog.prices import ApiPrice, api_prices, comparable_apis
from tokenomy.gateway.classifier import CLASSES
from tokenomy.replay.sources import Replayed, read_source
from tokenomy.sim.workload import Workload as Requests

SECONDS_PER_DAY = 86400.0


def split_names(text: str | None) -> list[str] | None:
    """'a, b,,c' → ['a', 'b', 'c']; None for no text."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


@dataclass(frozen=True)
class Pick:
    """The deployment one replica runs, as `tokenomy plan` options, and where the choice came from."""

    model: str
    gpu: str
    precision: str
    tp: int | None = None
    kv_precision: str = "auto"
    engine: str = "vllm"
    ttft_slo_s: float = 2.0
    spill_apis: tuple[str, ...] = ()
    chosen_by: str = "--models/--gpus/--precisions"


@dataclass(frozen=True)
class ReplicaPlan:
    """What advice from history takes from `tokenomy plan`'s result for one replica (per-replica figures)."""

    model: str
    gpu: str
    gpus_per_replica: int
    precision: str
    kv_precision: str
    engine: str
    isl: int
    osl: int
    utilisation: float
    params_total: float
    max_batch: int
    replica_tokens_per_day: float
    max_requests_per_s_per_replica: float

    @classmethod
    def of(cls, plan: Mapping[str, Any], pick: Pick) -> ReplicaPlan:
        """The figures of a plan result (`tokenomy plan --json`'s keys); CatalogError when it cannot serve."""
        if not plan.get("fits") or not plan.get("max_requests_per_s"):
            raise CatalogError(f"{pick.model} {pick.precision} on {pick.gpu} cannot serve: {plan.get('why_not', '?')}")
        return cls(
            model=plan["model"],
            gpu=plan["gpu"],
            gpus_per_replica=int(plan["gpus_per_replica"]),
            precision=plan["precision"],
            kv_precision=plan["kv_precision"],
            engine=plan["engine"],
            isl=int(plan["isl"]),
            osl=int(plan["osl"]),
            utilisation=float(plan["utilisation"]),
            params_total=float(plan["params"]["total"]),
            max_batch=int(plan["max_batch"]),
            replica_tokens_per_day=float(plan["replica_tokens_per_day"]),
            max_requests_per_s_per_replica=float(plan["max_requests_per_s_per_replica"]),
        )


PlanReplica = Callable[[Pick, int, int], ReplicaPlan]  # `tokenomy plan` for the pick at isl, osl tokens
AdvisorPick = Callable[[float], Pick]  # the advisor's pick for the workload file at this many requests/day


@dataclass(frozen=True)
class HistoryOptions:
    """The options of `advise --from-ledger`: the history, its scaling, and the candidates named."""

    source: str
    time_scale: float = 1.0
    requests_per_day: float | None = None
    models: str | None = None
    gpus: str | None = None
    precisions: str | None = None
    apis: str | None = None

    def __post_init__(self) -> None:
        if not (self.time_scale > 0 and math.isfinite(self.time_scale)):
            raise CatalogError(f"--time-scale must be a positive number, got {self.time_scale:g}")
        if self.requests_per_day is not None and not self.requests_per_day > 0:
            raise CatalogError(f"--requests-per-day must be positive, got {self.requests_per_day:g}")

    def named_pick(self) -> Pick | None:
        """The deployment named by --models, --gpus and --precisions (one each), else None."""
        model, gpu, precision = (_one(x) for x in (self.models, self.gpus, self.precisions))
        return Pick(model, gpu, precision) if model and gpu and precision else None


@dataclass(frozen=True)
class HistoryAdvice:
    """The reserved baseline sized from a history, with everything it rests on."""

    source: Replayed
    pick: Pick
    plan: ReplicaPlan
    replica: ReplicaEconomics
    api: ApiPrice
    demand: HourlyDemand
    demand_scale: float
    result: Baseline
    gateway: dict[str, Any]  # advise/output.py's report shape, as far as advise/gateway.py reads it

    def to_json(self) -> dict[str, Any]:
        """Everything as one JSON-ready object (dollars over the whole period unless the key says per day)."""
        return {**_header_json(self), **_baseline_json(self.result, self.demand)}


def _one(text: str | None) -> str | None:
    names = split_names(text) or []
    return names[0] if len(names) == 1 else None


def pick_from_report(report: Mapping[str, Any], where: str, requests_per_day: float) -> Pick:
    """The advisor report's first self-hosted tier as a Pick; CatalogError when it serves on APIs only."""
    for t in report["recommendation"]["tiers"]:
        if t["kind"] == "gpu":
            return Pick(
                t["model"],
                t["gpu"],
                t["precision"],
                int(t["gpus_per_replica"]),
                t["kv_precision"],
                t["engine"],
                float(t["slo"]["ttft_s"]),
                tuple(dict.fromkeys(t["spill_api"].values())),
                f"the advisor's pick for {where}",
            )
    raise CatalogError(
        f"the advisor serves {where} at {requests_per_day:,.0f} requests/day on APIs only: no reserved "
        "baseline to size; name a deployment with --models, --gpus and --precisions (one each)"
    )


def cheapest_api(names: list[str], requests: Requests) -> ApiPrice:
    """The cheapest of the named APIs on the history's own tokens."""
    offers = {p.name: p for p in api_prices()}
    chosen = []
    for name in names:
        if name not in offers:
            raise CatalogError(f"--apis: {unknown_name_error('API', name, list(offers))}")
        chosen.append(offers[name])
    tin, tout = float(requests.input_tokens.sum()), float(requests.output_tokens.sum())
    return min(chosen, key=lambda a: tin * a.usd_per_mtok_input + tout * a.usd_per_mtok_output)


def replica_economics(plan: ReplicaPlan) -> ReplicaEconomics:
    """One replica's capacity (plan's tokens per day at its utilisation / tokens per request) and its prices."""
    from tokenomy.catalog.accelerators import load_accelerator

    acc = load_accelerator(plan.gpu)
    on_demand, reserved = acc.usd_per_gpu_hour("on_demand"), acc.usd_per_gpu_hour("reserved")
    if not on_demand or not reserved:
        raise CatalogError(f"{plan.gpu} has no catalogue price per GPU-hour: cannot cost its replicas")
    return ReplicaEconomics(
        capacity_rps=plan.replica_tokens_per_day / (plan.isl + plan.osl) / SECONDS_PER_DAY,
        max_rps=plan.max_requests_per_s_per_replica,
        reserved_usd_per_hour=reserved * plan.gpus_per_replica,
        on_demand_usd_per_hour=on_demand * plan.gpus_per_replica,
    )


def advise_from_history(opts: HistoryOptions, plan_replica: PlanReplica, advisor_pick: AdvisorPick) -> HistoryAdvice:
    """Read the history, choose the deployment, price the burst API, and size the reserved baseline."""
    rep = read_source(opts.source)
    w = rep.workload
    arrival = w.arrival_s * opts.time_scale
    span_days = math.ceil((float(arrival[-1] - arrival[0]) // 3600 + 1) / 24)
    scale = opts.requests_per_day * span_days / len(w) if opts.requests_per_day is not None else 1.0
    pick = opts.named_pick() or advisor_pick(len(w) * scale / span_days)
    isl = max(int(round(float(w.input_tokens.mean()))), 1)
    osl = max(int(round(float(w.output_tokens.mean()))), 1)
    plan = plan_replica(pick, isl, osl)
    api_names = split_names(opts.apis) or list(pick.spill_apis)
    if not api_names:
        api_names = [a.name for a in comparable_apis(plan.model, plan.params_total)]
    api = cheapest_api(api_names, w)
    replica = replica_economics(plan)
    demand = hourly_demand(
        arrival,
        w.input_tokens,
        w.output_tokens,
        api.usd_per_mtok_input,
        api.usd_per_mtok_output,
        scale,
        rep.cached_input_tokens,
        api.usd_per_mtok_cached_input,
    )
    result = baseline(demand, replica)
    seen = sorted(set(np.asarray(w.classes, dtype=str).tolist()) & set(CLASSES)) if w.classes is not None else []
    report = _gateway_report(pick, plan, result, api, seen or list(CLASSES), f"history of {opts.source}")
    return HistoryAdvice(rep, pick, plan, replica, api, demand, scale, result, report)


def _gateway_report(
    pick: Pick, plan: ReplicaPlan, b: Baseline, api: ApiPrice, classes: list[str], name: str
) -> dict[str, Any]:
    """The plan in advise/output.py's report shape, as far as advise/gateway.py reads it."""
    days = len(b.gpu_usd_by_hour) / 24
    tier = {
        "name": "history-baseline",
        "kind": "gpu",
        "classes": classes,
        "model": pick.model,
        "gpu": pick.gpu,
        "gpus_per_replica": plan.gpus_per_replica,
        "precision": plan.precision,
        "kv_precision": plan.kv_precision,
        "engine": pick.engine,
        "max_batch": plan.max_batch,
        "speculative": None,
        "reserved": b.reserved,
        "peak_replicas": int((b.reserved + b.on_demand_by_hour).max()),
        "spill_api": {c: api.name for c in classes},
        "slo": {"ttft_s": pick.ttft_slo_s},
    }
    return {
        "workload": {"name": name},
        "recommendation": {"usd_per_day": {"simulated": b.hybrid_usd / days}, "tiers": [tier]},
    }


def _gateway_workload(classes: list[str], requests_per_day: float):  # noqa: ANN202
    """An advisor workload whose classes are the gateway's own (what advise/gateway.py maps tiers through)."""
    from tokenomy.advise.workload import parse_workload

    raw = {
        "name": "history",
        "volume": {"requests_per_day": requests_per_day},
        "classes": {c: {"share": 1.0} for c in classes},
    }
    return parse_workload(raw, "history")


def write_config(advice: HistoryAdvice, path: Path) -> None:
    """The gateway config for the plan (advise/gateway.py's emitter, checked by the gateway's validator)."""
    from tokenomy.advise.gateway import write_gateway_config

    classes = advice.gateway["recommendation"]["tiers"][0]["classes"]
    write_gateway_config(advice.gateway, _gateway_workload(classes, advice.demand.requests / advice.demand.days), path)


def _header_json(a: HistoryAdvice) -> dict[str, Any]:
    """Source, period, demand, deployment, per-replica figures and the API: what the baseline rests on."""
    d, r, p = a.demand, a.replica, a.plan
    return {
        "source": {
            "kind": a.source.kind,
            "path": a.source.source,
            "requests": len(a.source),
            "skipped": a.source.skipped,
        },
        "period": {"hours": d.hours, "observed_hours": d.observed_hours, "days": d.days},
        "demand_scale": a.demand_scale,
        "requests": d.requests,
        "requests_per_day": d.requests / d.days,
        "deployment": {
            "model": p.model,
            "gpu": p.gpu,
            "gpus_per_replica": p.gpus_per_replica,
            "precision": p.precision,
            "kv_precision": p.kv_precision,
            "engine": p.engine,
            "isl": p.isl,
            "osl": p.osl,
            "chosen_by": a.pick.chosen_by,
        },
        "per_replica": {
            "capacity_rps": r.capacity_rps,
            "max_rps": r.max_rps,
            "utilisation_planned": p.utilisation,
            "usd_per_hour": {"reserved": r.reserved_usd_per_hour, "on_demand": r.on_demand_usd_per_hour},
        },
        "api": {
            "name": a.api.name,
            "usd_per_mtok_input": a.api.usd_per_mtok_input,
            "usd_per_mtok_output": a.api.usd_per_mtok_output,
            "price_date": a.api.price_date,
        },
    }


def _baseline_json(b: Baseline, d: HourlyDemand) -> dict[str, Any]:
    """The baseline: reserved count, costs, savings, utilisation, break-even and the hour-by-hour figures."""
    return {
        "reserved": b.reserved,
        "peak_replicas": b.peak_replicas,
        "cost_by_reserved_usd": b.cost_curve_usd.tolist(),
        "usd": {
            "hybrid": b.hybrid_usd,
            "all_api": b.all_api_usd,
            "all_self_hosted_reserved_for_peak": b.all_reserved_usd,
            "self_hosted_no_api": b.self_hosted_usd,
        },
        "usd_per_day": {"hybrid": b.hybrid_usd / d.days, "all_api": b.all_api_usd / d.days},
        "saving": {
            "vs_all_api": b.saving(b.all_api_usd),
            "vs_all_self_hosted": b.saving(b.all_reserved_usd),
            "vs_self_hosted_no_api": b.saving(b.self_hosted_usd),
        },
        "reserved_utilisation": {
            "of_max_throughput": b.utilisation_of_max,
            "of_planned_capacity": b.utilisation_of_capacity,
        },
        "api_share": b.api_share,
        "break_even": {
            "requests_per_day": b.break_even_requests_per_day,
            "tokens_per_day": b.break_even_tokens_per_day,
        },
        "by_hour": {
            "requests_per_s": d.rates_rps.tolist(),
            "on_demand_replicas": b.on_demand_by_hour.tolist(),
            "api_rps": b.api_rps_by_hour.tolist(),
            "gpu_usd": b.gpu_usd_by_hour.tolist(),
            "api_usd": b.api_usd_by_hour.tolist(),
        },
    }
