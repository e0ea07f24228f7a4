"""Self-contained HTML report of `tokenomy advise`: Pareto plot, cost and replicas by hour, tier mix, tables.

Built on `tokenomy.report.html` (one inlined plotly.js, so the page opens offline). Every figure
plotted comes from the advisor's report dict (closed form or simulator, as labelled).
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from tokenomy.report.html import figure_div, page, table_html
from tokenomy.report.tables import saving
from tokenomy.results import dumps

PARETO_ID = "pareto"
HOURS_ID = "cost-by-hour"
MIX_ID = "tier-mix"


def _money(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"${x:,.{digits}f}"


def pareto_figure(report: dict[str, Any]) -> go.Figure:
    """Cheapest daily cost at each tail-TTFT target per group, with the API-only cost and the chosen point."""
    fig = go.Figure()
    for group, p in report["pareto"].items():
        pts = [x for x in p["points"] if x["usd_per_day"] is not None]
        fig.add_scatter(
            name=f"{group}: all self-hosted (closed form)",
            x=[x["ttft_target_s"] for x in pts],
            y=[x["usd_per_day"] for x in pts],
            text=[x["candidate"] for x in pts],
            mode="lines+markers",
            line={"shape": "hv"},
            hovertemplate="TTFT ≤ %{x:.2f} s: $%{y:,.2f}/day<br>%{text}",
        )
        if p["api_only_usd_per_day"] is not None:
            fig.add_scatter(
                name=f"{group}: all on its API (p99 TTFT {p['api_ttft_p99_s']:.2f} s, assumed)",
                x=[p["api_ttft_p99_s"]],
                y=[p["api_only_usd_per_day"]],
                mode="markers",
                marker={"symbol": "diamond", "size": 12},
            )
    for t in report["recommendation"]["tiers"]:
        if t["kind"] == "gpu":
            fig.add_scatter(
                name=f"plan: {t['name']} (with API spill, simulated)",
                x=[t["ttft_tail_s_at_capacity"] or t["slo"]["ttft_s"]],
                y=[t["usd_per_day"]],
                mode="markers",
                marker={"symbol": "star", "size": 16},
            )
    fig.update_layout(
        title="Daily cost vs tail TTFT target (Pareto front; whole deployment)",
        xaxis_title="tail TTFT target (s, per request)",
        yaxis_title="USD per day (whole deployment)",
        xaxis_type="log",
        yaxis_type="log",
    )
    return fig


def hours_figure(report: dict[str, Any]) -> go.Figure:
    """Spend per hour (bars) and replicas per self-hosted tier (lines, right axis)."""
    hours = report["recommendation"]["hours"]
    x = [h["hour"] for h in hours]
    fig = go.Figure()
    fig.add_bar(name="$ per hour (all tiers)", x=x, y=[h["usd"] or 0.0 for h in hours], marker={"color": "#9ab"})
    tiers = [t["name"] for t in report["recommendation"]["tiers"] if t["kind"] == "gpu"]
    for name in tiers:
        fig.add_scatter(
            name=f"{name}: replicas (each {_gpus_per_replica(report, name)})",
            x=x,
            y=[h["replicas"].get(name, 0) for h in hours],
            yaxis="y2",
            mode="lines+markers",
        )
    fig.add_scatter(
        name="API req/s", x=x, y=[h["api_rps"] for h in hours], yaxis="y2", mode="lines", line={"dash": "dot"}
    )
    fig.update_layout(
        title="Cost and replicas by hour of the day (whole deployment)",
        xaxis_title="hour of the day",
        yaxis={"title": "USD per hour (all tiers)"},
        yaxis2={"title": "replicas per tier / API req/s", "overlaying": "y", "side": "right", "rangemode": "tozero"},
        barmode="stack",
    )
    return fig


def _gpus_per_replica(report: dict[str, Any], tier: str) -> str:
    """'4× H100-SXM' for a self-hosted tier's replica, as far as the report says."""
    for t in report["recommendation"]["tiers"]:
        if t["name"] == tier:
            gpu, n = t.get("gpu"), t.get("gpus_per_replica") or t.get("tp")
            if gpu and n:
                return f"{n}× {gpu}"
            return str(gpu or "replica")
    return "replica"


def mix_figure(report: dict[str, Any]) -> go.Figure:
    """Requests per day by where they are served: each self-hosted tier and each API."""
    served: dict[str, float] = {}
    for t in report["recommendation"]["tiers"]:
        if t["kind"] == "gpu":
            api_requests = sum(t["api_rps_by_hour"]) * 3600
            total = sum(report["workload"]["classes"][c]["requests_per_day"] for c in t["classes"])
            served[t["name"]] = served.get(t["name"], 0.0) + total - api_requests
            for api in set(t["spill_api"].values()):
                served[api] = served.get(api, 0.0) + api_requests
        else:
            for cls, api in t["apis"].items():
                served[api] = served.get(api, 0.0) + report["workload"]["classes"][cls]["requests_per_day"]
    fig = go.Figure(go.Pie(labels=list(served), values=list(served.values()), hole=0.4))
    fig.update_layout(title="Tier mix: requests per day by tier")
    return fig


