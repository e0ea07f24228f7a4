"""`tokenomy watch URL…`: scrape engines' Prometheus endpoints, compare with the cost model, flag drift, refit."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tokenomy.catalog.errors import CatalogError
from tokenomy.cli import options as opt
from tokenomy.watch.compare import DEFAULT_BANDS
from tokenomy.watch.session import IntervalReport

ALARM_NAMES = {
    "itl": "itl_s",
    "tpot": "itl_s",
    "ttft": "ttft_s",
    "throughput": "output_tokens_per_s",
    "kv": "kv_usage",
    "queue": "waiting",
}
LABELS = {
    "ttft_s": "TTFT",
    "itl_s": "ITL/TPOT",
    "output_tokens_per_s": "output tok/s",
    "kv_usage": "KV usage",
    "waiting": "queue (requests)",
}
STATUS_STYLE = {"ok": "green", "high": "red", "low": "red", "no data": "dim"}


def _fail(message: str) -> None:
    Console(stderr=True, soft_wrap=True, emoji=False, highlight=False).print(
        f"[bold red]error:[/] {escape(' '.join(message.split()))}"
    )
    raise typer.Exit(2)


def parse_alarm_on(text: str) -> tuple[str, ...]:
    """'itl,ttft' → ('itl_s', 'ttft_s'); ValueError naming an unknown entry and the valid ones."""
    out = []
    for name in (p.strip().lower() for p in text.split(",") if p.strip()):
        if name not in ALARM_NAMES:
            raise ValueError(f"--alarm-on: unknown metric '{name}'; choose from {', '.join(ALARM_NAMES)}")
        out.append(ALARM_NAMES[name])
    return tuple(dict.fromkeys(out))


def check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"URL '{url}' must start with http:// or https:// (e.g. http://127.0.0.1:8000)")
    return url


def _value(metric: str, v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    if metric == "output_tokens_per_s":
        return f"{v:,.0f}"
    if metric == "waiting":
        return f"{v:,.1f}"
    if metric.endswith("_s"):
        return f"{v * 1e3:,.2f} ms"
    if metric == "kv_usage":
        return f"{v:.1%}"
    return f"{v:,.0f}"


def report_table(r: IntervalReport) -> Table:
    """One engine's last interval: observed vs predicted per metric, the load, and the refit."""
    o, p = r.observation, r.prediction
    title = f"{escape(r.url)} · interval {r.index}"
    if r.time_scale != 1:
        title += f" · times × {r.time_scale:g} (cost-model clock)"
    table = Table(title=title, title_justify="left")
    for col in ("metric", "observed", "predicted", "band", "status"):
        table.add_column(col, justify="left" if col in ("metric", "status") else "right")
    if o is None or p is None:
        table.caption = escape(r.note)
        return table
    for c in r.checks:
        status = c.status + (" ALARM" if c.metric in r.alarms else "")
        style = "bold red" if c.metric in r.alarms else STATUS_STYLE.get(c.status, "")
        table.add_row(
            LABELS[c.metric],
            _value(c.metric, c.observed),
            _value(c.metric, c.predicted),
            f"+max(1, {c.band:.0%})" if c.metric == "waiting" else f"±{c.band:.0%}",
            f"[{style}]{status}[/]" if style else status,
        )
    caption = (
        f"load: {o.requests_per_s:,.2f} req/s (cost-model clock), batch {o.batch:.2f} ({o.batch_source}), "
        f"waiting {o.waiting:.1f}, "
        f"{p.prompt_tokens}/{p.output_tokens} tokens per request"
    )
    if r.fit is not None:
        caption += (
            f"\nrefit over {r.fit.points} intervals (in sample): step overhead "
            f"{r.fit.prior_step_overhead_s * 1e3:.3f} → {r.fit.step_overhead_s * 1e3:.3f} ms, per sequence "
            f"{r.fit.prior_seq_overhead_s * 1e6:.1f} → {r.fit.seq_overhead_s * 1e6:.1f} µs"
        )
    table.caption = caption
    return table


