"""`tokenomy watch URL…`: scrape engines' Prometheus endpoints, compare with the cost model, flag drift, refit.

This module parses the options into `tokenomy.watch.session.EngineWatch`es, runs `tokenomy.watch.loop.watch_loop`
and renders each interval (a live dashboard, or JSON lines); the comparison and the refit are `tokenomy.watch`'s.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tokenomy.catalog.errors import CatalogError
from tokenomy.cli import options as opt
from tokenomy.cli.signals import stop_on_signals
from tokenomy.watch.compare import DEFAULT_BANDS, WINDOW_BANDS
from tokenomy.watch.session import EngineWatch, IntervalReport, WatchOptions

if TYPE_CHECKING:
    from tokenomy.costmodel.profile import EngineProfile
    from tokenomy.watch.compare import Check
    from tokenomy.watch.export import WatchMetrics

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
STATUS_STYLE = {"ok": "green", "high": "red", "low": "red", "no data": "dim", "too few requests": "dim"}


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
    for col in ("metric", "observed", "predicted", "allowed", "from", "status"):
        table.add_column(col, justify="left" if col in ("metric", "from", "status") else "right")
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
            f"{_value(c.metric, c.interval[0])} – {_value(c.metric, c.interval[1])}",
            escape(_origin(c)),
            f"[{style}]{status}[/]" if style else status,
        )
    rate = f"{o.requests_per_s:,.2f} req/s" if o.requests_per_s is not None else "finished requests not counted"
    caption = (
        f"load: {rate} (cost-model clock), batch {o.batch:.2f} ({o.batch_source}), "
        f"waiting {o.waiting:.1f}, "
        f"{p.prompt_tokens}/{p.output_tokens} tokens per request"
    )
    caption += "".join(f"\n{LABELS[c.metric]} 80% interval: {c.note}" for c in r.checks if c.note)
    if r.note:
        caption += f"\n{r.note}"
    if r.fit is not None:
        caption += (
            f"\nrefit over {r.fit.points} intervals (in sample): step overhead "
            f"{r.fit.prior_step_overhead_s * 1e3:.3f} → {r.fit.step_overhead_s * 1e3:.3f} ms, per sequence "
            f"{r.fit.prior_seq_overhead_s * 1e6:.1f} → {r.fit.seq_overhead_s * 1e6:.1f} µs"
        )
    table.caption = escape(caption)
    return table


def _origin(c: Check) -> str:
    """Where a check's allowed range came from, in a few words."""
    if c.source == "80% interval":
        return f"80% interval, {c.pool} (n={c.n}{', thin' if c.thin else ''})"
    width = f"+max(1, {c.band:.0%})" if c.metric == "waiting" else f"±{c.band:.0%}"
    return f"{c.source} {width}"


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


# ---------------------------------------------------------------- options (one line each in the command)

Urls = Annotated[list[str], typer.Argument(help="engine base URLs or /metrics URLs, e.g. http://127.0.0.1:8000")]
Engine = Annotated[
    str,
    typer.Option(
        help="engine profile: vllm, sglang, tensorrt-llm, generic, or a JSON file (vllm and sglang on an AMD GPU: "
        "their ROCm builds, vllm-rocm and sglang-rocm)"
    ),
]
Interval = Annotated[float, typer.Option(help="seconds between scrapes")]
Iterations = Annotated[int, typer.Option(help="stop after N intervals (0: until Ctrl-C)")]
Isl = Annotated[int, typer.Option(help="prompt tokens per request where the engine does not say")]
Osl = Annotated[int, typer.Option(help="output tokens per request where the engine does not say")]
TimeScale = Annotated[
    float | None,
    typer.Option(help="the engine runs K× faster than the cost model (default: a twin's twin:speedup, else 1)"),
]
MaxNumSeqs = Annotated[
    int | None,
    typer.Option(
        help="requests the engine runs at once (vLLM --max-num-seqs, llama-server -np; default: the engine "
        "profile's, or a llama.cpp server's own slot count from /props)"
    ),
]
_REPLACES = (
    "a relative band B (allowed: predicted ÷ (1+B) to × (1+B)) that replaces the prediction's 80% interval "
    "(default: that interval, from cross-validated residuals for the accelerator × model; {fallback:.0%} where "
    "no residual table ships)"
)
BandItl = Annotated[float | None, typer.Option(help="ITL/TPOT: " + _REPLACES.format(fallback=WINDOW_BANDS["itl_s"]))]
BandTtft = Annotated[float | None, typer.Option(help="TTFT: " + _REPLACES.format(fallback=WINDOW_BANDS["ttft_s"]))]
BandThroughput = Annotated[
    float | None,
    typer.Option(help="output tokens/s: " + _REPLACES.format(fallback=WINDOW_BANDS["output_tokens_per_s"])),
]
BandKv = Annotated[float, typer.Option(help="relative band of KV usage (no residual pool: always a band)")]
BandQueue = Annotated[
    float,
    typer.Option(
        help="queue beyond the predicted one tolerated, as a share, at least 1 request (no residual pool: "
        "always a band)"
    ),
]
AlarmOn = Annotated[str, typer.Option(help="metrics that raise the drift alarm: itl, ttft, throughput, kv, queue")]
Confirm = Annotated[int, typer.Option(help="consecutive out-of-band intervals before an alarm")]
Window = Annotated[int, typer.Option(help="intervals the overhead refit uses")]
ProfileOut = Annotated[
    Path | None,
    typer.Option(
        help="write the refitted profile here each interval (first engine with a fit; for plan --engine FILE)"
    ),
]
MetricsPort = Annotated[int | None, typer.Option(help="serve watch's own Prometheus metrics on 127.0.0.1:PORT")]
Dialect = Annotated[str | None, typer.Option("--engine-metrics", help="vllm, sglang or llamacpp (default: detected)")]
ModelName = Annotated[str | None, typer.Option(help="only series with this model_name label")]
AsJson = Annotated[bool, typer.Option("--json", help="one JSON line per engine and interval, no dashboard")]
FailOnDrift = Annotated[bool, typer.Option(help="exit 1 if any drift alarm was raised")]


