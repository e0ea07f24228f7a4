"""Self-contained HTML report of a bench: latency CDFs, prediction vs measurement, a sweep's latency–throughput curve.

Built on `tokenomy.report.html` (page scaffolding, one inlined plotly.js) and `sim_html` (latency tables,
latency over time, the sweep curve), so a bench page reads like a simulation page.
"""

from __future__ import annotations

import html
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from tokenomy.report.html import figure_div, page, table_html
from tokenomy.report.sim_html import (
    LATENCY_ID,
    SWEEP_ID,
    _fmt,
    _get,
    _ms,
    _plot_values,
    latency_over_time,
    latency_table,
    latency_throughput,
    sweep_table,
)
from tokenomy.sim.metrics import RequestLog

if TYPE_CHECKING:
    from tokenomy.bench.metrics import RunArrays
    from tokenomy.bench.runner import BenchOutcome

CDF_ID = "latency-cdf"
PREDICTION_ID = "prediction-vs-measurement"
CDF_POINTS = 400  # quantiles drawn per curve (the tail above p99 gets a quarter of them)


def cdf_points(values_s: np.ndarray) -> tuple[list[float], list[float]]:
    """(x in ms, cumulative fraction) of an empirical CDF, thinned to CDF_POINTS quantiles, denser in the tail."""
    v = np.sort(values_s[np.isfinite(values_s)])
    if v.size == 0:
        return [], []
    q = np.unique(np.concatenate([np.linspace(0, 0.99, CDF_POINTS * 3 // 4), np.linspace(0.99, 1.0, CDF_POINTS // 4)]))
    x = np.quantile(v, q, method="inverted_cdf") * 1e3
    return x.tolist(), q.tolist()


def latency_cdfs(a: RunArrays, predicted: dict[str, Any] | None) -> go.Figure | None:
    """Empirical CDFs of TTFT and ITL (ms, log axis); the cost model's p50/p90/p99 as markers when predicted."""
    ttft, itl = a.ttft_s[a.ok], a.itl_s
    if not ttft.size:
        return None
    fig = go.Figure()
    for name, values, color in (("TTFT", ttft, "#1f77b4"), ("ITL", itl, "#ff7f0e")):
        x, y = cdf_points(values)
        fig.add_scatter(
            name=f"{name} measured", x=_plot_values(x, positive=True), y=y, mode="lines", line={"color": color}
        )
        stats = (predicted or {}).get(f"{name.lower()}_s")
        if stats:
            qs = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)]
            fig.add_scatter(
                name=f"{name} predicted",
                x=_plot_values([stats[k] * 1e3 for k, _ in qs], positive=True),
                y=[p for _, p in qs],
                mode="markers",
                marker={"symbol": "diamond-open", "size": 11, "color": color, "line": {"width": 2}},
            )
    fig.update_layout(
        title="Latency distributions (measured CDF; predicted percentiles as diamonds)",
        xaxis={"title": "latency (ms)", "type": "log"},
        yaxis={"title": "fraction of requests (TTFT) or tokens (ITL)", "range": [0, 1.02]},
    )
    return fig


def prediction_chart(comparison: list[dict[str, Any]]) -> go.Figure | None:
    """Measured vs predicted latency statistics side by side (ms, log axis)."""
    rows = [r for r in comparison if not r["metric"].startswith("throughput") and r["ratio"] is not None]
    rows = [r for r in rows if r["measured"] > 0 and r["predicted"] > 0]
    if not rows:
        return None
    labels = [f"{r['metric'].split('_s.')[0].upper()} {r['metric'].split('_s.')[1]}" for r in rows]
    fig = go.Figure()
    fig.add_bar(name="measured", x=labels, y=[r["measured"] * 1e3 for r in rows])
    fig.add_bar(name="predicted (cost model, simulated)", x=labels, y=[r["predicted"] * 1e3 for r in rows])
    fig.update_layout(
        title="Prediction vs measurement", barmode="group", yaxis={"title": "ms", "type": "log"}, xaxis_title=""
    )
    return fig


def comparison_table(comparison: list[dict[str, Any]]) -> str:
    rows = []
    for r in comparison:
        is_time = not r["metric"].startswith("throughput")
        fmt = _ms if is_time else (lambda v: _fmt(v, ",.2f"))
        rows.append([r["metric"], fmt(r["measured"]), fmt(r["predicted"]), _fmt(r["ratio"], ".2f", suffix="×")])
    return table_html(["metric (latency in ms)", "measured", "predicted", "measured / predicted"], rows)


def bench_figures_table(s: dict[str, Any]) -> str:
    """Requests, errors by kind, throughput, goodput, tokens, the client's lag, $/Mtok, MBU/MFU."""
    rows: list[list[str]] = []

    def row(label: str, value: Any, fmt: str = ",.2f", scale: float = 1.0, suffix: str = "") -> None:
        if value is not None:
            rows.append([label, _fmt(value, fmt, scale, suffix)])

    req, errors = s.get("requests", {}), s.get("errors", {})
    rows.append(["requests completed / total", f"{req.get('completed', 0):,} / {req.get('total', 0):,}"])
    kinds = ", ".join(f"{k} {v}" for k, v in errors.items() if k not in ("total", "http_status") and v)
    rows.append(["errors", f"{errors.get('total', 0):,}" + (f" ({kinds})" if kinds else "")])
    row("duration", s.get("duration_s"), ",.2f", suffix=" s")
    row("output throughput", _get(s, "throughput", "output_tokens_per_s"), ",.1f", suffix=" tok/s")
    row("request throughput", _get(s, "throughput", "requests_per_s"), ",.2f", suffix=" req/s")
    row("goodput", s.get("goodput_rps"), ",.2f", suffix=" req/s")
    row("SLO attainment", s.get("slo_attainment"), ".1%")
    row("input tokens (server usage)", _get(s, "tokens", "input"), ",.0f")
    row("output tokens (server usage)", _get(s, "tokens", "output"), ",.0f")
    row("output tokens (client count)", _get(s, "tokens", "output_client_count"), ",.0f")
    row("tokens per chunk", _get(s, "tokens", "mean_tokens_per_chunk"), ",.2f")
    row("send lag p50", _get(s, "client", "send_lag_s", "p50"), ",.2f", 1e3, " ms")
    row("send lag p99", _get(s, "client", "send_lag_s", "p99"), ",.2f", 1e3, " ms")
    for part in ("input", "output", "blended"):
        row(f"$/Mtok {part}", _get(s, "usd_per_mtok", part), ",.4f")
    row("prefill share of request time", _get(s, "usd_per_mtok", "prefill_share"), ".1%")
    row("achieved MBU (decode)", _get(s, "utilisation", "mbu"), ".1%")
    row("achieved MFU", _get(s, "utilisation", "mfu"), ".1%")
    row("mean decode batch", _get(s, "utilisation", "mean_decode_batch"), ",.1f")
    return table_html(["figure", "value"], rows)


def request_log(a: RunArrays) -> RequestLog:
    """Bench arrays as the simulator's request log (arrival = intended send), for `latency_over_time`."""
    n = a.ok.size
    return RequestLog(
        arrival_s=a.intended_s.astype(float),
        input_tokens=a.prompt_tokens,
        output_tokens=a.output_tokens,
        first_token_s=a.first_token_s,
        finish_s=a.end_s,
        preemptions=np.zeros(n, dtype=np.int64),
        cached_tokens=np.zeros(n, dtype=np.int64),
        where=np.zeros(n, dtype=np.int64),
    )


def bench_report(summary: dict[str, Any], outcome: BenchOutcome | None = None, title: str = "tokenomy bench") -> str:
    """The HTML page of a bench: headline tables, CDFs, prediction vs measurement, latency over time, the sweep."""
    sections: list[str] = []
    ep = summary.get("endpoint", {})
    if ep:
        sections.append(f"<p>{html.escape(ep.get('url', ''))} · model {html.escape(str(ep.get('model', '')))}</p>")
    latency = latency_table(summary)
    if latency:
        sections += ["<h2>Latency</h2>", latency]
    sections += ["<h2>Throughput, tokens, cost</h2>", bench_figures_table(summary)]
    prediction = summary.get("prediction")
    if outcome is not None:
        fig = latency_cdfs(outcome.main.arrays, prediction["summary"] if prediction else None)
        if fig is not None:
            sections.append(figure_div(fig, CDF_ID))
    if prediction:
        fig = prediction_chart(prediction["comparison"])
        sections.append("<h2>Prediction vs measurement</h2>")
        if fig is not None:
            sections.append(figure_div(fig, PREDICTION_ID))
        sections.append(comparison_table(prediction["comparison"]))
    if outcome is not None:
        fig = latency_over_time(request_log(outcome.main.arrays))
        if fig is not None:
            sections.append(figure_div(fig, LATENCY_ID))
    sweep = summary.get("sweep")
    if sweep:
        fig = latency_throughput(sweep)
        heading = "SLO search probes" if "slo_search" in summary else "Rate sweep"
        if fig is not None:
            sections += [f"<h2>{heading}</h2>", figure_div(fig, SWEEP_ID), sweep_table(sweep)]
    best = _get(summary, "slo_search", "best_rate_rps")
    if "slo_search" in summary:
        found = "none" if best is None else f"{best:,.4g} req/s (wall clock, whole endpoint)"
        sections.append(
            f"<p>Highest rate meeting {html.escape(', '.join(_get(summary, 'slo', 'terms') or []))}: {found}</p>"
        )
        sections.append(search_table(summary["slo_search"]))
    sections.append(
        "<p class='note'>Latencies count from each request's intended send time (its arrival in the schedule); "
        "ITL pools one gap per output token (a chunk of k tokens adds its gap and k − 1 zeros). Predictions "
        "come from tokenomy's simulator on the same workload, in the endpoint's time (÷ --speedup).</p>"
    )
    dump = html.escape(json.dumps(summary, indent=1, default=_json_default))
    sections.append(f"<details><summary>JSON</summary><pre>{dump}</pre></details>")
    return page(title, sections)


def search_table(search: dict[str, Any]) -> str:
    """Each probe of the SLO search and the verification run: rate, verdict and why, served vs offered rate."""
    rows = []
    probes = [("probe", p) for p in search.get("probes", [])]
    if search.get("verification"):
        probes.append(("verification", search["verification"]))
    for kind, p in probes:
        served = p.get("served_rps")
        cells = [
            kind,
            f"{p['rate_rps']:,.4g}",
            "pass" if p["ok"] else "fail",
            "—" if served is None else f"{served:,.4g} of {p['offered_rps']:,.4g}",
            "—" if p.get("window_s") is None else f"{p['window_s']:,.3g} s, {p['measured_requests']:,} requests",
            "—" if p.get("goodput_rps") is None else f"{p['goodput_rps']:,.4g}",
            "; ".join(p.get("reasons") or []) or "—",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = (
        "<tr><th>run</th><th>offered rate (req/s)</th><th>verdict</th><th>served (req/s)</th>"
        "<th>measured window</th><th>goodput (req/s)</th><th>why it failed</th></tr>"
    )
    note = (
        "<p class='note'>A probe passes when the endpoint served at least "
        f"{search.get('served_fraction_required', 0.95):.0%} of the rate offered in its measured window (after a "
        "warm-up), every SLO term held over that window's requests and none failed. Rates per whole endpoint, "
        "wall clock.</p>"
    )
    return f"<table id='slo-search'>{head}{''.join(rows)}</table>{note}"


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)
