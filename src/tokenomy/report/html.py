"""Self-contained HTML reports: plotly.js inlined once, so they open offline."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from tokenomy.costmodel.economics import DAYS_PER_MONTH, api_usd_per_day, self_hosted_usd_per_day
from tokenomy.results import json_safe

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; } td, th { border-bottom: 1px solid #ddd; padding: 4px 10px; }
th { text-align: left; } td.num { text-align: right; } .note { color: #666; font-size: 0.85rem; }
"""


def page(title: str, sections: list[str]) -> str:
    """A full HTML page with plotly.js inlined in the head."""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )


def figure_div(fig: go.Figure, div_id: str) -> str:
    """A plotly figure as a <div> (plotly.js already on the page)."""
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 50}, height=420)
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)


def table_html(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{'' if i == 0 else ' class=num'}>{html.escape(str(c))}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def ratios(p: dict[str, Any], path: str) -> tuple[float, float] | None:
    """(lo, hi) of a plan figure's 80 % interval as multiples of the figure (`intervals_80[path]`), or None."""
    iv, value = (p.get("intervals_80") or {}).get(path), p.get(path)
    if not iv or not value:
        return None
    lo, hi = iv["interval_80"]
    return lo / value, hi / value


def error_bars(y: Any, r: tuple[float, float] | None) -> dict[str, Any] | None:
    """plotly error_y for values `y` whose 80 % interval is [y·r[0], y·r[1]] (asymmetric, in y's units)."""
    if r is None:
        return None
    y = np.asarray(y, dtype=float)
    return {"type": "data", "symmetric": False, "array": y * (r[1] - 1), "arrayminus": y * (1 - r[0]), "width": 3}


def _cell(p: dict[str, Any], path: str, value: float | None, fmt: str, scale: float = 1.0) -> str:
    """A summary-table figure with its 80 % interval in brackets ('*' when its pool was thin)."""
    if value is None:
        return "—"
    iv = (p.get("intervals_80") or {}).get(path)
    if not iv:
        return f"{value * scale:{fmt}}"
    lo, hi = iv["interval_80"]
    return f"{value * scale:{fmt}} [{lo * scale:{fmt}}–{hi * scale:{fmt}}{'*' if iv['thin'] else ''}]"


def intervals_note(plans: list[dict[str, Any]]) -> str:
    """What the brackets and error bars are, and each thin or stretched pool the plans' intervals rest on."""
    notes = dict.fromkeys(n for p in plans for n in p.get("notes", []) if n.startswith("80% interval"))
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        "<p class='note'>Brackets and error bars: 80% intervals from the cost model's cross-validated residuals "
        "for the figure's accelerator family × model family × metric (catalog/data/residual_quantiles.json): "
        "throughput takes offline output throughput's band, TTFT mean TTFT's, ITL mean ITL's; $/Mtok and the "
        "self-hosted cost scale inversely with throughput, so they take its band inverted. A curve's points share "
        "the band of its figure at max batch. Memory and power are predicted without residuals: no bars. "
        "* marks a thin pool: a wider one stood in.</p>" + (f"<ul class='note'>{items}</ul>" if items else "")
    )


def _label(p: dict[str, Any]) -> str:
    return f"{p['model']} {p['precision']} tp{p['tp']} × {p['replicas']} on {p['gpu']}"


def _per_replica(p: dict[str, Any]) -> float | None:
    """A serving plan's max output throughput of one replica (None when it does not serve)."""
    return p["max_output_tokens_per_s"] / max(p["replicas"], 1) if p["fits"] else None