def tiers_html(report: dict[str, Any]) -> str:
    rows = []
    for t in report["recommendation"]["tiers"]:
        if t["kind"] == "gpu":
            spec = f" + draft {t['speculative']['draft']}" if t["speculative"] else ""
            what = (
                f"{t['model']} {t['precision']} (KV {t['kv_precision']}) tp{t['tp']} on {t['gpu']}, "
                f"batch {t['max_batch']}{spec}"
            )
            reps = f"{t['reserved']} reserved, up to {t['peak_replicas']}"
        else:
            what, reps = ", ".join(sorted(set(t["apis"].values()))), "API"
        rows.append([t["name"], ", ".join(t["classes"]), what, reps, _money(t["usd_per_day"])])
    return table_html(["tier", "classes", "deployment", "replicas", "$/day"], rows)


def headline_html(report: dict[str, Any]) -> str:
    rec, base, sav = report["recommendation"], report["baselines"], report["savings"]
    rows = [
        [
            "$/day (simulated / closed form)",
            f"{_money(rec['usd_per_day']['simulated'])} / {_money(rec['usd_per_day']['closed_form'])}",
        ],
        ["$/month (simulated)", _money(rec["usd_per_month"]["simulated"], 0)],
        [
            "$/Mtok (simulated / closed form)",
            f"{_money(rec['usd_per_mtok']['simulated'], 4)} / {_money(rec['usd_per_mtok']['closed_form'], 4)}",
        ],
    ]
    if base["all_api"] and sav["vs_all_api"]:
        rows.append(
            [
                f"all on {base['all_api']['api']}",
                f"{_money(base['all_api']['usd_per_day'])}/day, {saving(sav['vs_all_api']['fraction'])}",
            ]
        )
    if base["fp16_static"] and sav["vs_fp16_static"]:
        rows.append(
            [
                "fp16, static batching",
                f"{_money(base['fp16_static']['usd_per_day'])}/day, {saving(sav['vs_fp16_static']['fraction'])}",
            ]
        )
    for key, be in report["break_even"].items():
        if be and be["requests_per_day"]:
            rows.append(
                [f"break-even {key.replace('_', ' ')}", f"{be['requests_per_day']:,.0f} requests/day ({be['api']})"]
            )
    return table_html(["figure", "value"], rows)


def classes_html(report: dict[str, Any]) -> str:
    rows = [
        [
            name,
            c["served_by"],
            _money(c["usd_per_request"], 6),
            _money(c["usd_per_mtok"], 4),
            "—" if c["slo_attainment"] is None else f"{c['slo_attainment']:.1%}",
            ", ".join(f"{b} ≥ {f:g}" for b, f in c["quality_floors"].items()) or "—",
        ]
        for name, c in report["recommendation"]["classes"].items()
    ]
    return table_html(["class", "served by", "$/request", "$/Mtok", "SLO attainment (sim)", "floors"], rows)


def estimates_html(report: dict[str, Any]) -> str:
    rows = []
    for e in report["estimates"]:
        cf, sim = e["closed_form"], e["simulated"]
        rows.append(
            [
                e["candidate"],
                f"{cf['capacity_rps']:.2f} / {sim['capacity_rps']:.2f}",
                f"{(cf['tpot_mean_s'] or 0) * 1e3:.1f} / {(sim['tpot_mean_s'] or 0) * 1e3:.1f}",
                f"{sim['slo_attainment']:.1%}" if sim["slo_attainment"] is not None else "—",
                f"{_money(cf['usd_per_day'], 0)} / {_money(sim['usd_per_day'], 0)}",
                "yes" if e["agrees"] else "no",
            ]
        )
    return table_html(
        ["candidate", "req/s cf / sim", "TPOT ms cf / sim", "attainment @cf", "$/day cf / sim", "agree"], rows
    )


def explain_html(report: dict[str, Any]) -> str:
    parts = []
    for t in report["recommendation"]["tiers"]:
        items = "".join(f"<li>{html.escape(r['text'])}</li>" for r in t["explain"])
        parts.append(f"<p><b>{html.escape(t['name'])}</b></p><ol>{items}</ol>")
    return "".join(parts)


def advise_report(report: dict[str, Any], title: str = "tokenomy advise") -> str:
    """The whole page."""
    tol = report["tolerance"]
    infeasible = "".join(
        f"<p class='note'>infeasible: {html.escape(p['class'])} {html.escape(p['what'])}: asked {p['asked']:g}; "
        f"{html.escape(p['needed'])}</p>"
        for p in report["infeasible"]
    )
    sections = [
        f"<p class='note'>Workload '{html.escape(report['workload']['name'])}': "
        f"{report['workload']['requests_per_day']:,.0f} requests/day. Searched "
        f"{report['search']['candidates_evaluated']:,} candidates in closed form, verified "
        f"{report['search']['verified']} with the simulator.</p>",
        infeasible,
        "<h2>Recommended plan</h2>",
        tiers_html(report),
        headline_html(report),
        "<h2>Why</h2>",
        explain_html(report),
        "<h2>Classes</h2>",
        classes_html(report),
        figure_div(pareto_figure(report), PARETO_ID),
        figure_div(hours_figure(report), HOURS_ID),
        figure_div(mix_figure(report), MIX_ID),
        f"<h2>Closed form vs simulator</h2><p class='note'>Agreement: simulated capacity within "
        f"{tol['capacity']:.0%} and mean TPOT within {tol['tpot_mean']:.0%} of the closed form.</p>",
        estimates_html(report),
        "<p class='note'>" + "<br>".join(html.escape(n) for n in report["notes"]) + "</p>",
        "<details><summary>JSON</summary><pre>" + html.escape(dumps(report, indent=1)) + "</pre></details>",
    ]
    return page(title, sections)
