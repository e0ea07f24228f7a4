"""`tokenomy advise --from-ledger SOURCE`: size the reserved baseline from observed traffic (glue and rendering).

Reads SOURCE with replay's readers, prices one replica with `tokenomy plan`'s cost model (the deployment named
by --models/--gpus/--precisions, one each, or the advisor's pick for the workload file at the history's volume),
then advise/history.py does the math. The gateway config comes from advise/gateway.py's emitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tokenomy.advise.history import Baseline, HourlyDemand, ReplicaEconomics, baseline, hourly_demand
from tokenomy.catalog.errors import CatalogError, unknown_name_error
from tokenomy.catalog.prices import ApiPrice, api_prices, comparable_apis
from tokenomy.cli.advising import split
from tokenomy.gateway.classifier import CLASSES
from tokenomy.replay.sources import Replayed, read_source
from tokenomy.sim.workload import Workload as Requests


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
class HistoryAdvice:
    source: Replayed
    pick: Pick
    plan: dict[str, Any]  # `tokenomy plan`'s result for the deployment (per-replica figures)
    replica: ReplicaEconomics
    api: ApiPrice
    demand: HourlyDemand
    demand_scale: float
    result: Baseline
    gateway: dict[str, Any]  # advise/gateway.py's report shape for the plan


def _one(text: str | None) -> str | None:
    names = split(text) or []
    return names[0] if len(names) == 1 else None


def _advisor_pick(workload: Path | None, requests_per_day: float, models, gpus, precisions, apis, run_opts) -> Pick:  # noqa: ANN001
    """The advisor's first self-hosted tier for the workload file at the history's daily volume."""
    from tokenomy.cli.advising import load_with_overrides, run

    wl = load_with_overrides(workload, requests_per_day, models, gpus, precisions, apis)
    report = run(wl, *run_opts, None)
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
                f"the advisor's pick for {workload or 'the built-in example workload'}",
            )
    where = workload or "the built-in example workload"
    raise CatalogError(
        f"the advisor serves {where} at {requests_per_day:,.0f} requests/day on APIs only: no reserved "
        "baseline to size; name a deployment with --models, --gpus and --precisions (one each)"
    )


def _plan(pick: Pick, isl: int, osl: int) -> dict[str, Any]:
    """`tokenomy plan` for the deployment at the history's mean lengths (per-replica figures)."""
    from tokenomy.cli.planning import PlanRequest, run_plans

    req = PlanRequest(
        model=pick.model,
        gpu=pick.gpu,
        gpus=pick.tp,
        tp=pick.tp,
        precisions=[pick.precision],
        kv_precision=pick.kv_precision,
        isl=isl,
        osl=osl,
        engine=pick.engine,
    )
    try:
        out = run_plans(req)[0]
    except CatalogError as exc:
        raise CatalogError(f"--models/--gpus/--precisions ({pick.chosen_by}): {exc}") from exc
    if not out.get("fits") or not out.get("max_requests_per_s"):
        raise CatalogError(f"{pick.model} {pick.precision} on {pick.gpu} cannot serve: {out.get('why_not', '?')}")
    return out


def _api(names: list[str], requests: Requests) -> ApiPrice:
    """The cheapest of the named APIs on the history's own tokens."""
    offers = {p.name: p for p in api_prices()}
    chosen = []
    for name in names:
        if name not in offers:
            raise CatalogError(f"--apis: {unknown_name_error('API', name, list(offers))}")
        chosen.append(offers[name])
    tin, tout = float(requests.input_tokens.sum()), float(requests.output_tokens.sum())
    return min(chosen, key=lambda a: tin * a.usd_per_mtok_input + tout * a.usd_per_mtok_output)