def watch_command(
    urls: Urls,
    model: opt.Model = "llama-3.1-8b",
    gpu: opt.Gpu = "H100-SXM",
    tp: opt.Tp = None,
    pp: opt.Pp = 1,
    precision: opt.Precision = "native",
    kv_precision: opt.KvPrecision = "auto",
    engine: Engine = "vllm",
    accelerators_file: opt.AcceleratorsFile = None,
    interval: Interval = 5.0,
    iterations: Iterations = 0,
    isl: Isl = 1024,
    osl: Osl = 256,
    time_scale: TimeScale = None,
    max_num_seqs: MaxNumSeqs = None,
    band_itl: BandItl = None,
    band_ttft: BandTtft = None,
    band_throughput: BandThroughput = None,
    band_kv: BandKv = DEFAULT_BANDS["kv_usage"],
    band_queue: BandQueue = DEFAULT_BANDS["waiting"],
    alarm_on: AlarmOn = "itl,ttft",
    confirm: Confirm = 2,
    window: Window = 20,
    profile_out: ProfileOut = None,
    metrics_port: MetricsPort = None,
    dialect: Dialect = None,
    model_name: ModelName = None,
    as_json: AsJson = False,
    fail_on_drift: FailOnDrift = False,
) -> None:
    """Compare live engines (vLLM, SGLang, llama.cpp, twins) with the cost model; flag drift; refit overheads."""
    run_watch_command(WatchCommandOptions(**locals()))


@dataclass(frozen=True)
class WatchCommandOptions:
    """The options of `tokenomy watch`, as given (the parameters of `watch_command`, same names)."""

    urls: list[str]
    model: str
    gpu: str
    tp: int | None
    pp: int
    precision: str
    kv_precision: str
    engine: str
    accelerators_file: Path | None
    interval: float
    iterations: int
    isl: int
    osl: int
    time_scale: float | None
    max_num_seqs: int | None
    band_itl: float | None
    band_ttft: float | None
    band_throughput: float | None
    band_kv: float
    band_queue: float
    alarm_on: str
    confirm: int
    window: int
    profile_out: Path | None
    metrics_port: int | None
    dialect: str | None
    model_name: str | None
    as_json: bool
    fail_on_drift: bool


def check_options(o: WatchCommandOptions) -> None:
    """Refuse bad URLs, an unknown metrics dialect and out-of-range numbers (ValueError naming the option)."""
    from tokenomy.watch.scrape import DIALECTS

    for url in o.urls:
        check_url(url)
    if o.dialect is not None and o.dialect not in DIALECTS:
        raise ValueError(f"--engine-metrics: unknown '{o.dialect}'; choose from {', '.join(DIALECTS)}")
    if not o.interval > 0:
        raise ValueError(f"--interval must be positive, got {o.interval}")
    if o.metrics_port is not None and not 0 < o.metrics_port < 65536:
        raise ValueError(f"--metrics-port must be 1 to 65535, got {o.metrics_port}")
    if o.iterations < 0:
        raise ValueError(f"--iterations must be 0 or more, got {o.iterations}")
    if o.isl < 1 or o.osl < 1:
        raise ValueError("--isl and --osl must be at least 1")
    bands = {"--band-itl": o.band_itl, "--band-ttft": o.band_ttft, "--band-throughput": o.band_throughput}
    for name, band in {**bands, "--band-kv": o.band_kv, "--band-queue": o.band_queue}.items():
        if band is not None and not 0 < band < math.inf:
            raise ValueError(f"{name} must be a positive number, got {band}")


