"""The `tokenomy` command line: thin wrappers that parse options, call the library and print."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tokenomy.catalog.errors import CatalogError
from tokenomy.cli import errors
from tokenomy.cli import options as opt
from tokenomy.cli import simulate_command as sc

if TYPE_CHECKING:
    from tokenomy.advise.workload import Workload
    from tokenomy.calibrate.measurements import Measurement
    from tokenomy.costmodel.profile import EngineProfile
    from tokenomy.results import AdviceReport, PlanResult
    from tokenomy.twin.server import TwinServer

# rich_markup_mode=None: --help prints option help as written ('uniform:A:B' stays text, never markup or emoji).
app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="What every LLM token costs.",
    cls=errors.GuardedGroup,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
console = Console(emoji=False)
err_console = errors.err_console

DEFAULT_MODEL = "llama-3.1-70b"
DEFAULT_GPU = "H100-SXM"
DEFAULT_PRECISIONS = ("fp16", "fp8", "int4")
DEFAULT_GPUS = 8  # one HGX node: each precision gets the smallest tp that serves well, replicated


def fail(problem: str | BaseException, code: int = errors.EXIT_BAD_INPUT) -> None:
    """One line "error: …" on stderr (escaped: never rendered as markup), then exit `code`.

    Give the exception itself where it may be pydantic's: its errors are mapped to the options they came from.
    """
    errors.fail(problem if isinstance(problem, str) else errors.message_of(problem), code)


def emit_json(data: Any) -> None:
    """Print data as strict JSON: NaN and infinities become null (allow_nan=False checks none is left)."""
    from tokenomy.results import dumps

    sys.stdout.write(dumps(data) + "\n")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"tokenomy {version('tokenomy')}")
        except PackageNotFoundError:
            typer.echo("tokenomy (version unknown: not installed as a package)")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """tokenomy: plan, validate and calibrate LLM serving costs."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())  # as written: no markup or emoji rendering


@app.command()
def plan(
    model: Annotated[str | None, typer.Option(help="catalogue model id or path to a config.json")] = None,
    gpu: opt.Gpu = DEFAULT_GPU,
    gpus: opt.Gpus = None,
    tp: opt.Tp = None,
    pp: opt.Pp = 1,
    precision: Annotated[
        str | None,
        typer.Option(
            help="weights: bf16, fp16, fp8, fp8-block, int8, int4, nvfp4, mxfp4, q4_1…; comma-separated to compare"
        ),
    ] = None,
    kv_precision: opt.KvPrecision = "auto",
    isl: Annotated[int, typer.Option(help="input (prompt) tokens per request")] = 1024,
    osl: Annotated[int, typer.Option(help="output tokens per request")] = 256,
    engine: opt.Engine = "vllm",
    utilisation: Annotated[float, typer.Option(help="mean load as a fraction of max throughput, for $/Mtok")] = 0.7,
    pricing: Annotated[str, typer.Option(help="on_demand or reserved GPU price")] = "on_demand",
    usd_per_gpu_hour: Annotated[float | None, typer.Option(help="override the catalogue GPU price")] = None,
    max_context: opt.MaxContext = 0,
    accelerators_file: opt.AcceleratorsFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    html: Annotated[Path | None, typer.Option(help="write a self-contained HTML report")] = None,
) -> None:
    """Memory, concurrency, latency, throughput and $/Mtok of a deployment.

    With no options: Llama-3.1-70B on one 8×H100 node at fp16, fp8 and int4, side by side.
    """
    from tokenomy.cli.planning import run_plans, validated_request

    default_run = model is None
    options = dict(
        model=model or DEFAULT_MODEL,
        gpu=gpu,
        gpus=gpus if gpus is not None else (DEFAULT_GPUS if default_run else None),
        tp=tp,
        pp=pp,
        precisions=precision.split(",") if precision else list(DEFAULT_PRECISIONS if default_run else ["native"]),
        kv_precision=kv_precision,
        isl=isl,
        osl=osl,
        engine=engine,
        utilisation=utilisation,
        pricing=pricing,
        usd_per_gpu_hour=usd_per_gpu_hour,
        max_context=max_context,
        accelerators_file=str(accelerators_file) if accelerators_file else None,
    )
    try:
        plans = run_plans(validated_request(**options))
    except CatalogError as exc:
        fail(str(exc))
        return
    _render_plans(plans, as_json, html, as_list=default_run or len(plans) > 1)