def report_dict(r: IntervalReport) -> dict[str, Any]:
    """A report as plain JSON-ready data (non-finite numbers as null)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return clean(dataclasses.asdict(r))


def watch_command(
    urls: Annotated[list[str], typer.Argument(help="engine base URLs or /metrics URLs, e.g. http://127.0.0.1:8000")],
    model: opt.Model = "llama-3.1-8b",
    gpu: opt.Gpu = "H100-SXM",
    tp: opt.Tp = None,
    pp: opt.Pp = 1,
    precision: opt.Precision = "native",
    kv_precision: opt.KvPrecision = "auto",
    engine: Annotated[
        str, typer.Option(help="engine profile: vllm, sglang, tensorrt-llm, generic, or a JSON file")
    ] = "vllm",
    accelerators_file: opt.AcceleratorsFile = None,
    interval: Annotated[float, typer.Option(help="seconds between scrapes")] = 5.0,
    iterations: Annotated[int, typer.Option(help="stop after N intervals (0: until Ctrl-C)")] = 0,
    isl: Annotated[int, typer.Option(help="prompt tokens per request where the engine does not say")] = 1024,
    osl: Annotated[int, typer.Option(help="output tokens per request where the engine does not say")] = 256,
    time_scale: Annotated[
        float | None,
        typer.Option(help="the engine runs K× faster than the cost model (default: a twin's twin:speedup, else 1)"),
    ] = None,
    band_itl: Annotated[float, typer.Option(help="relative band of ITL/TPOT")] = DEFAULT_BANDS["itl_s"],
    band_ttft: Annotated[float, typer.Option(help="relative band of TTFT")] = DEFAULT_BANDS["ttft_s"],
    band_throughput: Annotated[float, typer.Option(help="relative band of output tokens/s")] = DEFAULT_BANDS[
        "output_tokens_per_s"
    ],
    band_kv: Annotated[float, typer.Option(help="relative band of KV usage")] = DEFAULT_BANDS["kv_usage"],
    band_queue: Annotated[
        float, typer.Option(help="queue beyond the predicted one tolerated, as a share (at least 1 request)")
    ] = DEFAULT_BANDS["waiting"],
    alarm_on: Annotated[
        str, typer.Option(help="metrics that raise the drift alarm: itl, ttft, throughput, kv, queue")
    ] = ("itl,ttft"),
    confirm: Annotated[int, typer.Option(help="consecutive out-of-band intervals before an alarm")] = 2,
    window: Annotated[int, typer.Option(help="intervals the overhead refit uses")] = 20,
    profile_out: Annotated[
        Path | None,
        typer.Option(
            help="write the refitted profile here each interval (first engine with a fit; for plan --engine FILE)"
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve watch's own Prometheus metrics on 127.0.0.1:PORT")
    ] = None,
    dialect: Annotated[
        str | None, typer.Option("--engine-metrics", help="vllm, sglang or llamacpp (default: detected)")
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="only series with this model_name label")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON line per engine and interval, no dashboard")
    ] = False,
    fail_on_drift: Annotated[bool, typer.Option(help="exit 1 if any drift alarm was raised")] = False,
) -> None:
    """Compare live engines (vLLM, SGLang, llama.cpp, twins) with the cost model; flag drift; refit overheads."""
    from tokenomy.catalog.profiles import load_profile
    from tokenomy.cli.simulating import deployment_for
    from tokenomy.watch.export import WatchMetrics, write_profile
    from tokenomy.watch.loop import watch_loop
    from tokenomy.watch.refit import fitted_profile
    from tokenomy.watch.scrape import DIALECTS
    from tokenomy.watch.session import EngineWatch, WatchOptions

    try:
        for url in urls:
            check_url(url)
        if dialect is not None and dialect not in DIALECTS:
            raise ValueError(f"--engine-metrics: unknown '{dialect}'; choose from {', '.join(DIALECTS)}")
        if not interval > 0:
            raise ValueError(f"--interval must be positive, got {interval}")
        if metrics_port is not None and not 0 < metrics_port < 65536:
            raise ValueError(f"--metrics-port must be 1 to 65535, got {metrics_port}")
        if iterations < 0:
            raise ValueError(f"--iterations must be 0 or more, got {iterations}")
        if isl < 1 or osl < 1:
            raise ValueError("--isl and --osl must be at least 1")
        options = WatchOptions(
            bands={
                "itl_s": band_itl,
                "ttft_s": band_ttft,
                "output_tokens_per_s": band_throughput,
                "kv_usage": band_kv,
                "waiting": band_queue,
            },
            alarm_on=parse_alarm_on(alarm_on),
            confirm=confirm,
            window=window,
            isl=isl,
            osl=osl,
            time_scale=time_scale,
        )
        d = deployment_for(
            model,
            gpu,
            tp,
            pp,
            precision,
            kv_precision,
            engine,
            0,
            str(accelerators_file) if accelerators_file else None,
        )
        base_profile = load_profile(engine)
        watches = [EngineWatch(url, d, options) for url in urls]
    except (CatalogError, ValueError) as exc:
        _fail(str(exc))
        return
    exporter = WatchMetrics() if metrics_port is not None else None
    if exporter is not None:
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port, addr="127.0.0.1", registry=exporter.registry)
        except OSError as exc:
            _fail(f"--metrics-port {metrics_port}: cannot listen on 127.0.0.1 ({exc.strerror or exc})")
    console = Console(emoji=False)
    latest: dict[str, IntervalReport] = {}
    alarmed: set[str] = set()

    def on_reports(reports: list[IntervalReport]) -> None:
        for r in reports:
            latest[r.url] = r
            alarmed.update(f"{r.url} {m}" for m in r.alarms)
            if exporter is not None:
                exporter.update(r)
            if as_json:
                sys.stdout.write(json.dumps(report_dict(r)) + "\n")
                sys.stdout.flush()
        if profile_out is not None:
            fits = [r for r in reports if r.fit is not None]
            if fits:
                source = "tokenomy watch " + fits[0].url
                write_profile(fitted_profile(base_profile, fits[0].fit, source), profile_out)
        if live is not None:
            live.update(Group(*(report_table(latest[u]) for u in urls if u in latest)))

    live = None if as_json else Live(console=console, auto_refresh=False, transient=False)
    try:
        if live is not None:
            live.start()
            live.update(f"watching {len(urls)} engine(s) every {interval:g} s…", refresh=True)
        watch_loop(watches, interval, on_reports, iterations, dialect=dialect, model_name=model_name)
    except KeyboardInterrupt:
        pass
    except ValueError as exc:
        _fail(str(exc))
    finally:
        if live is not None:
            live.refresh()
            live.stop()
    if profile_out is not None and any(r.fit is not None for r in latest.values()):
        console.print(
            f"refitted profile written to {escape(str(profile_out))} (plan --engine {escape(str(profile_out))})"
        )
    if alarmed:
        Console(stderr=True, emoji=False).print(f"[yellow]drift:[/] {escape(', '.join(sorted(alarmed)))}")
        if fail_on_drift:
            raise typer.Exit(1)
