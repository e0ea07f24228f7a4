"""The replay as a self-contained HTML page: figures side by side, cost by hour, latency CDFs, tier mix."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from tokenomy.replay.compare import Figures, quality_cells
from tokenomy.report.html import figure_div, page, table_html


def _money(x: float | None) -> str:
    return "–" if x is None else f"${x:,.2f}"


def _ms(stats: dict[str, float], key: str) -> str:
    return "–" if key not in stats else f"{stats[key] * 1e3:,.0f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def replay_report(rows: list[Figures], title: str, skipped: dict[str, int]) -> str:
    """The page: a table of every alternative beside the actual, then four charts."""
    headers = ["", "completed", "cost (billed)", "fleet bill", "$/Mtok", "SLO met", "TTFT p50/p90/p99 ms"]
    headers += ["TPOT p50/p90 ms", "spilled"]
    table = table_html(
        headers,
        [
            [
                f.name,
                f"{f.completed:,}/{f.requests:,}",
                _money(f.usd),
                _money(f.fleet_usd),
                _money(f.usd_per_mtok),
                _pct(f.slo_attainment),
                f"{_ms(f.ttft_s, 'p50')}/{_ms(f.ttft_s, 'p90')}/{_ms(f.ttft_s, 'p99')}",
                f"{_ms(f.tpot_s, 'p50')}/{_ms(f.tpot_s, 'p90')}",
                _pct(f.spilled_share),
            ]
            for f in rows
        ],
    )
    sections = [f"<h2>Alternatives beside what happened</h2>{table}"]
    if skipped:
        items = "".join(f"<li>{n:,} skipped: {html.escape(r)}</li>" for r, n in skipped.items())
        sections.append(f"<ul>{items}</ul>")
    header, body, notes = quality_cells(rows)
    if body:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        sections.append(
            "<h2>Quality floor per class</h2><p>Per benchmark, the lowest published score (0-100, the advisor's "
            "quality data) among the models that served the class's requests.</p>"
            f"{table_html(header, body)}{f'<ul>{items}</ul>' if items else ''}"
        )
    hourly = go.Figure()
    for f in rows:
        if f.usd_by_hour:
            hourly.add_trace(go.Scatter(x=np.arange(len(f.usd_by_hour)), y=f.usd_by_hour, mode="lines", name=f.name))
    hourly.update_layout(
        title="Cost by hour (billed, whole fleet)",
        xaxis_title="hour since the first request",
        yaxis_title="USD per hour (all tiers)",
    )
    sections.append(figure_div(hourly, "cost-by-hour"))
    for key, label, div in (("ttft_quantiles_s", "TTFT", "ttft-cdf"), ("tpot_quantiles_s", "TPOT", "tpot-cdf")):
        cdf = go.Figure()
        for f in rows:
            q = getattr(f, key)
            if q:
                cdf.add_trace(go.Scatter(x=np.array(q) * 1e3, y=np.arange(101) / 100, mode="lines", name=f.name))
        cdf.update_layout(
            title=f"{label} distribution (per request)",
            xaxis_title=f"{label} (ms)",
            yaxis_title="share of requests",
            xaxis_type="log",
        )
        sections.append(figure_div(cdf, div))
    tiers = sorted({t for f in rows for t in f.tier_requests})
    mix = go.Figure()
    for tier in tiers:
        shares = [f.tier_requests.get(tier, 0) / max(f.requests, 1) for f in rows]
        mix.add_trace(go.Bar(x=[f.name for f in rows], y=shares, name=tier))
    mix.update_layout(barmode="stack", title="Tier mix (share of requests per tier)", yaxis_title="share of requests")
    sections.append(figure_div(mix, "tier-mix"))
    return page(title, sections)
