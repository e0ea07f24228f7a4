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
from tokenomy.results import json_safe, plain
from tokenomy.sim.metrics import RequestLog, Timeline
from tokenomy.sim.run import SimResult

LATENCY_ID = "latency-over-time"
KV_ID = "kv-over-time"
SWEEP_ID = "latency-throughput"
DAY_COST_ID = "cost-by-hour"
DAY_SLO_ID = "slo-by-hour"
VARIANT_LABELS = {"hybrid": "hybrid (as given)", "all_api": "all-API", "all_self_hosted": "all-self-hosted"}
# Distinct colour, dash and width per variant: two variants with the same figures stay visible on top of each other.
VARIANT_STYLES = {
    "hybrid": {"color": "#1f77b4", "dash": "solid", "width": 5},
    "all_api": {"color": "#d62728", "dash": "dot", "width": 2.5},
    "all_self_hosted": {"color": "#2ca02c", "dash": "dash", "width": 2.5},
}
MAX_TIME_BINS = 50
MIN_REQUESTS_PER_BIN = 10  # fewer bins for short runs, so a bin's percentiles mean something
DASH = "—"
QS = ("mean", "p50", "p90", "p99")


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


def _band(s: dict[str, Any], path: str, fmt: Any) -> str:
    """' [lo–hi]' of a summary figure's 80 % interval (`intervals_80[path]`, '*' for a thin pool), else ''."""
    iv = _get(s, "intervals_80", path)
    if not iv:
        return ""
    lo, hi = iv["interval_80"]
    return f" [{fmt(lo)}–{fmt(hi)}{'*' if iv.get('thin') else ''}]"


def _sweep_error_y(points: list[dict[str, Any]], path: str, y_ms: list[float | None]) -> dict[str, Any] | None:
    """plotly error_y (ms) of one sweep line from each point's 80 % interval; None when no point has one."""
    ivs = [_get(s, "intervals_80", path) for s in points]
    if not any(ivs):
        return None
    up, down = [], []
    for iv, y in zip(ivs, y_ms, strict=True):
        lo, hi = iv["interval_80"] if iv and y is not None else (None, None)
        up.append(hi * 1e3 - y if hi is not None else 0.0)
        down.append(y - lo * 1e3 if lo is not None else 0.0)
    return {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "width": 3}


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
    if np.ptp(log.arrival_s[seen]) == 0:  # offline: one arrival time, so show the distribution instead
        return latency_distribution(ttft, e2e)
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
        yaxis={"title": "latency (ms)", "type": "log", **log_ticks(fig)},
        hovermode="x unified",
    )
    return fig


def latency_distribution(ttft_s: np.ndarray, e2e_s: np.ndarray) -> go.Figure:
    """Cumulative share of requests by TTFT and E2E (ms, log axis): the chart of a run whose requests all
    arrive at once, where latency by arrival time would be a single point."""
    fig = go.Figure()
    for name, values, dash in (("TTFT", ttft_s, "solid"), ("E2E", e2e_s, "dot")):
        v = np.sort(values[~np.isnan(values)]) * 1e3
        if not v.size:
            continue
        share = np.arange(1, v.size + 1) / v.size * 100
        fig.add_scatter(
            name=name,
            x=_plot_values(v, positive=True),
            y=share.tolist(),
            mode="lines",
            line={"dash": dash, "shape": "hv"},
            hovertemplate="%{y:.1f}% of requests within %{x:,.1f} ms",
        )
    fig.update_layout(
        title="Latency distribution (offline run: every request arrives at t=0)",
        xaxis={"title": "latency (ms)", "type": "log"},
        yaxis={"title": "requests within (%)", "range": [0, 101]},
    )
    return fig


def log_ticks(fig: go.Figure) -> dict[str, Any]:
    """Ticks at 1-2-5 × 10^k spanning the figure's y values, labelled in full ("20", "500", "2,000"), for a log
    axis whose default minor labels ("2", "5") read as the wrong numbers."""
    ys = [y for trace in fig.data for y in (trace.y or ()) if _finite(y) and y > 0]
    if not ys:
        return {}
    lo, hi = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    vals = [m * 10.0**k for k in range(lo, hi + 1) for m in (1, 2, 5) if min(ys) / 2 <= m * 10.0**k <= max(ys) * 2]
    return {"tickvals": vals, "ticktext": [f"{v:,.4g}" for v in vals]}


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
                error_y=_sweep_error_y(points, f"{metric}.{q}", y),
                text=rates,
                mode="lines+markers",
                line={"dash": dash, "width": 2 if q == "p50" else 1.5},
                hovertemplate="%{text}<br>%{x:,.0f} output tok/s<br>%{y:,.1f} ms",
            )
    fig.update_layout(
        title="Latency vs throughput (rate sweep, one replica)",
        xaxis_title="output tokens/s (per replica)",
        yaxis={"title": "latency (ms)", "type": "log", **log_ticks(fig)},
    )
    return fig