def _render_plans(plans: list[PlanResult], as_json: bool, html: Path | None, as_list: bool) -> None:
    """`plan`'s outputs: the HTML report when asked, then JSON (a list, or the one plan) or the table and warnings."""
    if html:
        from tokenomy.report.html import plan_report

        plan_report(plans, html)
    if as_json:
        emit_json(plans if as_list else plans[0])
        return
    from rich.markup import escape

    from tokenomy.report.tables import INTERVALS_LEGEND, plan_table

    console.print(plan_table(plans))
    if any(p.get("intervals_80") for p in plans):
        console.print(escape(INTERVALS_LEGEND), style="dim", highlight=False)
    for p in plans:
        for warning in p.get("warnings", []):
            err_console.print(f"[yellow]warning:[/] {escape(str(p['precision']))}: {escape(str(warning))}")
    for note in dict.fromkeys(n for p in plans for n in p.get("notes", [])):
        err_console.print(f"note: {escape(note)}")
    if html:
        console.print(f"report written to {html}")


@app.command()
def simulate(
    model: opt.Model = "llama-3.1-8b",
    gpu: opt.Gpu = DEFAULT_GPU,
    tp: opt.Tp = None,
    pp: opt.Pp = 1,
    precision: opt.Precision = "native",
    kv_precision: opt.KvPrecision = "auto",
    engine: opt.Engine = "vllm",
    accelerators_file: opt.AcceleratorsFile = None,
    isl: opt.Isl = "512",
    osl: sc.Osl = "256",
    rate: opt.Rate = None,
    burstiness: opt.Burstiness = 1.0,
    concurrency: opt.Concurrency = None,
    num_requests: sc.NumRequests = 1000,
    trace: opt.Trace = None,
    time_scale: opt.TimeScale = 1.0,
    turns: opt.Turns = None,
    think_s: opt.ThinkS = "0",
    system_prompt_tokens: opt.SystemPromptTokens = 0,
    system_prompts: opt.SystemPrompts = 1,
    daily_rates: sc.DailyRates = None,
    classes: sc.Classes = None,
    seed: opt.Seed = 0,
    scheduler: sc.Scheduler = "chunked",
    kv: sc.Kv = "paged",
    block_size: sc.BlockSize = 16,
    kv_admission: sc.KvAdmission = None,
    max_num_seqs: sc.MaxNumSeqs = None,
    max_batched_tokens: sc.MaxBatchedTokens = None,
    prefix_caching: sc.PrefixCaching = True,
    draft_model: sc.DraftModel = None,
    draft_tokens: sc.DraftTokens = 4,
    acceptance: sc.Acceptance = 0.7,
    exact: sc.Exact = False,
    slo_ttft: sc.SloTtft = None,
    slo_tpot: sc.SloTpot = None,
    slo_expr: sc.SloExpr = None,
    find_capacity: sc.FindCapacity = False,
    fleet: sc.FleetFile = None,
    compare_day: sc.CompareDay = False,
    sweep_rates: sc.SweepRates = None,
    executor: sc.Executor = "local",
    as_json: sc.AsJson = False,
    html: sc.Html = None,
    requests_csv: sc.RequestsCsv = None,
) -> None:
    """Replay a workload on one replica or a fleet: latency percentiles, throughput, goodput, KV, cost.

    With no --rate, --concurrency, --trace or --daily-rates it runs offline (every request at t=0).
    """
    sc.simulate_command(sc.SimulateOptions(**locals()))


