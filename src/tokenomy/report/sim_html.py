"""Self-contained HTML report of a simulation: latency and KV over time, a rate sweep, headline tables.

Built on `tokenomy.report.html` (one inlined plotly.js, so the page opens offline).
"""

from __future__ import annotations

import html
import json
import math
import numbers
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tokenomy.report.html import figure_div, page, table_html
from tokenomy.sim.metrics import RequestLog, Timeline
from tokenomy.sim.run import SimResult

LATENCY_ID = "latency-over-time"
KV_ID = "kv-over-time"
SWEEP_ID = "latency-throughput"
MAX_TIME_BINS = 50
MIN_REQUESTS_PER_BIN = 10  # fewer bins for short runs, so a bin's percentiles mean something
DASH = "—"


def _finite(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _fmt(x: Any, fmt: str = ",.2f", scale: float = 1.0, suffix: str = "") -> str:
    return f"{x * scale:{fmt}}{suffix}" if _finite(x) else DASH


def _ms(x: Any) -> str:
    if not _finite(x):
        return DASH
    return f"{x * 1e3:,.2f}" if x * 1e3 < 10 else f"{x * 1e3:,.1f}"


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _plot_values(values: Any, positive: bool = False) -> list[float | None]:
    """Plain floats with gaps (None) for missing, NaN and, on a log axis, non-positive values."""
    return [float(v) if _finite(v) and (not positive or v > 0) else None for v in values]


# ---- charts ------------------------------------------------------------------------------------


def _time_bins(arrival_s: np.ndarray) -> np.ndarray:
    t0, t1 = float(arrival_s.min()), float(arrival_s.max())
    n = int(np.clip(arrival_s.size // MIN_REQUESTS_PER_BIN, 1, MAX_TIME_BINS))
    if t1 <= t0:
        t1 = t0 + 1.0
    return np.linspace(t0, t1, n + 1)


def latency_over_time(log: RequestLog) -> go.Figure | None:
    """p50/p99 of TTFT and E2E of the requests arriving in each time bin (ms, log axis)."""
    ttft = log.first_token_s - log.arrival_s
    e2e = log.finish_s - log.arrival_s
    seen = ~np.isnan(log.arrival_s)
    if not (seen & ~np.isnan(ttft)).any():
        return None
    edges = _time_bins(log.arrival_s[seen])
    which = np.clip(np.searchsorted(edges, log.arrival_s, side="right") - 1, 0, len(edges) - 2)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    counts = [int((seen & (which == b)).sum()) for b in range(len(centres))]
    for name, values, dash in (("TTFT", ttft, "solid"), ("E2E", e2e, "dot")):
        for q, width in ((50, 2), (99, 1.5)):
            ys: list[float | None] = []
            for b in range(len(centres)):
                v = values[seen & (which == b)]
                v = v[~np.isnan(v)]
                ys.append(float(np.percentile(v, q)) * 1e3 if v.size else None)
            fig.add_scatter(
                name=f"{name} p{q}",
                x=centres,
                y=_plot_values(ys, positive=True),
                customdata=counts,
                mode="lines+markers",
                line={"dash": dash, "width": width},
                marker={"size": 4},
                hovertemplate="arrivals at %{x:.1f} s (%{customdata} requests)<br>%{y:,.1f} ms",
            )
    fig.update_layout(
        title="Latency percentiles by arrival time",
        xaxis_title="arrival time (s)",
        yaxis={"title": "latency (ms)", "type": "log", "dtick": "D2"},
        hovermode="x unified",
    )
    return fig


def pooled_timeline(timelines: list[Timeline]) -> Timeline | None:
    """One timeline over several replicas: each replica held at its last sample, summed on the longest grid.

    A replica contributes nothing after its last sample (it had gone idle for good).
    """
    timelines = [t for t in timelines if t.t_s]
    if not timelines:
        return None
    if len(timelines) == 1:
        return timelines[0]
    grid = np.asarray(max(timelines, key=lambda t: t.t_s[-1]).t_s, dtype=float)
    total = {k: np.zeros(grid.size) for k in ("running", "waiting", "kv_live_tokens", "kv_allocated_tokens")}
    for t in timelines:
        ts = np.asarray(t.t_s, dtype=float)
        idx = np.searchsorted(ts, grid, side="right") - 1
        ok = (idx >= 0) & (grid <= ts[-1])
        for k, acc in total.items():
            acc[ok] += np.asarray(getattr(t, k), dtype=float)[idx[ok]]
    return Timeline(
        t_s=grid.tolist(),
        running=total["running"].tolist(),
        waiting=total["waiting"].tolist(),
        kv_live_tokens=total["kv_live_tokens"].tolist(),
        kv_allocated_tokens=total["kv_allocated_tokens"].tolist(),
    )


def kv_over_time(timelines: list[Timeline]) -> go.Figure | None:
    """KV tokens live and allocated (left axis) with running and waiting requests (right axis)."""
    tl = pooled_timeline(timelines)
    if tl is None:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(
        name="KV allocated (tokens)",
        x=tl.t_s,
        y=tl.kv_allocated_tokens,
        mode="lines",
        fill="tozeroy",
        line={"shape": "hv", "color": "rgba(99,110,250,0.6)"},
        secondary_y=False,
    )
    fig.add_scatter(
        name="KV live (tokens)",
        x=tl.t_s,
        y=tl.kv_live_tokens,
        mode="lines",
        fill="tozeroy",
        line={"shape": "hv", "color": "rgba(0,0,139,0.9)"},
        secondary_y=False,
    )
    for name, ys, color in (("running", tl.running, "#2ca02c"), ("waiting", tl.waiting, "#d62728")):
        fig.add_scatter(
            name=f"{name} (requests)",
            x=tl.t_s,
            y=ys,
            mode="lines",
            line={"shape": "hv", "color": color},
            secondary_y=True,
        )
    pooled = f" ({len([t for t in timelines if t.t_s])} replicas, summed)" if len(timelines) > 1 else ""
    fig.update_layout(title=f"KV cache and queue over time{pooled}", xaxis_title="time (s)", legend={"x": 1.08})
    fig.update_yaxes(title_text="KV tokens", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="requests", secondary_y=True, rangemode="tozero", showgrid=False, tickformat=",.0f")
    return fig


def _sweep_sorted(sweep: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(s: dict[str, Any]) -> float:
        r = s.get("rate")
        return float(r) if _finite(r) else float(_get(s, "throughput", "output_tokens_per_s") or 0.0)

    return sorted(sweep, key=key)


def latency_throughput(sweep: list[dict[str, Any]]) -> go.Figure | None:
    """Latency (ms) against output tokens/s over a rate sweep, one line per metric; hover shows the rate."""
    points = _sweep_sorted(sweep)
    if not points:
        return None
    x = _plot_values([_get(s, "throughput", "output_tokens_per_s") for s in points])
    rates = [f"{s['rate']:,.3g} req/s" if _finite(s.get("rate")) else "rate ?" for s in points]
    fig = go.Figure()
    for metric, label, dash in (("ttft_s", "TTFT", "solid"), ("itl_s", "ITL", "dash")):
        for q in ("p50", "p99"):
            y = _plot_values([(_get(s, metric, q) or math.nan) * 1e3 for s in points], positive=True)
            fig.add_scatter(
                name=f"{label} {q}",
                x=x,
                y=y,
                text=rates,
                mode="lines+markers",
                line={"dash": dash, "width": 2 if q == "p50" else 1.5},
                hovertemplate="%{text}<br>%{x:,.0f} output tok/s<br>%{y:,.1f} ms",
            )
    fig.update_layout(
        title="Latency vs throughput (rate sweep)",
        xaxis_title="output tokens/s",
        yaxis={"title": "latency (ms)", "type": "log", "dtick": "D2"},
    )
    return fig


# ---- tables ------------------------------------------------------------------------------------


def latency_table(summary: dict[str, Any]) -> str | None:
    rows = []
    for key, label in (("ttft_s", "TTFT"), ("itl_s", "ITL"), ("tpot_s", "TPOT"), ("e2e_s", "E2E")):
        stats = summary.get(key)
        if isinstance(stats, dict):
            rows.append([label, *(_ms(stats.get(q)) for q in ("mean", "p50", "p90", "p99"))])
    return table_html(["latency (ms)", "mean", "p50", "p90", "p99"], rows) if rows else None


def figures_table(s: dict[str, Any]) -> str:
    rows: list[list[str]] = []

    def row(label: str, value: Any, fmt: str = ",.2f", scale: float = 1.0, suffix: str = "") -> None:
        if value is not None:
            rows.append([label, _fmt(value, fmt, scale, suffix)])

    req = s.get("requests", {})
    if req:
        rows.append(["requests completed / total", f"{req.get('completed', 0):,} / {req.get('total', 0):,}"])
        row("requests rejected", req.get("rejected"), ",.0f")
        row("requests preempted", req.get("preempted"), ",.0f")
    row("duration", s.get("duration_s"), ",.1f", suffix=" s")
    row("output throughput", _get(s, "throughput", "output_tokens_per_s"), ",.0f", suffix=" tok/s")
    row("input throughput", _get(s, "throughput", "input_tokens_per_s"), ",.0f", suffix=" tok/s")
    row("request throughput", _get(s, "throughput", "requests_per_s"), ",.2f", suffix=" req/s")
    row("goodput", s.get("goodput_rps"), ",.2f", suffix=" req/s")
    row("SLO attainment", s.get("slo_attainment"), ".1%")
    row("KV utilisation (live / allocated)", _get(s, "kv", "utilisation"), ".1%")
    row("preemptions", s.get("preemptions"), ",.0f")
    row("mean decode batch", s.get("mean_decode_batch"), ",.1f")
    row("GPU busy", s.get("gpu_busy_fraction"), ".1%")
    row("energy", _get(s, "energy", "joules"), ",.0f", suffix=" J")
    row("energy / output token", _get(s, "energy", "joules_per_output_token"), ",.3f", suffix=" J")
    row("cost", _get(s, "cost", "usd"), ",.4f", suffix=" USD")
    row("GPU-hours", _get(s, "cost", "gpu_hours"), ",.3f")
    for part in ("input", "output", "blended"):
        row(f"$/Mtok {part}", _get(s, "usd_per_mtok", part), ",.4f")
    row("spilled to another tier", s.get("spilled"), ",.0f")
    row("dropped", s.get("dropped"), ",.0f")
    return table_html(["figure", "value"], rows)


def tiers_table(tiers: dict[str, dict[str, Any]]) -> str:
    headers = ["tier", "requests", "spilled in", "USD", "GPU-hours", "$/Mtok", "TTFT p50 ms", "TTFT p99 ms"]
    rows = [
        [
            name,
            _fmt(t.get("requests"), ",.0f"),
            _fmt(t.get("spilled_in"), ",.0f"),
            _fmt(t.get("usd"), ",.4f"),
            _fmt(t.get("gpu_hours"), ",.3f"),
            _fmt(t.get("usd_per_mtok"), ",.4f"),
            _ms(_get(t, "ttft_s", "p50")),
            _ms(_get(t, "ttft_s", "p99")),
        ]
        for name, t in tiers.items()
    ]
    return table_html(headers, rows)


def classes_table(classes: dict[str, dict[str, Any]]) -> str:
    rows = [[c, _fmt(v.get("requests"), ",.0f"), _fmt(v.get("usd_per_mtok"), ",.4f")] for c, v in classes.items()]
    return table_html(["class", "requests", "$/Mtok"], rows)


def sweep_table(sweep: list[dict[str, Any]]) -> str:
    headers = ["offered req/s", "output tok/s", "goodput req/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99"]
    rows = [
        [
            _fmt(s.get("rate"), ",.3g"),
            _fmt(_get(s, "throughput", "output_tokens_per_s"), ",.0f"),
            _fmt(s.get("goodput_rps"), ",.2f"),
            _ms(_get(s, "ttft_s", "p50")),
            _ms(_get(s, "ttft_s", "p99")),
            _ms(_get(s, "itl_s", "p50")),
            _ms(_get(s, "itl_s", "p99")),
        ]
        for s in _sweep_sorted(sweep)
    ]
    return table_html(headers, rows)


# ---- the page ----------------------------------------------------------------------------------


def simulation_report(
    summary: dict[str, Any],
    result: SimResult | None,
    sweep: list[dict[str, Any]] | None = None,
    title: str = "tokenomy simulate",
) -> str:
    """The HTML page of a simulation (or a sweep): the charts the inputs allow, then the headline tables.

    `summary` is `SimResult.summary()` (or a fleet summary, with "tiers"); `result` gives the
    over-time charts and may be None; `sweep` is a list of summaries, each with "rate" (offered req/s).
    """
    sections: list[str] = []
    if summary:
        latency = latency_table(summary)
        if latency:
            sections += ["<h2>Latency</h2>", latency]
        sections += ["<h2>Throughput, cost and utilisation</h2>", figures_table(summary)]
    if result is not None:
        fig = latency_over_time(result.log)
        if fig is not None:
            sections.append(figure_div(fig, LATENCY_ID))
        fig = kv_over_time(result.timelines)
        if fig is not None:
            sections.append(figure_div(fig, KV_ID))
    if sweep:
        fig = latency_throughput(sweep)
        if fig is not None:
            sections += ["<h2>Rate sweep</h2>", figure_div(fig, SWEEP_ID), sweep_table(sweep)]
    if isinstance(summary.get("tiers"), dict) and summary["tiers"]:
        sections += ["<h2>Tiers</h2>", tiers_table(summary["tiers"])]
    if isinstance(summary.get("classes"), dict) and summary["classes"]:
        sections += ["<h2>Request classes</h2>", classes_table(summary["classes"])]
    sections.append(
        "<p class='note'>Latency over time bins requests by arrival time; TTFT = first token − arrival and "
        "E2E = finish − arrival, over the requests that finished. KV and queue lengths are the replica "
        "timeline (summed over replicas). Every figure comes from tokenomy's simulator.</p>"
    )
    raw = {"summary": summary, "sweep": sweep} if sweep else {"summary": summary}
    dump = html.escape(json.dumps(raw, indent=1, default=str))
    sections.append(f"<details><summary>JSON</summary><pre>{dump}</pre></details>")
    return page(title, sections)