def _gateway_report(pick: Pick, plan: dict[str, Any], b: Baseline, api: ApiPrice, classes: list[str], name: str):  # noqa: ANN202
    """The plan in advise/output.py's report shape, as far as advise/gateway.py reads it."""
    days = len(b.gpu_usd_by_hour) / 24
    return {
        "workload": {"name": name},
        "recommendation": {
            "usd_per_day": {"simulated": b.hybrid_usd / days},
            "tiers": [
                {
                    "name": "history-baseline",
                    "kind": "gpu",
                    "classes": classes,
                    "model": pick.model,
                    "gpu": pick.gpu,
                    "gpus_per_replica": int(plan["gpus_per_replica"]),
                    "precision": plan["precision"],
                    "kv_precision": plan["kv_precision"],
                    "engine": pick.engine,
                    "max_batch": int(plan["max_batch"]),
                    "speculative": None,
                    "reserved": b.reserved,
                    "peak_replicas": int((b.reserved + b.on_demand_by_hour).max()),
                    "spill_api": {c: api.name for c in classes},
                    "slo": {"ttft_s": pick.ttft_slo_s},
                }
            ],
        },
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


def advise_from_history(
    source: str,
    time_scale: float = 1.0,
    requests_per_day: float | None = None,
    models: str | None = None,
    gpus: str | None = None,
    precisions: str | None = None,
    apis: str | None = None,
    workload: Path | None = None,
    run_opts: tuple[str, int, int, int] = ("local", 20, 3000, 0),
) -> HistoryAdvice:
    """Read SOURCE, choose the deployment, price the burst API, and size the reserved baseline."""
    if not (time_scale > 0 and math.isfinite(time_scale)):
        raise CatalogError(f"--time-scale must be a positive number, got {time_scale:g}")
    if requests_per_day is not None and not requests_per_day > 0:
        raise CatalogError(f"--requests-per-day must be positive, got {requests_per_day:g}")
    rep = read_source(source)
    w = rep.workload
    arrival = w.arrival_s * time_scale
    span_days = math.ceil((float(arrival[-1] - arrival[0]) // 3600 + 1) / 24)
    scale = requests_per_day * span_days / len(w) if requests_per_day is not None else 1.0
    model, gpu, precision = _one(models), _one(gpus), _one(precisions)
    if model and gpu and precision:
        pick = Pick(model, gpu, precision)
    else:
        pick = _advisor_pick(workload, len(w) * scale / span_days, models, gpus, precisions, apis, run_opts)
    isl = max(int(round(float(w.input_tokens.mean()))), 1)
    osl = max(int(round(float(w.output_tokens.mean()))), 1)
    plan = _plan(pick, isl, osl)
    api_names = split(apis) or list(pick.spill_apis)
    if not api_names:
        api_names = [a.name for a in comparable_apis(plan["model"], plan["params"]["total"])]
    api = _api(api_names, w)
    from tokenomy.catalog.accelerators import load_accelerator

    acc = load_accelerator(pick.gpu)
    per_replica = int(plan["gpus_per_replica"])
    on_demand, reserved = acc.usd_per_gpu_hour("on_demand"), acc.usd_per_gpu_hour("reserved")
    if not on_demand or not reserved:
        raise CatalogError(f"{pick.gpu} has no catalogue price per GPU-hour: cannot cost its replicas")
    replica = ReplicaEconomics(
        capacity_rps=float(plan["replica_tokens_per_day"]) / (isl + osl) / 86400.0,
        max_rps=float(plan["max_requests_per_s_per_replica"]),
        reserved_usd_per_hour=reserved * per_replica,
        on_demand_usd_per_hour=on_demand * per_replica,
    )
    demand = hourly_demand(
        arrival, w.input_tokens, w.output_tokens, api.usd_per_mtok_input, api.usd_per_mtok_output, scale
    )
    result = baseline(demand, replica)
    seen = sorted(set(np.asarray(w.classes, dtype=str).tolist()) & set(CLASSES)) if w.classes is not None else []
    classes = seen or list(CLASSES)
    report = _gateway_report(pick, plan, result, api, classes, f"history of {source}")
    return HistoryAdvice(rep, pick, plan, replica, api, demand, scale, result, report)


def write_config(advice: HistoryAdvice, path: Path) -> None:
    """The gateway config for the plan (advise/gateway.py's emitter, checked by the gateway's validator)."""
    from tokenomy.advise.gateway import write_gateway_config

    classes = advice.gateway["recommendation"]["tiers"][0]["classes"]
    write_gateway_config(advice.gateway, _gateway_workload(classes, advice.demand.requests / advice.demand.days), path)


def as_dict(a: HistoryAdvice) -> dict[str, Any]:
    """Everything as one JSON-ready object (dollars over the whole period unless the key says per day)."""
    b, d, r = a.result, a.demand, a.replica
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
            "model": a.plan["model"],
            "gpu": a.plan["gpu"],
            "gpus_per_replica": a.plan["gpus_per_replica"],
            "precision": a.plan["precision"],
            "kv_precision": a.plan["kv_precision"],
            "engine": a.plan["engine"],
            "isl": a.plan["isl"],
            "osl": a.plan["osl"],
            "chosen_by": a.pick.chosen_by,
        },
        "per_replica": {
            "capacity_rps": r.capacity_rps,
            "max_rps": r.max_rps,
            "utilisation_planned": a.plan["utilisation"],
            "usd_per_hour": {"reserved": r.reserved_usd_per_hour, "on_demand": r.on_demand_usd_per_hour},
        },
        "api": {
            "name": a.api.name,
            "usd_per_mtok_input": a.api.usd_per_mtok_input,
            "usd_per_mtok_output": a.api.usd_per_mtok_output,
            "price_date": a.api.price_date,
        },
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


def _usd(x: float) -> str:
    return f"${x:,.2f}" if math.isfinite(x) else "–"


def render(a: HistoryAdvice, console: Console) -> None:
    """The headline lines and the cost of every reserved count."""
    b, d, r, p = a.result, a.demand, a.replica, a.plan
    scaled = f" (each request counted {a.demand_scale:,.4g}×)" if a.demand_scale != 1 else ""
    lines = [
        f"history: {escape(a.source.kind)} {escape(a.source.source)}: {len(a.source):,} requests over "
        f"{d.observed_hours} h{scaled}; billed as {d.days:g} day(s) = {d.hours} h; "
        f"{d.requests / d.days:,.0f} requests/day",
        f"deployment ({escape(a.pick.chosen_by)}): {escape(p['model'])} {p['precision']}/kv-{p['kv_precision']} "
        f"tp{p['gpus_per_replica']} {escape(p['gpu'])}, isl {p['isl']} osl {p['osl']}: {r.capacity_rps:,.2f} req/s "
        f"per replica at {p['utilisation']:.0%} of its max {r.max_rps:,.2f} req/s (tokenomy plan); "
        f"{_usd(r.reserved_usd_per_hour)}/h reserved, {_usd(r.on_demand_usd_per_hour)}/h on demand per replica",
        f"burst API: {escape(a.api.name)} (${a.api.usd_per_mtok_input:g}/${a.api.usd_per_mtok_output:g} per Mtok "
        f"in/out, {a.api.price_date}) on each request's own tokens",
        f"reserved baseline: {b.reserved} replica(s) (peak hour needs {b.peak_replicas}); hybrid "
        f"{_usd(b.hybrid_usd)} over the period ({_usd(b.hybrid_usd / d.days)}/day), {b.api_share:.1%} of requests "
        f"to the API",
        f"vs all-API: {_usd(b.all_api_usd)} → saves {b.saving(b.all_api_usd):.1%}",
        f"vs all-self-hosted ({b.peak_replicas} reserved for the peak): {_usd(b.all_reserved_usd)} → saves "
        f"{b.saving(b.all_reserved_usd):.1%}; vs self-hosted with on-demand, no API ({b.self_hosted_reserved} "
        f"reserved): {_usd(b.self_hosted_usd)} → saves {b.saving(b.self_hosted_usd):.1%}",
        f"reserved fleet utilisation: {b.utilisation_of_max:.1%} of its maximum throughput "
        f"({b.utilisation_of_capacity:.1%} of its planned capacity)",
        "break-even (one reserved replica vs the API on this traffic): "
        + (
            f"{b.break_even_requests_per_day:,.0f} requests/day ({b.break_even_tokens_per_day / 1e6:,.1f}M tok/day)"
            if math.isfinite(b.break_even_requests_per_day)
            else "never (a full replica costs more per token than the API)"
        ),
    ]
    if a.source.actual_usd is not None and a.demand_scale == 1:
        lines.append(f"actual (ledger): {_usd(float(a.source.actual_usd.sum()))}")
    for line in lines:
        console.print(line)
    t = Table(title="cost over the period by reserved count (whole fleet)", title_justify="left")
    for col in ("reserved", "cost", "vs chosen"):
        t.add_column(col, justify="right")
    for n, usd in enumerate(b.cost_curve_usd):
        mark = " ←" if n == b.reserved else ""
        t.add_row(f"{n}{mark}", _usd(float(usd)), f"{usd / b.hybrid_usd - 1:+.1%}")
    console.print(t)


def advise_from_history_command(
    source: str,
    options: tuple,
    run_opts: tuple[str, int, int, int],
    as_json: bool,
    emit_gateway_config: Path | None,
    html: Path | None = None,
) -> None:
    """`advise --from-ledger`: errors as one line naming the input, skipped rows as warnings, then the figures."""
    from tokenomy.cli import errors
    from tokenomy.replay.sources import SourceError

    if html is not None:
        errors.fail("--html is not available with --from-ledger (use --json, or `tokenomy replay --html`)")
    time_scale, requests_per_day, models, gpus, precisions, apis, workload = options
    try:
        advice = advise_from_history(
            source, time_scale, requests_per_day, models, gpus, precisions, apis, workload, run_opts
        )
    except (CatalogError, SourceError, ValueError) as exc:
        errors.fail(errors.message_of(exc))
    for reason, n in advice.source.skipped.items():
        errors.err_console.print(f"[yellow]warning:[/] {n:,} requests skipped: {escape(reason)}")
    if emit_gateway_config is not None:
        write_config(advice, emit_gateway_config)
    if as_json:
        from tokenomy.cli.main import emit_json

        emit_json(as_dict(advice))
        return
    console = Console(emoji=False, highlight=False, soft_wrap=True)
    render(advice, console)
    if emit_gateway_config is not None:
        console.print(f"written: {escape(str(emit_gateway_config))}")
