"""Rich tables for the terminal: plans side by side, validation summaries, catalogue listings."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

GIB = 2**30  # sizes print in GiB everywhere (plan, simulate, twin), as nvidia-smi and engines report them


def missing(x: Any) -> bool:
    """True for None, NaN and infinities: figures printed as "—"."""
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def gib(x: float | None) -> str:
    return "—" if missing(x) else f"{x / GIB:,.1f} GiB"


def seconds(x: float | None) -> str:
    if missing(x):
        return "—"
    return f"{x * 1e3:,.1f} ms" if x < 10 else f"{x:,.1f} s"


def money(x: float | None, digits: int = 3) -> str:
    return "—" if missing(x) else f"${x:,.{digits}f}"


def count(x: float | None) -> str:
    return "—" if missing(x) else f"{x:,.0f}"


def percent(x: float | None) -> str:
    return "—" if missing(x) else f"{x:.1%}"


def saving(fraction: float | None) -> str:
    """A saving in words: "saves 37.5%", or for a negative one "costs 12.6× more" (never "saves -1160%")."""
    if missing(fraction):
        return "—"
    if fraction >= 0:
        return f"saves {fraction:.1%}"
    return f"costs {1 - fraction:.3g}× more"


def tokens_per_day(x: float | None) -> str:
    if x is None:
        return "never"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:,.1f}{unit} tok/day"
    return f"{x:,.0f} tok/day"


def plan_table(plans: list[dict[str, Any]]) -> Table:
    """One column per scenario, one row per figure."""
    table = Table(title="tokenomy plan", show_lines=False, header_style="bold")
    table.add_column("")
    for p in plans:
        table.add_column(escape(f"{p['precision']} · {p['gpus']}×{p['gpu']}"), justify="right")

    def row(label: str, fn: Any, markup: bool = False) -> None:
        table.add_row(label, *[fn(p) if markup else escape(str(fn(p))) for p in plans])

    row("model", lambda p: p["model"])
    row("parallelism", lambda p: f"tp={p['tp']} pp={p['pp']} × {p['replicas']} replica(s)")
    row("engine profile", lambda p: p["engine"])
    row("workload", lambda p: f"{p['isl']} in / {p['osl']} out")
    row("params total / active", lambda p: f"{p['params']['total'] / 1e9:,.2f}B / {p['params']['active'] / 1e9:,.2f}B")
    row("weights (per replica)", lambda p: gib(p["memory"]["weights_bytes"]))
    row(
        "activations + runtime (per replica)",
        lambda p: gib(p["memory"]["activation_bytes"] + p["memory"]["runtime_overhead_bytes"]),
    )
    row("KV cache (per replica)", lambda p: f"{gib(p['memory']['kv_bytes'])} ({p['kv_precision']})")
    row("KV bytes / token (per replica)", lambda p: f"{p['memory']['kv_bytes_per_token']:,.0f} B")
    row("KV capacity (per replica)", lambda p: f"{p['memory']['kv_capacity_tokens']:,} tokens")
    row(
        "fits",
        lambda p: "[green]yes[/]" if p["fits"] else f"[red]no[/]: {escape(str(p.get('why_not', '')))}",
        markup=True,
    )
    row(
        "max concurrency paged / static (per replica)",
        lambda p: f"{p['max_concurrency']['paged']:,} / {p['max_concurrency']['static']:,}",
    )
    row("requests run at once (per replica)", _run_at_once)
    row("TTFT (single stream)", lambda p: seconds(p["ttft_s"]) + band(p, "ttft_s", seconds))
    row("ITL (single stream)", lambda p: seconds(p["itl_s"]) + band(p, "itl_s", seconds))
    row("decode (single stream)", lambda p: f"{1 / p['itl_s']:,.1f} tok/s" if p["itl_s"] else "—")
    row(  # the plan's curve at batch 1: prompt and decode steps of one request
        "output (single stream)",
        lambda p: (
            f"{p['single_stream_tokens_per_s']:,.1f} tok/s" + band(p, "single_stream_tokens_per_s", _tps1)
            if p.get("single_stream_tokens_per_s")
            else "—"
        ),
    )
    row("ITL at max batch", lambda p: seconds(p.get("itl_at_max_batch_s")) + band(p, "itl_at_max_batch_s", seconds))
    row("max output throughput (per replica)", lambda p: per_replica_tps(p))
    row(
        "max output throughput (deployment)",
        lambda p: (
            f"{p['max_output_tokens_per_s']:,.0f} tok/s ({p['replicas']} replica{'s' * (p['replicas'] != 1)})"
            + band(p, "max_output_tokens_per_s", _tps)
        ),
    )
    row(
        "MBU / MFU at max batch (per GPU)",
        lambda p: f"{p['mbu_at_max_batch']:.0%} / {p['mfu_at_max_batch']:.0%}" if "mbu_at_max_batch" in p else "—",
    )
    row(
        "energy / output token",
        lambda p: (
            f"{p['energy_j_per_output_token']:.3f} J" + band(p, "energy_j_per_output_token", _joules)
            if "energy_j_per_output_token" in p
            else "—"
        ),
    )
    row("$/hour (per GPU)", lambda p: money(p.get("usd_per_gpu_hour"), 2))
    row("$/hour (deployment)", lambda p: money(p.get("usd_per_hour"), 2))
    util = plans[0].get("utilisation", 0.7)
    row(f"$/Mtok input @ {util:.0%} util", lambda p: money(p["usd_per_mtok"]["input"]) + band(p, "usd_per_mtok.input"))
    row("$/Mtok output", lambda p: money(p["usd_per_mtok"]["output"]) + band(p, "usd_per_mtok.output"))
    apis = max((len(p.get("break_even", [])) for p in plans), default=0)
    for i in range(apis):

        def cell(p: dict[str, Any], i: int = i) -> str:
            be = p.get("break_even", [])
            if i >= len(be):
                return "—"
            b = be[i]
            return f"{b['api']} (${b['api_usd_per_mtok_blended']:.2f}/Mtok): {tokens_per_day(b['tokens_per_day'])}"

        table.add_row("break-even vs API (per replica)" if i == 0 else "", *[escape(cell(p)) for p in plans])
    return table


def per_replica_tps(p: dict[str, Any]) -> str:
    """A plan's max output throughput of one replica (the deployment's divided by its replicas)."""
    value = p.get("max_output_tokens_per_s_per_replica", p["max_output_tokens_per_s"] / max(p["replicas"], 1))
    return f"{value:,.0f} tok/s" + band(p, "max_output_tokens_per_s_per_replica", _tps)


INTERVALS_LEGEND = (
    "80% intervals (in brackets): cross-validated residuals of the cost model per accelerator family × model "
    "family × metric (catalog/data/residual_quantiles.json); $/Mtok and energy per token scale inversely with "
    "throughput; * a thin pool: a wider one stood in (see the notes)"
)


SIM_INTERVALS_LEGEND = (
    "80% rows and brackets: the cost model's cross-validated residual band for each figure's metric "
    "(catalog/data/residual_quantiles.json), the simulator being deterministic given the cost model; "
    "* a thin pool: a wider one stood in (see the notes)"
)


def band(p: dict[str, Any], path: str, fmt: Any = None) -> str:
    """' [lo–hi]' for a figure of `p` with an 80 % interval (`intervals_80[path]`; '*' when its pool was thin), in
    the figure's printed unit, left off ($, ms or s as `seconds` picks for the figure itself; default 3 decimals)."""
    iv = (p.get("intervals_80") or {}).get(path)
    if not iv:
        return ""
    lo, hi = iv["interval_80"]
    if fmt is seconds:
        value = _at(p, path)
        scale = 1e3 if value is not None and value < 10 else 1.0
        lo, hi, fmt = lo * scale, hi * scale, _tps1
    fmt = fmt or _usd
    return f" [{fmt(lo)}–{fmt(hi)}{'*' if iv['thin'] else ''}]"


