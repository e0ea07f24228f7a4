"""`tokenomy bench`: its options, parsed into a bench plan; the run with a progress display; its outputs.

Registered on the main app by `tokenomy.cli.main`. The work is in `tokenomy.bench`: the runs (runner), the summary
(summary), the per-request rows (records), prices and predictions (economics). This module parses, calls, renders.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenomy.cli import options as opt

if TYPE_CHECKING:
    from tokenomy.bench.economics import Price
    from tokenomy.bench.load import LiveCounts
    from tokenomy.bench.runner import BenchOutcome, BenchPlan, SearchSettings
    from tokenomy.bench.server_metrics import ServerScraper
    from tokenomy.costmodel.deployment import Deployment
    from tokenomy.results import RunSummary

# ---------------------------------------------------------------- options (one line each in the command)

Url = Annotated[str, typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (/v1 optional)")]
ServedModel = Annotated[
    str | None, typer.Option(help="served model name (default: the first of /v1/models); a catalogue id also predicts")
]
CatalogModel = Annotated[
    str | None, typer.Option(help="catalogue model id for predictions when the served name differs")
]
ApiKeyEnv = Annotated[str | None, typer.Option(help="environment variable holding the API key")]
EndpointKind = Annotated[str, typer.Option(help="chat (/chat/completions) or completions (/completions)")]
Osl = Annotated[str, typer.Option(help="output tokens (sent as max_tokens with ignore_eos), same forms")]
NumRequests = Annotated[int, typer.Option(help="requests to send (per sweep point; SLO search probes size themselves)")]
Trace = Annotated[
    str | None, typer.Option(help="replay a trace: file (Azure CSV, Mooncake or tokenomy JSONL) or built-in name")
]
Seed = Annotated[int, typer.Option(min=0, help="random seed (>= 0): arrivals, lengths and prompts")]
Warmup = Annotated[int, typer.Option(help="requests sent (all at once) before measuring; not counted")]
Timeout = Annotated[float, typer.Option(help="seconds to wait to connect and for each chunk")]
SweepRates = Annotated[str | None, typer.Option(help="comma-separated rates: latency-throughput curve")]
Slo = Annotated[
    str | None,
    typer.Option(help="e.g. 'ttft_p99<=2s,tpot_p99<=50ms': goodput; with no load given, search the highest rate"),
]
SearchStart = Annotated[float, typer.Option(help="SLO search: first rate probed (req/s)")]
SearchMin = Annotated[float, typer.Option(help="SLO search: lowest rate probed (req/s)")]
SearchMax = Annotated[float, typer.Option(help="SLO search: highest rate probed (req/s)")]
SearchProbes = Annotated[int, typer.Option(help="SLO search: most probes")]
ProbeSeconds = Annotated[
    float, typer.Option(help="SLO search: shortest measured window per probe, s (longer for steady state)")
]
VerifySeconds = Annotated[
    float, typer.Option(help="SLO search: seconds of the verification run at the rate found (0: none)")
]
MaxErrorRate = Annotated[
    float | None,
    typer.Option(help="exit 1 when more than this share of requests failed (default: only when all failed)"),
]
Gpu = Annotated[str | None, typer.Option(help="accelerator the endpoint runs on (catalogue id): price, MBU/MFU")]
Gpus = Annotated[int, typer.Option(help="GPUs behind the endpoint (replicas = gpus / tp)")]
Tp = Annotated[int | None, typer.Option(help="tensor-parallel degree of a replica (default: --gpus)")]
Precision = Annotated[str, typer.Option(help="weights precision the endpoint serves, for predictions")]
KvPrecision = Annotated[str, typer.Option(help="KV cache precision, for predictions")]
Engine = Annotated[str, typer.Option(help="engine profile for predictions: vllm, sglang, … or a JSON file")]
UsdPerHour = Annotated[float | None, typer.Option(help="the endpoint's $/hour, all GPUs (overrides --gpu)")]
Pricing = Annotated[str, typer.Option(help="catalogue GPU price: on_demand or reserved")]
Speedup = Annotated[float, typer.Option(help="the endpoint runs K× faster than the deployment (a twin's --speedup)")]
AsJson = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
Html = Annotated[Path | None, typer.Option(help="write a self-contained HTML report")]
RequestsCsv = Annotated[Path | None, typer.Option(help="write one row per request (CSV)")]
RequestsJsonl = Annotated[Path | None, typer.Option(help="write one JSON object per request")]
MeasurementsCsv = Annotated[
    Path | None, typer.Option(help="append the results as measurement rows (for validate / calibrate)")
]
ShowProgress = Annotated[bool, typer.Option(help="show a progress bar on stderr")]
ServerMetricsUrl = Annotated[
    str | None,
    typer.Option(help="scrape the server's Prometheus metrics during the run: a URL, or 'auto' (--url less /v1)"),
]


def bench_command(
    url: Url,
    model: ServedModel = None,
    catalog_model: CatalogModel = None,
    api_key_env: ApiKeyEnv = None,
    endpoint: EndpointKind = "chat",
    isl: opt.Isl = "512",
    osl: Osl = "256",
    rate: opt.Rate = None,
    burstiness: opt.Burstiness = 1.0,
    concurrency: opt.Concurrency = None,
    num_requests: NumRequests = 200,
    trace: Trace = None,
    time_scale: opt.TimeScale = 1.0,
    turns: opt.Turns = None,
    think_s: opt.ThinkS = "0",
    system_prompt_tokens: opt.SystemPromptTokens = 0,
    system_prompts: opt.SystemPrompts = 1,
    seed: Seed = 0,
    warmup: Warmup = 0,
    timeout: Timeout = 300.0,
    sweep_rates: SweepRates = None,
    slo: Slo = None,
    search_start: SearchStart = 1.0,
    search_min: SearchMin = 0.05,
    search_max: SearchMax = 1e4,
    search_probes: SearchProbes = 10,
    probe_seconds: ProbeSeconds = 15.0,
    verify_seconds: VerifySeconds = 40.0,
    max_error_rate: MaxErrorRate = None,
    gpu: Gpu = None,
    gpus: Gpus = 1,
    tp: Tp = None,
    precision: Precision = "native",
    kv_precision: KvPrecision = "auto",
    engine: Engine = "vllm",
    accelerators_file: opt.AcceleratorsFile = None,
    usd_per_hour: UsdPerHour = None,
    pricing: Pricing = "on_demand",
    speedup: Speedup = 1.0,
    as_json: AsJson = False,
    html: Html = None,
    requests_csv: RequestsCsv = None,
    requests_jsonl: RequestsJsonl = None,
    measurements_csv: MeasurementsCsv = None,
    progress: ShowProgress = True,
    server_metrics: ServerMetricsUrl = None,
) -> None:
    """Measure an OpenAI-compatible endpoint: TTFT, ITL, TPOT, E2E, throughput, goodput, errors, $/Mtok."""
    run_bench_command(BenchOptions(**locals()))


@dataclass(frozen=True)
class BenchOptions(opt.WorkloadOptions):
    """The options of `tokenomy bench`, as given (the parameters of `bench_command`, same names)."""

    url: str
    model: str | None
    catalog_model: str | None
    api_key_env: str | None
    endpoint: str
    seed: int
    warmup: int
    timeout: float
    sweep_rates: str | None
    slo: str | None
    search_start: float
    search_min: float
    search_max: float
    search_probes: int
    probe_seconds: float
    verify_seconds: float
    max_error_rate: float | None
    gpu: str | None
    gpus: int
    tp: int | None
    precision: str
    kv_precision: str
    engine: str
    accelerators_file: Path | None
    usd_per_hour: float | None
    pricing: str
    speedup: float
    as_json: bool
    html: Path | None
    requests_csv: Path | None
    requests_jsonl: Path | None
    measurements_csv: Path | None
    progress: bool
    server_metrics: str | None

    def deployment_options(self) -> tuple[str | None, int, int | None, str, str, str, str | None]:
        """gpu, gpus, tp, precision, kv_precision, engine and the accelerators file: what `_deployment` takes."""
        acc_file = str(self.accelerators_file) if self.accelerators_file else None
        return (self.gpu, self.gpus, self.tp, self.precision, self.kv_precision, self.engine, acc_file)


@dataclass(frozen=True)
class BenchRequest:
    """What the options ask for: the bench plan, the endpoint's price (None: unknown)."""

    plan: BenchPlan
    price: Price | None