def day_charts(variants: dict[str, dict[str, Any]]) -> list[go.Figure]:
    """Cost per hour and SLO attainment per hour (TTFT p99 without an SLO) of each fleet variant of a day."""
    hourly = {k: v["hourly"] for k, v in variants.items() if isinstance(v.get("hourly"), dict)}
    if not hourly:
        return []
    cost = go.Figure()
    quality = go.Figure()
    has_slo = all("slo_attainment" in h for h in hourly.values())
    for name, h in hourly.items():
        label = VARIANT_LABELS.get(name, name)
        total = sum(x for x in h["usd"] if _finite(x))
        style = VARIANT_STYLES.get(name, {})
        cost.add_scatter(
            name=f"{label}: {_fmt(total, ',.2f', suffix=' USD')} a day",
            x=h["hour"],
            y=_plot_values(h["usd"]),
            mode="lines",
            line={"shape": "hv", **style},
            hovertemplate="hour %{x}<br>%{y:,.2f} USD",
        )
        if has_slo:
            y = _plot_values([None if v is None else v * 100 for v in h["slo_attainment"]])
            hover = "hour %{x}<br>%{y:.1f}% met the SLO"
        else:
            y = _plot_values([None if v is None else v * 1e3 for v in h["ttft_p99_s"]], positive=True)
            hover = "hour %{x}<br>TTFT p99 %{y:,.0f} ms"
        quality.add_scatter(name=label, x=h["hour"], y=y, mode="lines", line=style, hovertemplate=hover)
    same = [
        f"{VARIANT_LABELS.get(a, a)} and {VARIANT_LABELS.get(b, b)}"
        for i, a in enumerate(hourly)
        for b in list(hourly)[i + 1 :]
        if hourly[a]["usd"] == hourly[b]["usd"]
    ]
    cost.update_layout(
        title="Cost by hour (whole fleet)" + (f"; {', '.join(same)} cost the same" if same else ""),
        xaxis_title="hour of the day (arrival time)",
        yaxis_title="USD per hour",
        yaxis_rangemode="tozero",
    )
    if has_slo:
        quality.update_layout(
            title="SLO attainment by hour (share of the hour's requests meeting --slo-ttft / --slo-tpot)",
            xaxis_title="hour of the day (arrival time)",
            yaxis={"title": "requests meeting the SLO (%)", "range": [0, 101]},
        )
    else:
        quality.update_layout(
            title="TTFT p99 by hour (give --slo-ttft / --slo-tpot for SLO attainment)",
            xaxis_title="hour of the day (arrival time)",
            yaxis={"title": "TTFT p99 (ms)", "type": "log"},
        )
    return [cost, quality]


def comparison_table(variants: dict[str, dict[str, Any]]) -> str:
    headers = ["fleet", "USD a day", "$/Mtok", "GPU-hours", "SLO attainment", "TTFT p50 ms", "TTFT p99 ms"]
    rows = [
        [
            VARIANT_LABELS.get(name, name),
            _fmt(_get(v, "cost", "usd"), ",.2f"),
            _fmt(_get(v, "usd_per_mtok", "blended"), ",.4f"),
            _fmt(_get(v, "cost", "gpu_hours"), ",.1f"),
            _fmt(v.get("slo_attainment"), ".1%"),
            _ms(_get(v, "ttft_s", "p50")),
            _ms(_get(v, "ttft_s", "p99")),
        ]
        for name, v in variants.items()
    ]
    return table_html(headers, rows)


def what_ran(summary: dict[str, Any]) -> str:
    """One paragraph naming the deployment (model, GPU, parallelism) and the workload the page describes."""
    dep = _get(summary, "deployment", "description")
    wl = _get(summary, "workload", "description")
    parts = []
    if dep:
        parts.append(f"<b>deployment:</b> {html.escape(str(dep))}")
    if wl:
        parts.append(f"<b>workload:</b> {html.escape(str(wl))}")
    if _get(summary, "workload", "offline") and "requests" in summary:
        parts.append("<b>offline run:</b> every request arrives at t=0 (a batch job), not a load over time")
    return f"<p>{'<br>'.join(parts)}</p>" if parts else ""


# ---- tables ------------------------------------------------------------------------------------