@app.command()
def validate(
    file: Annotated[
        Path | None, typer.Argument(help="measurement CSV (schema in docs/design.md); default: every shipped file")
    ] = None,
    engine_profile: Annotated[
        str | None, typer.Option(help="use this profile for every row (default: the row's engine)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    worst: Annotated[int, typer.Option(help="list the N rows with the largest error")] = 5,
    strict: Annotated[bool, typer.Option(help="a broken or unpredictable row is an error, not skipped")] = False,
    cv: Annotated[
        bool, typer.Option("--cv", help="leave-one-group-out cross-validation of the fitted profiles (minutes)")
    ] = False,
) -> None:
    """Predict every row of a measurement file and report the error per metric, with 80% intervals."""
    from tokenomy.cli.validating import run_validate_command

    try:
        result = run_validate_command(file, engine_profile, as_json, worst, strict, cv, console, errors.err_console)
    except CatalogError as exc:
        fail(str(exc))
        return
    if as_json:
        emit_json(result)


@app.command()
def calibrate(
    file: Annotated[Path | None, typer.Argument(help="measurement CSV to fit to (not with --host)")] = None,
    engine: Annotated[str, typer.Option(help="fit the rows of this engine (and save as its profile)")] = "tensorrt-llm",
    output: Annotated[
        Path | None, typer.Option(help="where to write the profile JSON, or with --host the YAML (default: print it)")
    ] = None,
    all_engines: Annotated[bool, typer.Option("--all-rows", help="fit to every row whatever its engine")] = False,
    host: Annotated[bool, typer.Option("--host", help="measure this machine into an accelerators-YAML entry")] = False,
    threads: Annotated[int | None, typer.Option(help="--host: threads to measure on (default: half the CPUs)")] = None,
    usd_per_hour: Annotated[float, typer.Option(help="--host: the host's price per hour")] = 0.0,
    host_id: Annotated[str, typer.Option(help="--host: the entry's id (--gpu ID)")] = "host",
    engine_kernels: Annotated[
        str, typer.Option(help="--host: time llama.cpp's own kernels on synthetic models (auto, on, off)")
    ] = "auto",
    accelerators_file: opt.AcceleratorsFile = None,
) -> None:
    """Fit an engine profile's efficiencies and overheads to measurements, or measure this host (--host)."""
    if host or file is None:
        _calibrate_host(file, host, output, threads, usd_per_hour, host_id, engine_kernels)
        return
    from tokenomy.calibrate.measurements import read_measurement_file
    from tokenomy.catalog.accelerators import use_user_file
    from tokenomy.catalog.profiles import load_profile, profile_name_for

    try:
        if accelerators_file:
            use_user_file(str(accelerators_file))
        read = read_measurement_file(file)
        base = load_profile(engine)
    except CatalogError as exc:
        fail(str(exc))
        return
    # a row counts for the profile its engine runs with on its accelerator (vllm rows on MI300X: vllm-rocm; sglang
    # rows there: sglang-rocm)
    chosen = read.rows if all_engines else [r for r in read.rows if profile_name_for(r.engine, r.gpu) == base.name]
    fitted = _fit_profile(base, chosen, [str(p) for p in read.broken], file.name)
    _write_profile(fitted, output)


def _calibrate_host(
    file: Path | None, host: bool, output: Path | None, threads: int | None, usd: float, host_id: str, kernels: str
) -> None:
    """`calibrate --host`: measure this machine into an accelerators-YAML entry (tokenomy.cli.hostcal)."""
    from tokenomy.cli.hostcal import calibrate_host

    if not host or file is not None:
        fail("give a measurement FILE to fit, or --host to measure this machine (not both)")
    try:
        calibrate_host(output, threads, usd, host_id, console, kernels)
    except ValueError as exc:
        fail(str(exc))


def _fit_profile(base: EngineProfile, chosen: list[Measurement], broken: list[str], file_name: str) -> EngineProfile:
    """The profile fitted to the chosen rows (calibrate.fit), broken rows and unknown accelerators warned about."""
    from rich.markup import escape

    from tokenomy.calibrate.fit import calibrate_profile
    from tokenomy.catalog.accelerators import unknown_accelerators

    for problem in broken:
        errors.err_console.print(f"[yellow]skipped broken row:[/] {escape(problem)}")
    unknown = unknown_accelerators([r.gpu for r in chosen])
    hint = (
        f"; rows on unknown accelerator(s) {', '.join(repr(g) for g in unknown)} cannot be predicted: give "
        "--accelerators FILE (e.g. from calibrate --host) or set $TOKENOMY_ACCELERATORS"
        if unknown
        else ""
    )
    if unknown:
        errors.err_console.print(f"[yellow]warning:[/] {escape(hint[2:])}")
    try:
        with console.status(f"fitting {base.name} to {len(chosen)} rows…"):
            fitted = calibrate_profile(base, chosen)
    except ValueError as exc:
        fail(f"{exc}{hint}")
    return fitted.with_values(fitted_on=f"{file_name}: {fitted.fit['rows']} rows")


def _write_profile(fitted: EngineProfile, output: Path | None) -> None:
    """The fitted parameters on stderr, the profile JSON to --output (or stdout)."""
    from rich.markup import escape

    from tokenomy.calibrate.fit import parameter_lines

    for line in parameter_lines(fitted):
        errors.err_console.print(escape(line))
    text = json.dumps(fitted.to_dict(), indent=2)
    if output:
        output.write_text(text + "\n")
        console.print(
            f"profile written to {output}: median APE {fitted.fit['median_ape']:.1%} on {fitted.fit['rows']} rows"
        )
    else:
        sys.stdout.write(text + "\n")


@app.command()
def catalog(
    what: Annotated[str, typer.Argument(help="models, gpus, apis or engines")] = "models",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the models, accelerators, API prices or engine profiles tokenomy knows."""
    from tokenomy.catalog.listing import catalog_listing

    try:
        listing = catalog_listing(what)
    except CatalogError as exc:
        fail(str(exc))
        return
    if as_json:
        emit_json(listing.records())
        return
    from rich.measure import Measurement

    from tokenomy.report.tables import list_table

    table = list_table(listing.title, listing.columns, listing.rows)
    # As wide as the table needs: an id is never cut or folded (a narrow terminal soft-wraps the lines instead).
    width = max(console.width, Measurement.get(console, console.options.update_width(10_000), table).maximum)
    Console(width=width, emoji=False).print(table)


from tokenomy.cli.bench import bench_command  # noqa: E402 (options and logic live in cli/bench.py)

app.command(name="bench")(bench_command)

from tokenomy.cli.gateway import gateway_app, ledger_app  # noqa: E402

app.add_typer(gateway_app, name="gateway")
app.add_typer(ledger_app, name="ledger")

from tokenomy.cli.watch import watch_command  # noqa: E402 (options and logic live in cli/watch.py)

app.command(name="watch")(watch_command)

from tokenomy.cli.replay import replay_command  # noqa: E402 (options and logic live in cli/replay.py)

app.command(name="replay")(replay_command)


# twin's options that take more than a line to declare
BusyWait = Annotated[
    bool, typer.Option(help="spin between steps instead of sleeping: the most even token timing, one CPU busy")
]
FailMode = Annotated[str | None, typer.Option("--fail", help="fault to inject: refuse, http500, cut, stall")]
AnswerPassRate = Annotated[
    float | None, typer.Option(help="answer evaluation-set prompts, correctly with this probability")
]
AnswerPassRateByType = Annotated[str | None, typer.Option(help="per task type, e.g. 'arithmetic=0.5,code=0.9'")]


@app.command()
def twin(
    model: opt.Model = "llama-3.1-8b",
    gpu: opt.Gpu = DEFAULT_GPU,
    tp: opt.Tp = None,
    pp: opt.Pp = 1,
    precision: opt.Precision = "native",
    kv_precision: opt.KvPrecision = "auto",
    engine: opt.Engine = "vllm",
    accelerators_file: opt.AcceleratorsFile = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)")] = 8000,
    speedup: Annotated[float, typer.Option(help="run K times faster than real time")] = 1.0,
    busy_wait: BusyWait = False,
    fail_mode: FailMode = None,
    after_tokens: Annotated[int, typer.Option(help="cut/stall after this many output tokens")] = 0,
    served_model_name: Annotated[str | None, typer.Option(help="model name clients must send")] = None,
    scheduler: Annotated[str, typer.Option(help="static, continuous (prefill first) or chunked")] = "chunked",
    kv: Annotated[str, typer.Option(help="paged or contiguous (max-length reservation)")] = "paged",
    block_size: Annotated[int, typer.Option(help="paged KV block size in tokens")] = 16,
    kv_admission: sc.KvAdmission = None,
    max_num_seqs: Annotated[int | None, typer.Option(help="scheduler limit on running sequences")] = None,
    max_batched_tokens: Annotated[int | None, typer.Option(help="token budget per step")] = None,
    default_max_tokens: Annotated[int, typer.Option(help="output tokens when a request sets no max_tokens")] = 256,
    max_model_len: Annotated[int, typer.Option(help="context limit (0: the model's)")] = 0,
    seed: opt.Seed = 0,
    answer_pass_rate: AnswerPassRate = None,
    answer_pass_rate_by_type: AnswerPassRateByType = None,
) -> None:
    """Serve an OpenAI-compatible stand-in for a deployment: the simulator's scheduler in real time, no GPU."""
    from tokenomy.cli.twin import parse_pass_rates, twin_server
    from tokenomy.sim.replica import ReplicaConfig

    deployment = dict(model=model, gpu=gpu, tp=tp, pp=pp, precision=precision, kv_precision=kv_precision)
    try:
        answers = (answer_pass_rate, parse_pass_rates(answer_pass_rate_by_type))
        replica = ReplicaConfig(scheduler, kv, block_size, max_num_seqs, max_batched_tokens, kv_admission=kv_admission)
        spec = opt.deployment_spec(accelerators_file, **deployment, engine=engine)
        server = twin_server(
            spec,
            speedup,
            fail_mode,
            after_tokens,
            served_model_name,
            replica,
            default_max_tokens,
            max_model_len,
            seed,
            *answers,
            busy_wait=busy_wait,
        )
    except (CatalogError, ValueError) as exc:
        fail(str(exc))
        return
    _serve_twin(server, host, port)


def _serve_twin(server: TwinServer, host: str, port: int) -> None:
    """Serve the twin until stopped; a port in use exits 3, as the gateway does."""
    from tokenomy.cli.twin import serve
    from tokenomy.twin.server import AddressInUse

    try:
        serve(server, host, port, console)
    except AddressInUse as exc:
        fail(f"--port {port}: {exc.strerror}", errors.EXIT_CANNOT_LISTEN)


@app.command(name="plan-chain")
def plan_chain(
    tier: Annotated[
        list[str] | None, typer.Option(help="NAME:usd=…,latency=…,pass=… (cheapest first; repeat per tier)")
    ] = None,
    from_ledger: Annotated[Path | None, typer.Option(help="gateway.yaml: measure the tiers from its ledger")] = None,
    request_class: Annotated[str, typer.Option("--class", help="request class, with --from-ledger")] = "complex",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Expected cost and latency per valid answer of an escalation chain, and the break-even pass rate."""
    from tokenomy.advise.chain import chain_report, ledger_tiers
    from tokenomy.cli.chain import chain_lines, parse_tier_spec

    try:
        if from_ledger is not None:
            tiers = ledger_tiers(from_ledger, request_class)
        else:
            tiers = [parse_tier_spec(spec) for spec in tier or []]
        if not tiers:
            raise ValueError("give --tier at least once, or --from-ledger gateway.yaml")
        report = chain_report(tiers)
    except (CatalogError, ValueError) as exc:
        fail(str(exc))
        return
    if as_json:
        emit_json(report.to_json())
        return
    for line in chain_lines(report):
        typer.echo(line)


@app.command()
def advise(
    workload: Annotated[Path | None, typer.Argument(help="workload YAML (default: the built-in example)")] = None,
    requests_per_day: Annotated[float | None, typer.Option(help="override the daily volume (keeps the shape)")] = None,
    models: Annotated[str | None, typer.Option(help="comma-separated candidate models")] = None,
    gpus: Annotated[str | None, typer.Option(help="comma-separated candidate accelerators")] = None,
    precisions: Annotated[str | None, typer.Option(help="comma-separated weight precisions")] = None,
    apis: Annotated[str | None, typer.Option(help="comma-separated APIs (provider/model)")] = None,
    verify: Annotated[int, typer.Option(help="candidates to verify with the simulator")] = 20,
    sim_requests: Annotated[int, typer.Option(help="requests per verification run")] = 3000,
    seed: opt.Seed = 0,
    executor: Annotated[str, typer.Option(help="verification: local (processes) or ray")] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    html: Annotated[Path | None, typer.Option(help="write a self-contained HTML report")] = None,
    emit_gateway_config: Annotated[Path | None, typer.Option(help="write a gateway config for the plan")] = None,
    from_ledger: Annotated[
        str | None,
        typer.Option(help="size the reserved baseline from history: a gateway ledger, bench --requests-jsonl or trace"),
    ] = None,
    time_scale: Annotated[float, typer.Option(help="with --from-ledger: stretch the history's arrivals")] = 1.0,
) -> None:
    """The cheapest deployment that meets the SLOs and quality floors: tiers, routes, replicas per hour, $."""
    run_opts = (executor, verify, sim_requests, seed)
    if from_ledger is not None:
        from tokenomy.cli.history import advise_from_history_command

        candidates = dict(models=models, gpus=gpus, precisions=precisions, apis=apis)
        scaling = dict(source=from_ledger, time_scale=time_scale, requests_per_day=requests_per_day)
        advise_from_history_command(workload, run_opts, as_json, emit_gateway_config, html, **scaling, **candidates)
        return
    from tokenomy.cli.advising import load_with_overrides

    try:
        wl = load_with_overrides(workload, requests_per_day, models, gpus, precisions, apis)
        report = _advise_with_progress(wl, run_opts, as_json)
    except CatalogError as exc:
        fail(str(exc).replace("\n", " "))
        return
    _render_advice(report, wl, as_json, html, emit_gateway_config)


def _advise_with_progress(wl: Workload, run_opts: tuple[str, int, int, int], as_json: bool) -> AdviceReport:
    """The advisor's report, with a transient progress bar on stderr (none with --json)."""
    from rich.progress import Progress

    from tokenomy.cli.advising import run

    with Progress(console=err_console, transient=True, disable=as_json) as progress:
        task = progress.add_task("simulating candidates", total=None)
        return run(wl, *run_opts, lambda d, t: progress.update(task, completed=d, total=t))


def _render_advice(
    report: AdviceReport, wl: Workload, as_json: bool, html: Path | None, gateway_config: Path | None
) -> None:
    """`advise`'s outputs: the gateway config and HTML files, then JSON or the tables and lines."""
    if gateway_config:
        from tokenomy.advise.gateway import write_gateway_config

        write_gateway_config(report, wl, gateway_config)
    if html:
        from tokenomy.report.advise_html import advise_report

        html.write_text(advise_report(report))
    if as_json:
        emit_json(report)
        return
    from tokenomy.report import advise_tables as t

    console.print(t.plan_table(report))
    for line in t.summary_lines(report) + t.explain_lines(report):
        console.print(line)
    console.print(t.hours_table(report))
    console.print(t.pareto_table(report))
    console.print(t.estimates_table(report))
    for path in (html, gateway_config):
        if path:
            console.print(f"written: {path}")


if __name__ == "__main__":
    app()