def run_bench_command(o: BenchOptions) -> None:
    """Parse the options into a plan, run it (with a progress bar; the server's metrics scraped when asked),
    summarise, render; exit 1 when it failed."""
    from rich.markup import escape

    from tokenomy.bench.runner import BenchError, run_bench
    from tokenomy.bench.search import SloError
    from tokenomy.bench.summary import bench_summary
    from tokenomy.catalog.errors import CatalogError
    from tokenomy.cli.main import err_console, fail
    from tokenomy.sim.workload import TraceError

    try:
        request = parse_options(o)
    except (SloError, CatalogError, TraceError, ValueError) as exc:
        fail(exc)  # an exception: pydantic's errors are mapped to the options they came from
        return
    started = time.time()
    scraper = _server_scraper(o.server_metrics, request.plan.endpoint.base_url)
    try:
        with ProgressDisplay(err_console) if o.progress else contextlib.nullcontext() as watch_for:
            outcome = run_bench(request.plan, scraper.watching(watch_for) if scraper else watch_for)
        served = o.catalog_model or outcome.endpoint.model
        d = _deployment(served, o.catalog_model is not None, *o.deployment_options())
    except (BenchError, CatalogError) as exc:
        fail(str(exc))
        return
    finally:
        server = scraper.finish() if scraper else None
    summary = bench_summary(outcome, request.plan, d, o.gpus, request.price, o.speedup, request.plan.spec, started)
    if server is not None:
        summary["server"] = server
    if scraper and scraper.warning:
        err_console.print(f"[yellow]warning:[/] {escape(scraper.warning)}")
    render_bench(o, outcome, summary)


