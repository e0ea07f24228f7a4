"""`tokenomy advise --from-ledger SOURCE`: parse the options, call advise/history_advice.py, render.

The work (reading the history, choosing and planning the deployment, pricing the API, sizing the baseline) is
`tokenomy.advise.history_advice`; this module supplies it `tokenomy plan` and the advisor, and prints the result.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tokenomy.advise.history_advice import (
    HistoryAdvice,
    HistoryOptions,
    Pick,
    ReplicaPlan,
    advise_from_history,
    pick_from_report,
    write_config,
)
from tokenomy.catalog.errors import CatalogError


def plan_replica(pick: Pick, isl: int, osl: int) -> ReplicaPlan:
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
    return ReplicaPlan.of(out, pick)


def advisor_pick(workload: Path | None, opts: HistoryOptions, run_opts: tuple[str, int, int, int]):  # noqa: ANN201
    """The advisor's first self-hosted tier for the workload file, at the daily volume it is called with."""
    from tokenomy.cli.advising import load_with_overrides, run

    def pick(requests_per_day: float) -> Pick:
        wl = load_with_overrides(workload, requests_per_day, opts.models, opts.gpus, opts.precisions, opts.apis)
        report = run(wl, *run_opts, None)
        return pick_from_report(report, str(workload or "the built-in example workload"), requests_per_day)

    return pick


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
        f"deployment ({escape(a.pick.chosen_by)}): {escape(p.model)} {p.precision}/kv-{p.kv_precision} "
        f"tp{p.gpus_per_replica} {escape(p.gpu)}, isl {p.isl} osl {p.osl}: {r.capacity_rps:,.2f} req/s "
        f"per replica at {p.utilisation:.0%} of its max {r.max_rps:,.2f} req/s (tokenomy plan); "
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
    workload: Path | None,
    run_opts: tuple[str, int, int, int],
    as_json: bool,
    emit_gateway_config: Path | None,
    html: Path | None = None,
    **history: Any,
) -> None:
    """`advise --from-ledger`: errors as one line naming the input, skipped rows as warnings, then the figures."""
    from tokenomy.cli import errors
    from tokenomy.replay.sources import SourceError

    if html is not None:
        errors.fail("--html is not available with --from-ledger (use --json, or `tokenomy replay --html`)")
    try:
        opts = HistoryOptions(**history)  # source, time_scale, requests_per_day, models, gpus, precisions, apis
        advice = advise_from_history(opts, plan_replica, advisor_pick(workload, opts, run_opts))
    except (CatalogError, SourceError, ValueError) as exc:
        errors.fail(errors.message_of(exc))
    for reason, n in advice.source.skipped.items():
        errors.err_console.print(f"[yellow]warning:[/] {n:,} requests skipped: {escape(reason)}")
    if emit_gateway_config is not None:
        write_config(advice, emit_gateway_config)
    if as_json:
        from tokenomy.cli.main import emit_json

        emit_json(advice.to_json())
        return
    console = Console(emoji=False, highlight=False, soft_wrap=True)
    render(advice, console)
    if emit_gateway_config is not None:
        console.print(f"written: {escape(str(emit_gateway_config))}")