def _usd(x: float) -> str:
    return f"{x:,.3f}"


def _at(p: dict[str, Any], path: str) -> Any:
    """The figure at a key path: 'ttft_s' or one level down, 'ttft_s.p99'."""
    key, _, sub = path.partition(".")
    value = p.get(key)
    return value.get(sub) if sub and value is not None else value


def _tps(x: float) -> str:
    return f"{x:,.0f}"


def _rps(x: float) -> str:
    return f"{x:,.2f}"


def _tps1(x: float) -> str:
    return f"{x:,.1f}"


def _joules(x: float) -> str:
    return f"{x:.3f}"


def validate_table(result: dict[str, Any]) -> Table:
    table = Table(title="tokenomy validate", header_style="bold")
    for col in ("metric", "predicted", "skipped", "median APE", "p90 APE"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for metric, m in result["metrics"].items():
        med = "—" if m["median_ape"] is None else f"{m['median_ape']:.1%}"
        p90 = "—" if m["p90_ape"] is None else f"{m['p90_ape']:.1%}"
        table.add_row(metric, str(m["n"]), str(m["skipped"]), med, p90)
    return table


def list_table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    """A listing printed whole: no cell is cut or wrapped (print it at the table's measured width)."""
    table = Table(title=title, header_style="bold")
    for c in columns:
        table.add_column(c, no_wrap=True)
    for r in rows:
        table.add_row(*(escape(str(c)) for c in r))
    return table


def simulation_table(summary: dict[str, Any], title: str = "tokenomy simulate") -> Table:
    """Latency percentiles, then the throughput, memory, energy and cost lines of a simulated run."""
    table = Table(title=title, header_style="bold")
    for col in ("", "mean", "p50", "p90", "p99"):
        table.add_column(col, justify="right" if col else "left")
    intervals = summary.get("intervals_80") or {}
    for key, label in (("ttft_s", "TTFT"), ("itl_s", "ITL"), ("tpot_s", "TPOT"), ("e2e_s", "E2E")):
        stats = summary[key]
        table.add_row(label, *(seconds(stats[q]) for q in ("mean", "p50", "p90", "p99")))
        if any(f"{key}.{q}" in intervals for q in ("mean", "p50", "p90", "p99")):
            table.add_row(
                "  80%",
                *(band(summary, f"{key}.{q}", seconds).strip(" []") or "—" for q in ("mean", "p50", "p90", "p99")),
                style="dim",
            )
    return table


def simulation_lines(summary: dict[str, Any]) -> list[str]:
    """The headline figures under the latency table, one per line."""
    req, thr = summary["requests"], summary["throughput"]
    lines = [
        f"requests: {req['completed']:,} completed of {req['total']:,}"
        + (f", {req['rejected']:,} rejected" if req["rejected"] else "")
        + f" in {summary['duration_s']:,.1f} s simulated",
        f"throughput: {thr['output_tokens_per_s']:,.0f} output tok/s"
        + band(summary, "throughput.output_tokens_per_s", _tps)
        + f", {thr['requests_per_s']:,.2f} req/s"
        + band(summary, "throughput.requests_per_s", _rps),
    ]
    if "goodput_rps" in summary:
        lines.append(f"goodput: {summary['goodput_rps']:,.2f} req/s ({summary['slo_attainment']:.1%} met the SLOs)")
    hits = summary.get("prefix_cache_hit_tokens") or 0
    prompt_tokens = summary["throughput"]["input_tokens_per_s"] * summary.get("duration_s", 0.0)
    if hits and prompt_tokens > 0:  # prompt tokens of the completed requests; hits also count unfinished ones
        lines.append(f"prefix cache: {hits:,} prompt tokens read from cache ({hits / prompt_tokens:.1%} of prompts)")
    if "kv" in summary and summary.get("gpu_busy_fraction"):
        lines.append(
            f"KV: {summary['kv']['utilisation']:.1%} of allocated blocks hold live tokens; "
            f"preemptions {summary['preemptions']:,}; "
            f"mean decode batch {summary['mean_decode_batch']:.1f} (per replica)"
        )
        # gpu_busy_fraction is the share of time a step was running, not how much of the GPU each step used.
        busy = f"engine stepping {summary['gpu_busy_fraction']:.1%} of the time"
        cap = summary.get("capacity") or {}
        if not missing(cap.get("fraction")):
            busy += (
                f"; load {cap['fraction']:.0%} of the replica's capacity "
                f"({summary['throughput']['output_tokens_per_s']:,.0f} of "
                f"{cap['max_output_tokens_per_s_per_replica']:,.0f} output tok/s per replica at max batch)"
            )
        lines.append(busy)
        energy = summary["energy"]["joules_per_output_token"]
        lines.append(f"energy: {'—' if missing(energy) else f'{energy:.2f} J'} per output token")
    if "spilled" in summary:
        lines.append(f"spilled to a later tier: {summary['spilled']:,}; dropped: {summary['dropped']:,}")
    if "usd_per_mtok" in summary:
        usd = summary["usd_per_mtok"]
        parts = [f"{k} {money(v)}{band(summary, f'usd_per_mtok.{k}')}" for k, v in usd.items()]
        lines.append(f"$/Mtok: {', '.join(parts)} (total {money(summary['cost']['usd'], 2)})")
    return lines


def tiers_table(summary: dict[str, Any]) -> Table:
    table = Table(title="tiers", header_style="bold")
    for col in ("tier", "requests", "spilled in", "GPU-hours", "USD", "$/Mtok", "TTFT p99"):
        table.add_column(col, justify="left" if col == "tier" else "right")
    for name, t in summary["tiers"].items():
        table.add_row(
            escape(name),
            count(t["requests"]),
            count(t["spilled_in"]),
            count(t["gpu_hours"]) if missing(t["gpu_hours"]) else f"{t['gpu_hours']:,.1f}",
            money(t["usd"], 2),
            money(t["usd_per_mtok"]),
            seconds(t["ttft_s"]["p99"]),
        )
    return table


def comparison_table(variants: dict[str, dict[str, Any]]) -> Table:
    """Hybrid against all-API and all-self-hosted: cost and latency side by side."""
    table = Table(title="one day: hybrid vs all-API vs all-self-hosted", header_style="bold")
    for col in ("fleet", "USD", "$/Mtok", "GPU-hours", "TTFT p50", "TTFT p99", "spilled"):
        table.add_column(col, justify="left" if col == "fleet" else "right")
    for name, s in variants.items():
        table.add_row(
            escape(name),
            money(s["cost"]["usd"], 2),
            money(s["usd_per_mtok"]["blended"]),
            f"{s['cost']['gpu_hours']:,.1f}",
            seconds(s["ttft_s"]["p50"]),
            seconds(s["ttft_s"]["p99"]),
            count(s["spilled"]),
        )
    return table


def sweep_table(sweep: list[dict[str, Any]]) -> Table:
    """One row per offered rate: served throughput, goodput and SLO attainment (with an SLO), latency."""
    has_slo = any("goodput_rps" in s for s in sweep)
    title = "rate sweep (one replica)" + ("" if has_slo else ": give --slo-ttft / --slo-tpot for goodput")
    table = Table(title=title + " — rates in req/s, latencies in ms", header_style="bold", box=box.SIMPLE_HEAD)
    columns = ["offered", "served", "output tok/s", "goodput", "SLO met"]
    for col in [*columns, "TTFT p50", "TTFT p99", "ITL p50", "ITL p99"]:  # short headers: whole words in 80 columns
        table.add_column(col, justify="right", min_width=max(len(word) for word in col.split()))
    for s in sorted(sweep, key=lambda s: s.get("rate") or 0.0):
        table.add_row(
            f"{s['rate']:g}",
            f"{s['throughput']['requests_per_s']:,.2f}",
            count(s["throughput"]["output_tokens_per_s"]),
            "—" if missing(s.get("goodput_rps")) else f"{s['goodput_rps']:,.2f}",
            percent(s.get("slo_attainment")),
            *(_ms(s[key][q]) for key in ("ttft_s", "itl_s") for q in ("p50", "p99")),
        )
    return table


def _ms(value: float | None) -> str:
    return "—" if missing(value) else f"{value * 1e3:,.1f}"


def _run_at_once(p: dict) -> str:
    """The KV cache may hold more than the scheduler admits (llama.cpp's server runs one request at a time)."""
    engine = p["max_concurrency"].get("engine", 0)
    return f"{engine:,}" + (" (scheduler's max_num_seqs)" if engine < p["max_concurrency"]["paged"] else "")