def _server_scraper(option: str | None, base_url: str) -> ServerScraper | None:
    """The scraper of the server's metrics --server-metrics asks for (None: off)."""
    from tokenomy.bench.server_metrics import ServerScraper, server_metrics_url

    return ServerScraper(server_metrics_url(option, base_url)) if option else None


def check_numbers(o: BenchOptions) -> None:
    """Refuse an unknown endpoint kind and out-of-range numbers, naming the option (a CatalogError)."""
    from tokenomy.catalog.errors import CatalogError

    if o.endpoint not in ("chat", "completions"):
        raise CatalogError(f"--endpoint must be chat or completions, got '{o.endpoint}'")
    if not (o.speedup > 0 and math.isfinite(o.speedup)):
        raise CatalogError(f"--speedup must be a positive number, got {o.speedup}")
    if not o.timeout > 0 or o.warmup < 0:
        raise CatalogError(f"--timeout must be positive and --warmup at least 0, got {o.timeout} and {o.warmup}")
    if o.server_metrics and o.server_metrics != "auto" and not o.server_metrics.startswith(("http://", "https://")):
        raise CatalogError(f"--server-metrics must be an http(s) URL or 'auto', got '{o.server_metrics}'")
    if o.max_error_rate is not None and not 0 <= o.max_error_rate <= 1:
        raise CatalogError(f"--max-error-rate must be a share between 0 and 1, got {o.max_error_rate}")
    if not (o.probe_seconds > 0 and math.isfinite(o.probe_seconds)) or not 0 <= o.verify_seconds < math.inf:
        raise CatalogError(
            f"--probe-seconds must be positive and --verify-seconds at least 0, got {o.probe_seconds} and "
            f"{o.verify_seconds}"
        )


def parse_options(o: BenchOptions) -> BenchRequest:
    """The bench plan the options describe, and the endpoint's price; bad options raise naming the option."""
    from tokenomy.bench.client import Endpoint, normalise_base_url
    from tokenomy.bench.economics import endpoint_price
    from tokenomy.bench.runner import BenchPlan
    from tokenomy.bench.search import parse_slo
    from tokenomy.catalog.errors import CatalogError
    from tokenomy.cli.simulating import parse_floats
    from tokenomy.sim.workload import WorkloadSpec

    check_numbers(o)
    terms = parse_slo(o.slo) if o.slo else []
    spec = WorkloadSpec(
        isl=o.isl,
        osl=o.osl,
        rate=o.rate,
        burstiness=o.burstiness,
        concurrency=o.concurrency,
        num_requests=o.num_requests,
        trace=o.trace,
        time_scale=o.time_scale,
        seed=o.seed,
        **o.session_fields(),
    )
    rates = parse_floats(o.sweep_rates, "--sweep-rates")
    if rates and min(rates) <= 0:
        raise CatalogError(f"--sweep-rates: rates must be positive, got '{o.sweep_rates}'")
    search = _search_settings(o) if terms and not rates and o.rate is None and o.concurrency is None else None
    api_key = _api_key(o.api_key_env)
    base_url = normalise_base_url(o.url)
    _deployment(o.catalog_model, True, *o.deployment_options())  # bad --gpu, --tp or --catalog-model fail here
    price = endpoint_price(o.gpu, o.gpus, o.usd_per_hour, o.pricing, o.deployment_options()[-1])
    endpoint = Endpoint(base_url, o.model or "", o.endpoint, api_key)
    plan = BenchPlan(
        endpoint=endpoint,
        spec=spec,
        warmup=o.warmup,
        timeout_s=o.timeout,
        slo=terms,
        sweep_rates=rates,
        search=search,
        max_error_rate=o.max_error_rate or 0.0,
    )
    return BenchRequest(plan, price)