def latency_table(summary: dict[str, Any]) -> str | None:
    rows = []
    for key, label in (("ttft_s", "TTFT"), ("itl_s", "ITL"), ("tpot_s", "TPOT"), ("e2e_s", "E2E")):
        stats = summary.get(key)
        if isinstance(stats, dict):
            rows.append([label, *(_ms(stats.get(q)) + _band(summary, f"{key}.{q}", _ms) for q in QS)])
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
    scope = "whole fleet" if "tiers" in s else "per replica"
    for key, label, fmt, unit in (
        ("output_tokens_per_s", f"output throughput ({scope})", ",.0f", " tok/s"),
        ("input_tokens_per_s", "input throughput", ",.0f", " tok/s"),
        ("requests_per_s", "request throughput", ",.2f", " req/s"),
    ):
        row(
            label,
            _get(s, "throughput", key),
            fmt,
            suffix=unit + _band(s, f"throughput.{key}", lambda x, f=fmt: _fmt(x, f)),
        )
    row("goodput", s.get("goodput_rps"), ",.2f", suffix=" req/s")
    row("SLO attainment", s.get("slo_attainment"), ".1%")
    row("KV utilisation (live / allocated)", _get(s, "kv", "utilisation"), ".1%")
    row("preemptions", s.get("preemptions"), ",.0f")
    row("mean decode batch", s.get("mean_decode_batch"), ",.1f")
    # The share of time a step was running (any batch): not how much of the GPU's capacity the load used.
    row("engine stepping (share of time)", s.get("gpu_busy_fraction"), ".1%")
    row("load (share of the replica's max output throughput)", _get(s, "capacity", "fraction"), ".1%")
    row(
        "max output throughput (per replica, closed form)",
        _get(s, "capacity", "max_output_tokens_per_s_per_replica"),
        ",.0f",
        suffix=" tok/s",
    )
    row("energy", _get(s, "energy", "joules"), ",.0f", suffix=" J")
    row("energy / output token", _get(s, "energy", "joules_per_output_token"), ",.3f", suffix=" J")
    row("cost", _get(s, "cost", "usd"), ",.4f", suffix=" USD")
    row("GPU-hours", _get(s, "cost", "gpu_hours"), ",.3f")
    for part in ("input", "output", "blended"):
        row(f"$/Mtok {part}", _get(s, "usd_per_mtok", part), ",.4f", suffix=_band(s, f"usd_per_mtok.{part}", _fmt4))
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
    headers = [
        "offered req/s",
        "output tok/s (per replica)",
        "goodput req/s",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "ITL p50 ms",
        "ITL p99 ms",
    ]
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


def _fmt4(x: Any) -> str:
    return _fmt(x, ",.4f")


INTERVALS_NOTE = (
    "Brackets and error bars: 80% intervals. The simulator is deterministic given the cost model, so each figure "
    "takes the cost model's cross-validated residual band for its accelerator family × model family × metric "
    "(catalog/data/residual_quantiles.json): TTFT percentiles mean TTFT's, ITL and TPOT mean ITL's, E2E the e2e "
    "kind's, throughput offline output throughput's, $/Mtok that inverted; an open-loop run's throughput and "
    "$/Mtok follow the arrivals and have none. * marks a thin pool: a wider one stood in (see the notes)."
)


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
    Typed results (`tokenomy.results.RunSummary`) are read as the plain dicts they stand for.
    """
    summary, sweep = plain(summary), plain(sweep)
    sections: list[str] = [what_ran(summary)]
    if summary.get("requests"):
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
    if isinstance(summary.get("comparison"), dict) and summary["comparison"]:
        variants = {"hybrid": summary, **summary["comparison"]}
        sections += ["<h2>One day: hybrid vs all-API vs all-self-hosted</h2>", comparison_table(variants)]
        for fig, div_id in zip(day_charts(variants), (DAY_COST_ID, DAY_SLO_ID), strict=False):
            sections.append(figure_div(fig, div_id))
    if isinstance(summary.get("tiers"), dict) and summary["tiers"]:
        sections += ["<h2>Tiers</h2>", tiers_table(summary["tiers"])]
    if isinstance(summary.get("classes"), dict) and summary["classes"]:
        sections += ["<h2>Request classes</h2>", classes_table(summary["classes"])]
    sections.append(
        "<p class='note'>Latency over time bins requests by arrival time; TTFT = first token − arrival and "
        "E2E = finish − arrival, over the requests that finished. KV and queue lengths are the replica "
        "timeline (summed over replicas). Every figure comes from tokenomy's simulator.</p>"
    )
    if summary.get("intervals_80") or any(s.get("intervals_80") for s in sweep or []):
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.get("notes", []) if n.startswith("80%"))
        sections.append(f"<p class='note'>{INTERVALS_NOTE}</p>" + (f"<ul class='note'>{notes}</ul>" if notes else ""))
    raw = {"summary": summary, "sweep": sweep} if sweep else {"summary": summary}
    dump = html.escape(json.dumps(json_safe(raw), indent=1, default=str, allow_nan=False))
    sections.append(f"<details><summary>JSON</summary><pre>{dump}</pre></details>")
    return page(title, sections)