def watch_options(o: WatchCommandOptions) -> WatchOptions:
    """The comparison's settings: bands given (each replaces its metric's interval), the metrics that alarm,
    confirmation, refit window, lengths."""
    bands = {
        "itl_s": o.band_itl,
        "ttft_s": o.band_ttft,
        "output_tokens_per_s": o.band_throughput,
        "kv_usage": o.band_kv,
        "waiting": o.band_queue,
    }
    return WatchOptions(
        bands={k: v for k, v in bands.items() if v is not None},
        alarm_on=parse_alarm_on(o.alarm_on),
        confirm=o.confirm,
        window=o.window,
        isl=o.isl,
        osl=o.osl,
        time_scale=o.time_scale,
        max_num_seqs=o.max_num_seqs,
    )


def parse_watches(o: WatchCommandOptions) -> list[EngineWatch]:
    """One EngineWatch per URL, all comparing with the deployment the options describe."""
    from tokenomy.cli import options as opt

    check_options(o)
    options = watch_options(o)
    deployment = dict(model=o.model, gpu=o.gpu, tp=o.tp, pp=o.pp, precision=o.precision, kv_precision=o.kv_precision)
    d = opt.deployment_of(o.accelerators_file, **deployment, engine=o.engine).deployment
    return [EngineWatch(url, d, options) for url in o.urls]


@dataclass
class WatchView:
    """What `watch` shows of each interval: JSON lines or a live dashboard, the metrics exporter, the profile file."""

    o: WatchCommandOptions
    base_profile: EngineProfile
    exporter: WatchMetrics | None = None
    live: Live | None = None
    latest: dict[str, IntervalReport] = field(default_factory=dict)
    alarmed: set[str] = field(default_factory=set)

    def on_reports(self, reports: list[IntervalReport]) -> None:
        """One interval's reports: remember them, export, print JSON, write the refitted profile, redraw."""
        for r in reports:
            self.latest[r.url] = r
            self.alarmed.update(f"{r.url} {m}" for m in r.alarms)
            if self.exporter is not None:
                self.exporter.update(r)
            if self.o.as_json:
                sys.stdout.write(json.dumps(report_dict(r)) + "\n")
                sys.stdout.flush()
        if self.o.profile_out is not None:
            self._write_profile(reports)
        if self.live is not None:
            self.live.update(Group(*(report_table(self.latest[u]) for u in self.o.urls if u in self.latest)))

    def _write_profile(self, reports: list[IntervalReport]) -> None:
        """The profile refitted on the first engine with a fit, written to --profile-out."""
        from tokenomy.watch.export import write_profile
        from tokenomy.watch.refit import fitted_profile

        fits = [r for r in reports if r.fit is not None]
        if fits and self.o.profile_out is not None:
            source = "tokenomy watch " + fits[0].url
            write_profile(fitted_profile(self.base_profile, fits[0].fit, source), self.o.profile_out)


def start_exporter(port: int | None) -> WatchMetrics | None:
    """watch's own Prometheus metrics served on 127.0.0.1:PORT (None without --metrics-port)."""
    if port is None:
        return None
    from prometheus_client import start_http_server

    from tokenomy.watch.export import WatchMetrics

    exporter = WatchMetrics()
    try:
        start_http_server(port, addr="127.0.0.1", registry=exporter.registry)
    except OSError as exc:
        _fail(f"--metrics-port {port}: cannot listen on 127.0.0.1 ({exc.strerror or exc})")
    return exporter


def run_watch_command(o: WatchCommandOptions) -> None:
    """Parse the options into watches, run the loop with the view on each interval, then report drift."""
    from tokenomy.catalog.profiles import engine_profile
    from tokenomy.watch.loop import watch_loop

    try:
        watches = parse_watches(o)
        base_profile = engine_profile(o.engine, o.gpu, str(o.accelerators_file or "") or None)  # as resolve picks
    except (CatalogError, ValueError) as exc:
        _fail(str(exc))
        return
    view = WatchView(o, base_profile, start_exporter(o.metrics_port))
    console = Console(emoji=False)
    view.live = None if o.as_json else Live(console=console, auto_refresh=False, transient=False)
    try:
        if view.live is not None:
            view.live.start()
            view.live.update(f"watching {len(o.urls)} engine(s) every {o.interval:g} s…", refresh=True)
        with stop_on_signals(threading.Event()) as stop:  # Ctrl-C or SIGTERM: stop, then report drift
            watch_loop(watches, o.interval, view.on_reports, o.iterations, stop, o.dialect, o.model_name)
    except KeyboardInterrupt:
        pass
    except ValueError as exc:
        _fail(str(exc))
    finally:
        if view.live is not None:
            view.live.refresh()
            view.live.stop()
    render_end(o, view, console)


def render_end(o: WatchCommandOptions, view: WatchView, console: Console) -> None:
    """Where the refitted profile went, the drift alarms raised; exit 1 on drift with --fail-on-drift."""
    if o.profile_out is not None and any(r.fit is not None for r in view.latest.values()):
        out = escape(str(o.profile_out))
        console.print(f"refitted profile written to {out} (plan --engine {out})")
    if view.alarmed:
        Console(stderr=True, emoji=False).print(f"[yellow]drift:[/] {escape(', '.join(sorted(view.alarmed)))}")
        if o.fail_on_drift:
            raise typer.Exit(1)