def _search_settings(o: BenchOptions) -> SearchSettings | None:
    """The SLO search's settings (None with a trace: its arrivals are given; with sessions: their turns wait for
    answers, so no probe offers an exact rate); bad bounds fail here."""
    from tokenomy.bench.runner import SearchSettings
    from tokenomy.bench.search import RateSearch

    if o.trace is not None or o.turns is not None or o.system_prompt_tokens:
        return None
    search = SearchSettings(
        o.search_start, o.search_min, o.search_max, o.search_probes, probe_s=o.probe_seconds, verify_s=o.verify_seconds
    )
    RateSearch(search.start_rps, search.min_rps, search.max_rps, search.max_probes)
    return search


def _api_key(env: str | None) -> str | None:
    """The API key from the environment variable --api-key-env names (a CatalogError when it is unset)."""
    from tokenomy.catalog.errors import CatalogError

    if not env:
        return None
    key = os.environ.get(env)
    if not key:
        raise CatalogError(f"--api-key-env: environment variable {env} is not set")
    return key


def render_bench(o: BenchOptions, outcome: BenchOutcome, summary: RunSummary) -> None:
    """Warnings, the files asked for, then JSON or the table and lines; exit 1 after them when the run failed."""
    from rich.markup import escape

    from tokenomy.cli.main import console, emit_json, err_console, fail

    for warning in bench_warnings(summary):
        err_console.print(f"[yellow]warning:[/] {warning}")
    _write_outputs(o, outcome, summary)
    if o.as_json:
        emit_json(summary)
    else:
        from tokenomy.report.tables import simulation_table

        title = f"tokenomy bench {outcome.endpoint.base_url} ({outcome.endpoint.model})"
        console.print(simulation_table(summary, title=escape(title)))
        for line in bench_lines(summary):
            console.print(escape(line))
        for path in (o.html, o.requests_csv, o.requests_jsonl, o.measurements_csv):
            if path:
                console.print(f"written: {escape(str(path))}")
    failure = run_failure(summary, o.max_error_rate)
    if failure:
        fail(failure, 1)  # after the outputs are written: nothing measured is lost


def _write_outputs(o: BenchOptions, outcome: BenchOutcome, summary: RunSummary) -> None:
    """The per-request rows (CSV, JSON lines), the measurement rows appended, and the HTML report (both read the
    JSON shape: plain dicts)."""
    from tokenomy.bench.records import write_request_rows
    from tokenomy.catalog.errors import CatalogError
    from tokenomy.cli.main import fail

    write_request_rows(outcome, o.requests_csv, o.requests_jsonl)
    if o.measurements_csv:
        from tokenomy.bench.measurements import append_measurements, measurement_rows

        try:
            append_measurements(measurement_rows(summary.as_dict(), summary["run_id"]), o.measurements_csv)
        except CatalogError as exc:
            fail(str(exc))
    if o.html:
        from tokenomy.report.bench_html import bench_report

        o.html.write_text(bench_report(summary.as_dict(), outcome))


def run_failure(summary: dict[str, Any], max_error_rate: float | None) -> str:
    """Why the bench must exit non-zero: no request succeeded, or more failed than --max-error-rate allows."""
    req = summary["requests"]
    if req["total"] and not req["completed"]:
        return f"no request succeeded ({req['total']:,} sent): {error_text(summary['errors'])}"
    if max_error_rate is not None and req["total"] and req["failed"] / req["total"] > max_error_rate:
        return (
            f"{req['failed']:,} of {req['total']:,} requests failed ({req['failed'] / req['total']:.1%} > "
            f"--max-error-rate {max_error_rate:g}): {error_text(summary['errors'])}"
        )
    return ""


def error_text(errors: dict[str, Any]) -> str:
    """Failures in words: each distinct one with its count, HTTP status and the server's message."""
    from tokenomy.bench.metrics import describe_error

    messages = errors.get("messages") or []
    if messages:
        return "; ".join(
            f"{m['count']:,}× {describe_error(m['kind'], m['http_status'], m['message'])}" for m in messages
        )
    return ", ".join(f"{k} {v}" for k, v in errors.items() if k not in ("total", "http_status", "messages") and v)


