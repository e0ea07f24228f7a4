"""Rich tables for `tokenomy advise`: the plan, both estimates, the Pareto table, baselines and savings."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from tokenomy.report.tables import money, saving, tokens_per_day


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x * 1e3:.1f} ms"


def plan_table(report: dict[str, Any]) -> Table:
    """One row per tier: what runs, replicas, capacity, cost."""
    table = Table(title=f"tokenomy advise — {report['workload']['name']}", header_style="bold")
    for col in ("tier", "classes", "deployment", "replicas (reserved / peak)", "req/s per replica", "$/day"):
        table.add_column(col, justify="right" if col.startswith(("req", "$", "replicas")) else "left")
    for t in report["recommendation"]["tiers"]:
        if t["kind"] == "gpu":
            spec = " +spec" if t["speculative"] else ""
            deployment = (
                f"{t['model']} {t['precision']}/kv-{t['kv_precision']} tp{t['tp']} {t['gpu']} "
                f"batch{t['max_batch']}{spec}"
            )
            cap = t["capacity_rps"]
            table.add_row(
                t["name"],
                ", ".join(t["classes"]),
                deployment,
                f"{t['reserved']} / {t['peak_replicas']}",
                f"{cap['simulated']:.2f} (cf {cap['closed_form']:.2f})",
                money(t["usd_per_day"], 2),
            )
        else:
            table.add_row(
                t["name"],
                ", ".join(t["classes"]),
                ", ".join(sorted(set(t["apis"].values()))),
                "API",
                "—",
                money(t["usd_per_day"], 2),
            )
    return table


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The headline figures, one per line."""
    rec, base, sav = report["recommendation"], report["baselines"], report["savings"]
    lines = [
        f"cost: {money(rec['usd_per_day']['simulated'], 2)}/day, {money(rec['usd_per_month']['simulated'], 0)}/month, "
        f"{money(rec['usd_per_mtok']['simulated'], 4)}/Mtok "
        f"(closed form: {money(rec['usd_per_day']['closed_form'], 2)}/day, "
        f"{money(rec['usd_per_mtok']['closed_form'], 4)}/Mtok)",
    ]
    for name, route in rec["routes"].items():
        c = rec["classes"][name]
        att = "" if c["slo_attainment"] is None else f", SLO attainment {c['slo_attainment']:.1%} (simulated)"
        lines.append(
            f"  {escape(str(name))}: {escape(' → '.join(route))}; {money(c['usd_per_request'], 6)}/request meeting "
            "its floors"
            f", {money(c['usd_per_mtok'], 4)}/Mtok{att}"
        )
    if base["all_api"] and sav["vs_all_api"]:
        a = base["all_api"]
        lines.append(
            f"vs all on {a['api']}: {money(a['usd_per_day'], 2)}/day → {saving(sav['vs_all_api']['fraction'])} "
            f"({money(sav['vs_all_api']['usd_per_month'], 0)}/month)"
        )
    if base["fp16_static"] and sav["vs_fp16_static"]:
        b = base["fp16_static"]
        att = ", ".join(
            f"{'+'.join(t['classes'])} SLO attainment {t['slo_attainment_simulated']:.1%}" for t in b["tiers"]
        )
        lines.append(
            f"vs fp16 static batching: {money(b['usd_per_day'], 2)}/day ({att}) → "
            f"{saving(sav['vs_fp16_static']['fraction'])}"
        )
    for key, be in report["break_even"].items():
        if be is None:
            continue
        if be["requests_per_day"] is None:
            lines.append(f"break-even {key.replace('_', ' ')}: self-hosting never pays within 10⁴× today's volume")
            continue
        lines.append(
            f"break-even {key.replace('_', ' ')} ({be['api']}): self-hosting pays from "
            f"{be['requests_per_day']:,.0f} requests/day ({tokens_per_day(be['tokens_per_day'])}; "
            f"{be['volume_scale']:.3g}× today's self-hosted classes)"
        )
    peak = report.get("peak_hour")
    if peak:
        per = ", ".join(f"{k} {v['slo_attainment']:.1%}" for k, v in peak["classes"].items())
        lines.append(
            f"busiest hour ({peak['hour']}:00, {peak['rate_rps']:.1f} req/s) simulated as a fleet for "
            f"{peak['minutes']:.0f} min: SLO attainment {per}"
        )
    s = report["search"]
    lines.append(
        f"searched {s['candidates_evaluated']:,} candidates in closed form "
        f"({s['candidates_feasible']:,} meet the SLOs), "
        f"verified {s['verified']} with {s['simulations']} simulations; {s['seconds']['total_s']:.1f} s"
    )
    for p in report["infeasible"]:
        lines.append(
            f"[yellow]infeasible:[/] {escape(str(p['class']))} {escape(str(p['what']))}: asked {p['asked']:g}, "
            f"{escape(str(p['needed']))}"
        )
    return lines


def explain_lines(report: dict[str, Any]) -> list[str]:
    out = []
    for t in report["recommendation"]["tiers"]:
        out.append(f"why {t['name']}:")
        out += [f"  {i + 1}. {r['text']}" for i, r in enumerate(t["explain"])]
    return out


def estimates_table(report: dict[str, Any]) -> Table:
    """Stage 2: closed form vs simulator for the verified candidates."""
    tol = report["tolerance"]
    table = Table(
        title=f"closed form vs simulator (agree: capacity within {tol['capacity']:.0%}, mean TPOT within "
        f"{tol['tpot_mean']:.0%})",
        header_style="bold",
    )
    for col in (
        "candidate",
        "req/s cf / sim",
        "TTFT tail cf / sim",
        "TPOT mean cf / sim",
        "attainment @cf",
        "$/day cf / sim",
        "agree",
    ):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for e in report["estimates"]:
        cf, sim = e["closed_form"], e["simulated"]
        table.add_row(
            e["candidate"],
            f"{cf['capacity_rps']:.2f} / {sim['capacity_rps']:.2f}",
            f"{_s(cf['ttft_tail_s'])} / {_s(sim['ttft_tail_s'])}",
            f"{_ms(cf['tpot_mean_s'])} / {_ms(sim['tpot_mean_s'])}",
            _pct(sim["slo_attainment"]) if sim["slo_attainment"] is not None else "—",
            f"{money(cf['usd_per_day'], 0)} / {money(sim['usd_per_day'], 0)}",
            "yes" if e["agrees"] else "[yellow]no[/]",
        )
    return table


def pareto_table(report: dict[str, Any]) -> Table:
    table = Table(
        title="cost vs tail TTFT: cheapest way to self-host it all at each target (closed form)", header_style="bold"
    )
    for col in ("group", "TTFT target", "$/day", "candidate"):
        table.add_column(col, justify="right" if col in ("TTFT target", "$/day") else "left")
    for group, p in report["pareto"].items():
        for point in p["points"]:
            table.add_row(group, _s(point["ttft_target_s"]), money(point["usd_per_day"], 2), point["candidate"] or "—")
    return table


def hours_table(report: dict[str, Any]) -> Table:
    table = Table(title="replicas per hour", header_style="bold")
    tiers = [t["name"] for t in report["recommendation"]["tiers"] if t["kind"] == "gpu"]
    for col in ("hour", "req/s", *tiers, "API req/s", "$"):
        table.add_column(col, justify="right")
    for h in report["recommendation"]["hours"]:
        table.add_row(
            f"{h['hour']:02d}",
            f"{h['rate_rps']:.2f}",
            *[str(h["replicas"].get(t, 0)) for t in tiers],
            f"{h['api_rps']:.2f}",
            money(h["usd"], 2),
        )
    return table
