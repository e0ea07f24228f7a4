"""`tokenomy bench`: options, the run with a progress display, and its outputs (table, JSON, files, HTML).

Registered on the main app by `tokenomy.cli.main`; the library work is in `tokenomy.bench`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tokenomy.cli import options as opt

if TYPE_CHECKING:
    from tokenomy.bench.client import RequestRecord
    from tokenomy.bench.economics import Price
    from tokenomy.bench.load import LiveCounts
    from tokenomy.bench.runner import BenchOutcome, BenchPlan, RunOutcome
    from tokenomy.costmodel.deployment import Deployment
    from tokenomy.sim.workload import WorkloadSpec

RECORD_FIELDS = (
    "run",
    "index",
    "intended_s",
    "sent_s",
    "send_lag_s",
    "first_token_s",
    "end_s",
    "ttft_s",
    "e2e_s",
    "tpot_s",
    "input_tokens",
    "prompt_tokens",
    "output_tokens",
    "output_tokens_client",
    "max_tokens",
    "chunks",
    "finish_reason",
    "error",
    "http_status",
    "error_detail",
)


def bench_command(
    url: Annotated[str, typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (/v1 optional)")],
    model: Annotated[
        str | None,
        typer.Option(help="served model name (default: the first of /v1/models); a catalogue id also predicts"),
    ] = None,
    catalog_model: Annotated[
        str | None, typer.Option(help="catalogue model id for predictions when the served name differs")
    ] = None,
    api_key_env: Annotated[str | None, typer.Option(help="environment variable holding the API key")] = None,
    endpoint: Annotated[str, typer.Option(help="chat (/chat/completions) or completions (/completions)")] = "chat",
    isl: opt.Isl = "512",
    osl: Annotated[str, typer.Option(help="output tokens (sent as max_tokens with ignore_eos), same forms")] = "256",
    rate: opt.Rate = None,
    burstiness: opt.Burstiness = 1.0,
    concurrency: opt.Concurrency = None,
    num_requests: Annotated[
        int, typer.Option(help="requests to send (per sweep point; SLO search probes size themselves)")
    ] = 200,
    trace: Annotated[
        str | None, typer.Option(help="replay a trace: file (Azure CSV, Mooncake or tokenomy JSONL) or built-in name")
    ] = None,
    time_scale: opt.TimeScale = 1.0,
    seed: Annotated[int, typer.Option(min=0, help="random seed (>= 0): arrivals, lengths and prompts")] = 0,
    warmup: Annotated[int, typer.Option(help="requests sent (all at once) before measuring; not counted")] = 0,
    timeout: Annotated[float, typer.Option(help="seconds to wait to connect and for each chunk")] = 300.0,
    sweep_rates: Annotated[str | None, typer.Option(help="comma-separated rates: latency-throughput curve")] = None,
    slo: Annotated[
        str | None,
        typer.Option(help="e.g. 'ttft_p99<=2s,tpot_p99<=50ms': goodput; with no load given, search the highest rate"),
    ] = None,
    search_start: Annotated[float, typer.Option(help="SLO search: first rate probed (req/s)")] = 1.0,
    search_min: Annotated[float, typer.Option(help="SLO search: lowest rate probed (req/s)")] = 0.05,
    search_max: Annotated[float, typer.Option(help="SLO search: highest rate probed (req/s)")] = 1e4,
    search_probes: Annotated[int, typer.Option(help="SLO search: most probes")] = 10,
    probe_seconds: Annotated[
        float, typer.Option(help="SLO search: shortest measured window per probe, s (longer for steady state)")
    ] = 15.0,
    verify_seconds: Annotated[
        float, typer.Option(help="SLO search: seconds of the verification run at the rate found (0: none)")
    ] = 40.0,
    max_error_rate: Annotated[
        float | None,
        typer.Option(help="exit 1 when more than this share of requests failed (default: only when all failed)"),
    ] = None,
    gpu: Annotated[
        str | None, typer.Option(help="accelerator the endpoint runs on (catalogue id): price, MBU/MFU")
    ] = None,
    gpus: Annotated[int, typer.Option(help="GPUs behind the endpoint (replicas = gpus / tp)")] = 1,
    tp: Annotated[int | None, typer.Option(help="tensor-parallel degree of a replica (default: --gpus)")] = None,
    precision: Annotated[str, typer.Option(help="weights precision the endpoint serves, for predictions")] = "native",
    kv_precision: Annotated[str, typer.Option(help="KV cache precision, for predictions")] = "auto",
    engine: Annotated[
        str, typer.Option(help="engine profile for predictions: vllm, sglang, … or a JSON file")
    ] = "vllm",
    accelerators_file: opt.AcceleratorsFile = None,
    usd_per_hour: Annotated[
        float | None, typer.Option(help="the endpoint's $/hour, all GPUs (overrides --gpu)")
    ] = None,
    pricing: Annotated[str, typer.Option(help="catalogue GPU price: on_demand or reserved")] = "on_demand",
    speedup: Annotated[
        float, typer.Option(help="the endpoint runs K× faster than the deployment (a twin's --speedup)")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    html: Annotated[Path | None, typer.Option(help="write a self-contained HTML report")] = None,
    requests_csv: Annotated[Path | None, typer.Option(help="write one row per request (CSV)")] = None,
    requests_jsonl: Annotated[Path | None, typer.Option(help="write one JSON object per request")] = None,
    measurements_csv: Annotated[
        Path | None, typer.Option(help="append the results as measurement rows (for validate / calibrate)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar on stderr")] = True,
) -> None:
    """Measure an OpenAI-compatible endpoint: TTFT, ITL, TPOT, E2E, throughput, goodput, errors, $/Mtok."""
    from tokenomy.bench.client import Endpoint, normalise_base_url
    from tokenomy.bench.runner import BenchError, BenchPlan, SearchSettings, run_bench
    from tokenomy.bench.search import RateSearch, SloError, parse_slo
    from tokenomy.catalog.errors import CatalogError
    from tokenomy.cli.main import console, emit_json, err_console, fail
    from tokenomy.cli.simulating import parse_floats
    from tokenomy.sim.workload import TraceError, WorkloadSpec

    try:
        if endpoint not in ("chat", "completions"):
            raise CatalogError(f"--endpoint must be chat or completions, got '{endpoint}'")
        if not (speedup > 0 and math.isfinite(speedup)):
            raise CatalogError(f"--speedup must be a positive number, got {speedup}")
        if not timeout > 0 or warmup < 0:
            raise CatalogError(f"--timeout must be positive and --warmup at least 0, got {timeout} and {warmup}")
        if max_error_rate is not None and not 0 <= max_error_rate <= 1:
            raise CatalogError(f"--max-error-rate must be a share between 0 and 1, got {max_error_rate}")
        if not (probe_seconds > 0 and math.isfinite(probe_seconds)) or not 0 <= verify_seconds < math.inf:
            raise CatalogError(
                f"--probe-seconds must be positive and --verify-seconds at least 0, got {probe_seconds} and "
                f"{verify_seconds}"
            )
        terms = parse_slo(slo) if slo else []
        spec = WorkloadSpec(
            isl=isl,
            osl=osl,
            rate=rate,
            burstiness=burstiness,
            concurrency=concurrency,
            num_requests=num_requests,
            trace=trace,
            time_scale=time_scale,
            seed=seed,
        )
        rates = parse_floats(sweep_rates, "--sweep-rates")
        if rates and min(rates) <= 0:
            raise CatalogError(f"--sweep-rates: rates must be positive, got '{sweep_rates}'")
        search = None
        if terms and not rates and rate is None and concurrency is None and trace is None:
            search = SearchSettings(
                search_start, search_min, search_max, search_probes, probe_s=probe_seconds, verify_s=verify_seconds
            )
            RateSearch(search.start_rps, search.min_rps, search.max_rps, search.max_probes)  # bad bounds fail here
        api_key = None
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise CatalogError(f"--api-key-env: environment variable {api_key_env} is not set")
        base_url = normalise_base_url(url)
        acc_file = str(accelerators_file) if accelerators_file else None
        deployment_options = (gpu, gpus, tp, precision, kv_precision, engine, acc_file)
        _deployment(catalog_model, True, *deployment_options)  # bad --gpu, --tp or --catalog-model fail here
        from tokenomy.bench.economics import endpoint_price

        price = endpoint_price(gpu, gpus, usd_per_hour, pricing, acc_file)
    except (SloError, CatalogError, TraceError, ValueError) as exc:
        fail(exc)  # an exception: pydantic's errors are mapped to the options they came from
        return

    plan = BenchPlan(
        endpoint=Endpoint(base_url, model or "", endpoint, api_key),
        spec=spec,
        warmup=warmup,
        timeout_s=timeout,
        slo=terms,
        sweep_rates=rates,
        search=search,
        max_error_rate=max_error_rate or 0.0,
    )
    started = time.time()
    try:
        if progress:
            with ProgressDisplay(err_console) as watch_for:
                outcome = run_bench(plan, watch_for)
        else:
            outcome = run_bench(plan)
        d = _deployment(catalog_model or outcome.endpoint.model, catalog_model is not None, *deployment_options)
    except (BenchError, CatalogError) as exc:
        fail(str(exc))
        return
    summary = bench_summary(outcome, plan, d, gpus, price, speedup, spec, started)
    for warning in bench_warnings(summary):
        err_console.print(f"[yellow]warning:[/] {warning}")
    _write_outputs(outcome, summary, requests_csv, requests_jsonl, measurements_csv, html, fail)
    if as_json:
        emit_json(summary)
    else:
        from rich.markup import escape

        from tokenomy.report.tables import simulation_table

        title = f"tokenomy bench {base_url} ({outcome.endpoint.model})"
        console.print(simulation_table(summary, title=escape(title)))
        for line in bench_lines(summary):
            console.print(escape(line))
        for path in (html, requests_csv, requests_jsonl, measurements_csv):
            if path:
                console.print(f"written: {escape(str(path))}")
    failure = run_failure(summary, max_error_rate)
    if failure:
        fail(failure, 1)  # after the outputs are written: nothing measured is lost


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
    from tokenomy.cli.simulating import deployment_for

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
    return deployment_for(model_id, gpu, tp, 1, precision, kv_precision, engine, 0, accelerators_file)


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


# ---------------------------------------------------------------- the summary


def _dataset(spec_isl: str, trace: str | None) -> str:
    if trace:
        return Path(trace).stem
    return "sharegpt" if spec_isl == "sharegpt" else "" if spec_isl.isdigit() else "bench"


def bench_summary(
    outcome: BenchOutcome,
    plan: BenchPlan,
    d: Deployment | None,
    gpus: int,
    price: Price | None,
    speedup: float,
    spec: WorkloadSpec,
    started_unix_s: float,
) -> dict[str, Any]:
    """The summary of a bench: the main run's figures at the top, then sweep, search, economics and prediction."""
    from tokenomy.bench.economics import achieved_utilisation, comparison, predicted_summary

    main = outcome.main
    for run in [main, *outcome.sweep]:
        _add_economics(run, price, speedup)
    summary: dict[str, Any] = dict(main.summary)
    summary["run_id"] = f"bench-{int(started_unix_s)}"
    ep = outcome.endpoint
    summary["endpoint"] = {"url": ep.base_url, "model": ep.model, "kind": ep.kind}
    summary["workload"] = {
        "isl": spec.isl,
        "osl": spec.osl,
        "num_requests": spec.num_requests,
        "seed": spec.seed,
        "trace": spec.trace,
        "dataset": _dataset(spec.isl, spec.trace),
    }
    summary["speedup"] = speedup
    summary["warmup"] = {"requests": plan.warmup, "errors": outcome.warmup_errors}
    replicas = max(gpus // d.n_gpus, 1) if d is not None else 1
    if d is not None:
        summary["deployment"] = {
            "model": d.model.id,
            "gpu": d.gpu.id,
            "num_gpus": gpus,
            "tp": d.tp,
            "pp": d.pp,
            "replicas": replicas,
            "precision": d.fmt.name,
            "kv_precision": d.kv_dtype,
            "engine": d.profile.name,
        }
    if d is not None and main.arrays.ok.any():
        duration = main.summary["duration_s"] * speedup
        summary["utilisation"] = achieved_utilisation(d, main.arrays, duration, speedup, replicas)
        predicted = predicted_summary(d, main.workload, speedup, replicas, spec.seed)
        summary["prediction"] = {"summary": predicted, "comparison": comparison(main.summary, predicted)}
    if outcome.sweep:
        summary["sweep"] = [run.summary for run in outcome.sweep]
    if outcome.search is not None:
        summary["slo_search"] = outcome.search.outcome()
        summary["slo_search"]["rate_unit"] = "req/s, wall clock, whole endpoint"
        summary["slo_search"]["verification"] = outcome.verification.as_dict() if outcome.verification else None
    return summary


def _add_economics(run: RunOutcome, price: Price | None, speedup: float) -> None:
    """$/Mtok of a run, in deployment time, when a price is known."""
    from tokenomy.bench.economics import prefill_share, usd_per_mtok

    s = run.summary
    if price is None or not s["requests"]["completed"]:
        return
    tokens = s["tokens"]
    s["usd_per_mtok"] = usd_per_mtok(
        price, s["duration_s"] * speedup, tokens["input"], tokens["output"], prefill_share(run.arrays)
    )


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


# ---------------------------------------------------------------- files


def record_row(run: str, rec: RequestRecord) -> dict[str, Any]:
    """One request as a flat row (times in seconds from the run's start)."""
    from tokenomy.tokenizer import count_tokens

    ok = rec.ok
    client_tokens = count_tokens("".join(rec.chunk_text)) if rec.chunk_text else 0
    # the server's usage, else the client's own count of what streamed (as the summary does)
    n_out = rec.completion_tokens if rec.completion_tokens is not None else (client_tokens if ok else None)
    tpot = (rec.end_s - rec.first_token_s) / (n_out - 1) if ok and n_out and n_out > 1 else None
    return {
        "run": run,
        "index": rec.index,
        "intended_s": rec.intended_s,
        "sent_s": rec.sent_s,
        "send_lag_s": rec.sent_s - rec.intended_s,
        "first_token_s": rec.first_token_s if ok else None,
        "end_s": rec.end_s if ok else None,
        "ttft_s": rec.first_token_s - rec.intended_s if ok else None,
        "e2e_s": rec.end_s - rec.intended_s if ok else None,
        "tpot_s": tpot,
        "input_tokens": rec.input_tokens,
        "prompt_tokens": rec.prompt_tokens,
        "output_tokens": n_out,
        "output_tokens_client": client_tokens,
        "max_tokens": rec.max_tokens,
        "chunks": len(rec.chunk_s),
        "finish_reason": rec.finish_reason,
        "error": rec.error,
        "http_status": rec.http_status,
        "error_detail": rec.error_detail,
    }


def _all_rows(outcome: BenchOutcome) -> list[dict[str, Any]]:
    """Every request of every run: the sweep points or search probes (run = their rate), the verification run
    of a search (run = 'verify RATE'), else the one run (run = 'main')."""
    runs = [(f"{r.summary['rate']:g}" if "rate" in r.summary else "main", r) for r in outcome.sweep or [outcome.main]]
    if outcome.verification is not None:
        runs.append((f"verify {outcome.verification.rate_rps:g}", outcome.main))
    return [record_row(label, rec) for label, run in runs for rec in run.records]


def _write_outputs(
    outcome: BenchOutcome,
    summary: dict[str, Any],
    requests_csv: Path | None,
    requests_jsonl: Path | None,
    measurements_csv: Path | None,
    html: Path | None,
    fail: Any,
) -> None:
    from tokenomy.catalog.errors import CatalogError

    if requests_csv or requests_jsonl:
        rows = _all_rows(outcome)
        if requests_csv:
            with requests_csv.open("w", newline="") as fh:
                out = csv.DictWriter(fh, fieldnames=list(RECORD_FIELDS))
                out.writeheader()
                out.writerows({k: _csv_value(v) for k, v in r.items()} for r in rows)
        if requests_jsonl:
            with requests_jsonl.open("w") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in rows)
    if measurements_csv:
        from tokenomy.bench.measurements import append_measurements, measurement_rows

        try:
            append_measurements(measurement_rows(summary, summary["run_id"]), measurements_csv)
        except CatalogError as exc:
            fail(str(exc))
    if html:
        from tokenomy.report.bench_html import bench_report

        html.write_text(bench_report(summary, outcome))


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6f}"
    return v