def _deployment(
    model_id: str | None,
    explicit: bool,
    gpu: str | None,
    gpus: int,
    tp: int | None,
    precision: str,
    kv_precision: str,
    engine: str,
    accelerators_file: str | None = None,
) -> Deployment | None:
    """The catalogue deployment the endpoint stands for (None without --gpu or a catalogue model)."""
    from tokenomy.catalog.accelerators import load_accelerator
    from tokenomy.catalog.errors import CatalogError
    from tokenomy.catalog.models import load_model

    if gpus < 1 or (tp is not None and tp < 1):
        raise CatalogError(f"--gpus and --tp must be positive, got {gpus} and {tp}")
    if gpu is not None:
        load_accelerator(gpu, accelerators_file)  # an unknown GPU fails here, with the nearest names
    if model_id is None:
        return None
    try:
        load_model(model_id)
    except CatalogError:
        if explicit:
            raise
        return None  # a served name that is not in the catalogue: no prediction
    if gpu is None:
        return None
    tp = tp or gpus
    if gpus % tp:
        raise CatalogError(f"--gpus {gpus} is not a multiple of --tp {tp}")
    fields = dict(model=model_id, gpu=gpu, tp=tp, precision=precision, kv_precision=kv_precision, engine=engine)
    return opt.deployment_of(accelerators_file, **fields).deployment