def plan_report(plans: list[dict[str, Any]], path: Path) -> None:
    """Write the plan report: summary table, memory breakdown, throughput/ITL vs batch, monthly cost vs APIs.

    Scenarios that do not fit get their reason instead of a chart line; with none that fits, only the
    memory chart (which shows why) and the reasons are drawn.
    """
    labels = [_label(p) for p in plans]
    gib = 2**30
    summary = table_html(
        [
            "scenario",
            "fits",
            "weights GiB / replica",
            "KV capacity tok / replica",
            "TTFT ms",
            "ITL ms",
            "max tok/s / replica",
            "max tok/s / deployment",
            "$/Mtok in",
            "$/Mtok out",
        ],
        [
            [
                lab,
                "yes" if p["fits"] else "no",
                f"{p['memory']['weights_bytes'] / gib:.1f}",
                f"{p['memory']['kv_capacity_tokens']:,}",
                _cell(p, "ttft_s", p["ttft_s"], ".1f", 1e3),
                _cell(p, "itl_s", p["itl_s"], ".2f", 1e3),
                _cell(p, "max_output_tokens_per_s_per_replica", _per_replica(p), ",.0f"),
                _cell(p, "max_output_tokens_per_s", p["max_output_tokens_per_s"] if p["fits"] else None, ",.0f"),
                _cell(p, "usd_per_mtok.input", p["usd_per_mtok"]["input"], ".3f"),
                _cell(p, "usd_per_mtok.output", p["usd_per_mtok"]["output"], ".3f"),
            ]
            for lab, p in zip(labels, plans, strict=True)
        ],
    )
    refused = [(lab, p) for lab, p in zip(labels, plans, strict=True) if not p["fits"]]
    why = ""
    if refused:
        items = "".join(
            f"<li><b>{html.escape(lab)}</b>: {html.escape(str(p.get('why_not') or 'does not fit'))}</li>"
            for lab, p in refused
        )
        hint = (
            "Raise --tp or --gpus, lower --precision, or shorten --isl/--osl; the memory chart shows what each "
            "replica needs against what it has."
        )
        why = f"<h2>Does not serve</h2><ul>{items}</ul><p class='note'>{hint}</p>"
    mem = go.Figure()
    parts = [
        ("weights", "weights_bytes"),
        ("activations", "activation_bytes"),
        ("runtime", "runtime_overhead_bytes"),
        ("KV cache", "kv_bytes"),
    ]
    for name, key in parts:
        mem.add_bar(name=name, x=labels, y=[p["memory"][key] / gib for p in plans])
    mem.add_scatter(
        name="usable memory",
        x=labels,
        y=[p["memory"]["usable_bytes"] / gib for p in plans],
        mode="markers",
        marker={"symbol": "line-ew-open", "size": 30, "color": "black"},
    )
    mem.update_layout(
        barmode="stack", title="Memory per replica (all its GPUs together)", yaxis_title="GiB per replica"
    )

    serving = [(lab, p) for lab, p in zip(labels, plans, strict=True) if p["fits"] and "curve" in p]
    tput = go.Figure()
    itl = go.Figure()
    for lab, p in serving:
        c = p["curve"]
        per_replica = [x / max(p["replicas"], 1) for x in c["output_tokens_per_s"]]
        bars = error_bars(per_replica, ratios(p, "max_output_tokens_per_s"))
        tput.add_scatter(name=lab, x=c["batch"], y=per_replica, mode="lines+markers", error_y=bars)
        itl_ms = np.array(c["itl_s"]) * 1e3
        itl.add_scatter(
            name=lab, x=c["batch"], y=itl_ms, mode="lines+markers", error_y=error_bars(itl_ms, ratios(p, "itl_s"))
        )
    tput.update_layout(
        title="Output throughput per replica vs concurrent requests per replica",
        xaxis_title="batch (sequences per replica)",
        yaxis_title="output tokens/s (per replica)",
        xaxis_type="log",
    )
    itl.update_layout(
        title="Inter-token latency vs concurrent requests per replica",
        xaxis_title="batch (sequences per replica)",
        yaxis_title="ITL (ms)",
        xaxis_type="log",
    )

    cost = go.Figure()
    volumes = np.logspace(6, 11, 60)
    for lab, p in serving:
        if p.get("usd_per_hour") and p.get("replica_tokens_per_day"):
            per_replica_usd_h = p["usd_per_hour"] / p["replicas"]
            y = self_hosted_usd_per_day(volumes, p["replica_tokens_per_day"], per_replica_usd_h) * DAYS_PER_MONTH
            bars = None
            r = ratios(p, "max_output_tokens_per_s")  # fewer tokens per replica-day: more replicas for a volume
            if r is not None:
                lo, hi = (
                    self_hosted_usd_per_day(volumes, p["replica_tokens_per_day"] * k, per_replica_usd_h)
                    * DAYS_PER_MONTH
                    for k in (r[1], r[0])
                )
                bars = {"type": "data", "symmetric": False, "array": hi - y, "arrayminus": y - lo, "width": 2}
            cost.add_scatter(name=f"self-host: {lab}", x=volumes, y=y, mode="lines", line={"shape": "hv"}, error_y=bars)
    seen: set[str] = set()
    for p in plans:
        for b in p.get("break_even", []):
            if b["api"] in seen:
                continue
            seen.add(b["api"])
            y = api_usd_per_day(volumes, b["api_usd_per_mtok_blended"]) * DAYS_PER_MONTH
            cost.add_scatter(name=f"API: {b['api']}", x=volumes, y=y, mode="lines", line={"dash": "dot"})
    cost.update_layout(
        title="Monthly cost vs daily token volume (self-hosted: as many replicas as the volume needs)",
        xaxis_title="tokens per day (the workload's volume, all replicas together)",
        yaxis_title="USD per month",
        xaxis_type="log",
        yaxis_type="log",
    )

    note = (
        "<p class='note'>Self-hosted cost counts always-on replicas at the planned utilisation; API cost is "
        "volume × the blended price for this input:output mix. Every figure comes from tokenomy's cost "
        "model (see the JSON below for the inputs).</p>"
    )
    dump = html.escape(json.dumps(json_safe(plans), indent=1, default=str, allow_nan=False))
    raw = f"<details><summary>JSON</summary><pre>{dump}</pre></details>"
    sections = ["<h2>Summary</h2>", summary, why, figure_div(mem, "memory")]
    if serving:
        sections += [figure_div(tput, "throughput"), figure_div(itl, "itl")]
    if cost.data:
        sections.append(figure_div(cost, "cost"))
    sections += [note, intervals_note(plans), raw]
    path.write_text(page("tokenomy plan", sections))