class ProgressDisplay:
    """A rich progress bar per run on stderr: requests done, errors, completions per second."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("errors {task.fields[errors]}"),
            TextColumn("{task.fields[rate]:.1f} req/s"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )

    def __enter__(self):  # noqa: ANN204
        self.progress.start()
        return self.watch_for

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def watch_for(self, label: str, total: int):  # noqa: ANN201
        task = self.progress.add_task(label, total=total, errors=0, rate=0.0)

        def watch(counts: LiveCounts) -> None:
            self.progress.update(task, completed=counts.done, errors=counts.errors, rate=counts.rate_rps())

        return watch


# ---------------------------------------------------------------- the lines


def bench_warnings(summary: dict[str, Any]) -> list[str]:
    """What the person running the bench should know: a client bottleneck, errors, token count mismatches."""
    out = []
    client = summary["client"]
    if client["bottleneck"]:
        lag, loop = client["send_lag_s"], client["loop_lag_s"] or {}
        out.append(
            f"the client is the bottleneck: send lag p99 {lag['p99'] * 1e3:.1f} ms, event-loop lag p99 "
            f"{(loop.get('p99') or 0) * 1e3:.1f} ms (threshold {client['threshold_s'] * 1e3:g} ms); latencies count "
            "from the intended send time, so they include this lag — lower the rate or use a faster client machine"
        )
    errors = summary["errors"]
    if errors["total"]:
        out.append(f"{errors['total']:,} requests failed: {error_text(errors)}")
    tokens = summary["tokens"]
    if tokens["usage_reported"] < summary["requests"]["completed"]:
        out.append("the server did not report usage for every request: output tokens counted by the client")
    if tokens["output_mismatch_fraction"] > 0.02:
        out.append(
            f"client token count differs from the server's usage by {tokens['output_mismatch_fraction']:.1%} "
            "(the bundled tokenizer is not the served model's)"
        )
    return out


def bench_lines(summary: dict[str, Any]) -> list[str]:
    """The headline figures under the latency table."""
    req, thr, tok = summary["requests"], summary["throughput"], summary["tokens"]
    lag = summary["client"]["send_lag_s"]
    lines = [
        f"requests: {req['completed']:,} completed of {req['total']:,} in {summary['duration_s']:,.2f} s",
        f"throughput: {thr['output_tokens_per_s']:,.1f} output tok/s, {thr['requests_per_s']:,.2f} req/s",
        f"tokens: {tok['input']:,} in, {tok['output']:,} out "
        f"({'server usage' if tok['usage_reported'] == req['completed'] else 'client count where usage is missing'}); "
        f"client count {tok['output_client_count']:,} ({tok['output_mismatch_fraction']:.1%} off); "
        f"{tok['mean_tokens_per_chunk']:.2f} tokens per chunk",
        f"send lag: p50 {lag['p50'] * 1e3:.2f} ms, p99 {lag['p99'] * 1e3:.2f} ms",
    ]
    if "goodput_rps" in summary:
        s = summary["slo"]
        lines.append(
            f"goodput: {summary['goodput_rps']:,.2f} req/s ({summary['slo_attainment']:.1%} of requests met "
            f"{', '.join(s['terms'])}); SLO {'met' if s['met'] else 'missed'}"
        )
    if "usd_per_mtok" in summary:
        u = summary["usd_per_mtok"]
        lines.append(
            f"$/Mtok: input ${u['input']:,.4f}, output ${u['output']:,.4f} (prefill share {u['prefill_share']:.1%}; "
            f"{u['price_source']})"
        )
    if "utilisation" in summary and summary["utilisation"]:
        u = summary["utilisation"]
        lines.append(
            f"achieved: MBU {u['mbu']:.1%} (cost model {u['predicted_decode_mbu']:.1%} at decode batch "
            f"{u['mean_decode_batch']:.1f}), MFU {u['mfu']:.1%}"
        )
    if "prediction" in summary:
        by = {r["metric"]: r for r in summary["prediction"]["comparison"]}
        parts = [
            f"{name} {by[k]['measured'] * scale:,.1f} vs {by[k]['predicted'] * scale:,.1f}{unit}"
            for name, k, scale, unit in (
                ("TTFT mean", "ttft_s.mean", 1e3, " ms"),
                ("ITL mean", "itl_s.mean", 1e3, " ms"),
                ("output", "throughput.output_tokens_per_s", 1.0, " tok/s"),
            )
            if by[k]["ratio"] is not None
        ]
        lines.append("measured vs predicted: " + "; ".join(parts))
    if summary.get("server"):
        from tokenomy.bench.server_metrics import server_lines

        lines += server_lines(summary["server"])
    if "slo_search" in summary:
        lines += search_lines(summary["slo_search"], float(summary.get("speedup") or 1.0))
    for point in summary.get("sweep", []) if "slo_search" not in summary else []:
        lines.append(
            f"rate {point['rate']:g} req/s: {point['throughput']['output_tokens_per_s']:,.0f} tok/s, "
            f"TTFT p99 {point['ttft_s']['p99'] * 1e3:,.0f} ms, ITL p99 {point['itl_s']['p99'] * 1e3:,.1f} ms"
        )
    return lines


def search_lines(search: dict[str, Any], speedup: float = 1.0, unit: str = "req/s") -> list[str]:
    """The SLO search in words: the rate found, each probe's verdict (why it failed) and the verification run."""
    best, bad = search["best_rate_rps"], search["lowest_failing_rate_rps"]
    scaled = (
        f" ({best / speedup:,.4g} {unit} in deployment time at speedup {speedup:g})" if best and speedup != 1 else ""
    )
    found = f"{best:,.4g} {unit}{scaled}" if best is not None else f"none down to {search['bounds_rps'][0]:g} {unit}"
    above = f"; lowest failing {bad:,.4g} {unit}" if bad is not None else ""
    lines = [
        f"SLO search: highest rate meeting the SLO {found}{above} ({len(search['probes'])} probes; a probe passes "
        f"when served >= {search.get('served_fraction_required', 0.95):.0%} of the rate offered, every SLO term is "
        "met and no request failed)"
    ]
    for p in search["probes"]:
        lines.append(f"  {probe_line(p, unit)}")
    v = search.get("verification")
    if v:
        verdict = "holds" if v["ok"] else "does NOT hold: " + "; ".join(v["reasons"])
        lines.append(
            f"verification at {v['rate_rps']:,.4g} {unit}, {v['window_s']:,.3g} s measured: served "
            f"{v['served_rps']:,.4g} {unit} of {v['offered_rps']:,.4g} offered, goodput {v['goodput_rps']:,.4g} "
            f"{unit}; the rate {verdict}"
        )
    return lines


def probe_line(p: dict[str, Any], unit: str = "req/s") -> str:
    """One probe: its rate, pass or fail with the reasons, what was served and over how long a window."""
    head = f"probe {p['rate_rps']:,.4g} {unit}: " + ("pass" if p["ok"] else "FAIL (" + "; ".join(p["reasons"]) + ")")
    if p.get("served_rps") is None:
        return head
    return (
        f"{head}; served {p['served_rps']:,.4g} of {p['offered_rps']:,.4g} {unit} offered, "
        f"{p['measured_requests']:,} requests in a {p['window_s']:,.3g} s window"
    )
