"""The `tokenomy` command line: thin wrappers that parse options, call the library and print."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tokenomy.catalog.errors import CatalogError
from tokenomy.cli import options as opt

app = typer.Typer(add_completion=False, no_args_is_help=False, help="What every LLM token costs.")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

DEFAULT_MODEL = "llama-3.1-70b"
DEFAULT_GPU = "H100-SXM"
DEFAULT_PRECISIONS = ("fp16", "fp8", "int4")
DEFAULT_GPUS = 8  # one HGX node: each precision gets the smallest tp that serves well, replicated


def fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context) -> None:
    """tokenomy: plan, validate and calibrate LLM serving costs."""
    if ctx.invoked_subcommand is None:
        console.print(ctx.get_help())


@app.command()
def plan(
    model: Annotated[str | None, typer.Option(help="catalogue model id or path to a config.json")] = None,
    gpu: Annotated[str, typer.Option(help="accelerator id, e.g. H100-SXM")] = DEFAULT_GPU,
    gpus: Annotated[int | None, typer.Option(help="GPUs in total (replicas = gpus / (tp × pp))")] = None,
    tp: Annotated[int | None, typer.Option(help="tensor-parallel degree (default: smallest that fits)")] = None,
    pp: Annotated[int, typer.Option(help="pipeline-parallel degree")] = 1,
    precision: Annotated[
        str | None,
        typer.Option(help="weights: bf16, fp16, fp8, int8, int4, nvfp4, mxfp4, q4_1…; comma-separated to compare"),
    ] = None,
    kv_precision: Annotated[str, typer.Option(help="KV cache: auto, bf16, fp8, int8, fp4")] = "auto",
    isl: Annotated[int, typer.Option(help="input (prompt) tokens per request")] = 1024,
    osl: Annotated[int, typer.Option(help="output tokens per request")] = 256,
    engine: Annotated[
        str, typer.Option(help="engine profile: vllm, sglang, tensorrt-llm, generic, or a JSON file")
    ] = "vllm",
    utilisation: Annotated[float, typer.Option(help="mean load as a fraction of max throughput, for $/Mtok")] = 0.7,
    pricing: Annotated[str, typer.Option(help="on_demand or reserved GPU price")] = "on_demand",
    usd_per_gpu_hour: Annotated[float | None, typer.Option(help="override the catalogue GPU price")] = None,
    max_context: Annotated[int, typer.Option(help="static reservation length (default min(model max, 32768))")] = 0,
    accelerators_file: Annotated[
        Path | None, typer.Option("--accelerators", help="YAML file adding accelerators")
    ] = None,
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
        gpus=gpus or (DEFAULT_GPUS if default_run else None),
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
    if html:
        from tokenomy.report.html import plan_report

        plan_report(plans, html)
    if as_json:
        emit_json(plans if (default_run or len(plans) > 1) else plans[0])
        return
    from tokenomy.report.tables import plan_table

    console.print(plan_table(plans))
    for p in plans:
        for warning in p.get("warnings", []):
            err_console.print(f"[yellow]warning:[/] {p['precision']}: {warning}")
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
    osl: Annotated[str, typer.Option(help="output tokens, same forms as --isl")] = "256",
    rate: opt.Rate = None,
    burstiness: opt.Burstiness = 1.0,
    concurrency: opt.Concurrency = None,
    num_requests: Annotated[int, typer.Option(help="requests to simulate")] = 1000,
    trace: opt.Trace = None,
    time_scale: opt.TimeScale = 1.0,
    daily_rates: Annotated[str | None, typer.Option(help="24 comma-separated hourly rates (req/s): one day")] = None,
    classes: Annotated[str | None, typer.Option(help="class mix for fleets, e.g. chat=0.7,batch=0.3")] = None,
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same run")] = 0,
    scheduler: Annotated[str, typer.Option(help="static, continuous (prefill first) or chunked")] = "chunked",
    kv: Annotated[str, typer.Option(help="paged or contiguous (max-length reservation)")] = "paged",
    block_size: Annotated[int, typer.Option(help="paged KV block size in tokens")] = 16,
    max_num_seqs: Annotated[int | None, typer.Option(help="scheduler limit on running sequences")] = None,
    max_batched_tokens: Annotated[int | None, typer.Option(help="token budget per step")] = None,
    prefix_caching: Annotated[bool, typer.Option(help="reuse cached prefix blocks (traces with prefix ids)")] = True,
    draft_model: Annotated[str | None, typer.Option(help="speculative decoding with this draft model")] = None,
    draft_tokens: Annotated[int, typer.Option(help="speculative decoding: draft tokens per step (γ)")] = 4,
    acceptance: Annotated[float, typer.Option(help="speculative decoding: per-token acceptance (α)")] = 0.7,
    exact: Annotated[bool, typer.Option(help="take every step one by one (reference mode; slower)")] = False,
    slo_ttft: Annotated[float | None, typer.Option(help="SLO on TTFT, seconds (for goodput)")] = None,
    slo_tpot: Annotated[float | None, typer.Option(help="SLO on TPOT, seconds (for goodput)")] = None,
    fleet: Annotated[Path | None, typer.Option(help="fleet YAML: tiers (GPU or API) and routes per class")] = None,
    compare_day: Annotated[bool, typer.Option(help="with --fleet: hybrid vs all-API vs all-self-hosted")] = False,
    sweep_rates: Annotated[str | None, typer.Option(help="comma-separated rates: latency-throughput curve")] = None,
    executor: Annotated[str, typer.Option(help="sweep executor: local (processes) or ray")] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    html: Annotated[Path | None, typer.Option(help="write a self-contained HTML report")] = None,
    requests_csv: Annotated[Path | None, typer.Option(help="write one row per request")] = None,
) -> None:
    """Replay a workload on one replica or a fleet: latency percentiles, throughput, goodput, KV, cost."""
    from tokenomy.cli.simulating import (
        check_runnable,
        deployment_for,
        load_fleet,
        parse_classes,
        parse_floats,
        write_requests_csv,
    )
    from tokenomy.report.tables import comparison_table, simulation_lines, simulation_table, tiers_table
    from tokenomy.sim import fleet as fleet_sim
    from tokenomy.sim.replica import ReplicaConfig, SpecDecoding
    from tokenomy.sim.run import SLO
    from tokenomy.sim.run import simulate as run_simulation
    from tokenomy.sim.sweep import sweep_rates as run_sweep
    from tokenomy.sim.workload import TraceError, WorkloadSpec, build_workload

    slo = SLO(ttft_s=slo_ttft, tpot_s=slo_tpot)
    try:
        spec = WorkloadSpec(
            isl=isl,
            osl=osl,
            rate=rate,
            burstiness=burstiness,
            concurrency=concurrency,
            num_requests=num_requests,
            trace=trace,
            time_scale=time_scale,
            daily_rates=parse_floats(daily_rates, "--daily-rates"),
            classes=parse_classes(classes),
            seed=seed,
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
        spec_dec = None
        if draft_model:
            draft = deployment_for(draft_model, gpu, d.tp, 1, "native", "auto", engine)
            spec_dec = SpecDecoding(draft, draft_tokens, acceptance)
        config = ReplicaConfig(
            scheduler, kv, block_size, max_num_seqs, max_batched_tokens, prefix_caching, spec_dec, exact
        )
        workload = build_workload(spec)
        fleet_spec = load_fleet(fleet, config) if fleet else None
        if fleet_spec is None:
            check_runnable(d, workload, slo)
    except (CatalogError, TraceError, ValueError) as exc:
        fail(str(exc).replace("\n", " "))
        return
    slo_arg = slo if slo.given else None
    sweep = None
    if sweep_rates:
        rates = parse_floats(sweep_rates, "--sweep-rates") or []
        with console.status(f"sweeping {len(rates)} rates on {executor}"):
            sweep = run_sweep(d, spec, config, rates, slo_arg, executor)
    result = None
    if fleet_spec is not None:
        with console.status("simulating the fleet"):
            if compare_day:
                variants = fleet_sim.compare_day(fleet_spec, workload, seed, slo_arg)
                summary = variants["hybrid"]
                summary["comparison"] = {k: v for k, v in variants.items() if k != "hybrid"}
            else:
                run = fleet_sim.simulate_fleet(fleet_spec, workload, seed, slo_arg)
                result, summary = run.result, run.summary
    else:
        with console.status(f"simulating {len(workload):,} requests"):
            result = run_simulation(d, workload, config, seed)
            summary = result.summary(slo_arg)
        summary["deployment"] = {
            "model": d.model.id,
            "gpu": d.gpu.id,
            "tp": d.tp,
            "pp": d.pp,
            "precision": d.fmt.name,
            "engine": d.profile.name,
        }
    if sweep is not None:
        summary["sweep"] = sweep
    if requests_csv and result is not None:
        write_requests_csv(result.log, requests_csv)
    if html:
        from tokenomy.report.sim_html import simulation_report

        html.write_text(simulation_report(summary, result, sweep))
    if as_json:
        emit_json(summary)
        return
    console.print(simulation_table(summary))
    for line in simulation_lines(summary):
        console.print(line)
    if "tiers" in summary:
        console.print(tiers_table(summary))
    if "comparison" in summary:
        console.print(comparison_table({"hybrid": summary, **summary["comparison"]}))
    for reason, n in summary.get("rejected_reasons", {}).items():
        err_console.print(f"[yellow]warning:[/] {n:,} requests rejected: {reason}")
    if sweep:
        for s in sweep:
            console.print(
                f"rate {s['rate']:g} req/s: {s['throughput']['output_tokens_per_s']:,.0f} tok/s, "
                f"TTFT p99 {s['ttft_s']['p99'] * 1e3:,.0f} ms, ITL p99 {s['itl_s']['p99'] * 1e3:,.1f} ms"
            )
    for path in (html, requests_csv):
        if path:
            console.print(f"written: {path}")


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="measurement CSV (schema in DESIGN.md)")],
    engine_profile: Annotated[
        str | None, typer.Option(help="use this profile for every row (default: the row's engine)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    worst: Annotated[int, typer.Option(help="list the N rows with the largest error")] = 5,
) -> None:
    """Predict every row of a measurement file and report the error per metric."""
    from tokenomy.calibrate.measurements import read_measurements
    from tokenomy.calibrate.validate import validate as run_validate
    from tokenomy.calibrate.validate import worst_rows
    from tokenomy.catalog.profiles import load_profile
    from tokenomy.report.tables import validate_table

    try:
        rows = read_measurements(file)
        profile = load_profile(engine_profile) if engine_profile else None
    except CatalogError as exc:
        fail(str(exc))
        return
    result = run_validate(rows, profile)
    if as_json:
        emit_json(result)
        return
    console.print(validate_table(result))
    for r in worst_rows(result, worst):
        console.print(
            f"  worst: {r['id']} (line {r['line']}) {r['engine']} {r['model']} {r['gpu']} tp{r['tp']} {r['precision']} "
            f"{r['isl']}/{r['osl']} {r['metric']}: predicted {r['predicted']:.4g}, measured {r['measured']:.4g} "
            f"({r['ape']:.0%})"
        )


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
) -> None:
    """Fit an engine profile's efficiencies and overheads to measurements, or measure this host (--host)."""
    if host or file is None:
        from tokenomy.cli.hostcal import calibrate_host

        if not host or file is not None:
            fail("give a measurement FILE to fit, or --host to measure this machine (not both)")
        try:
            calibrate_host(output, threads, usd_per_hour, host_id, console)
        except ValueError as exc:
            fail(str(exc))
        return
    from tokenomy.calibrate.fit import fit_profile
    from tokenomy.calibrate.measurements import read_measurements
    from tokenomy.catalog.profiles import load_profile

    try:
        rows = read_measurements(file)
        base = load_profile(engine)
    except CatalogError as exc:
        fail(str(exc))
        return
    chosen = rows if all_engines else [r for r in rows if r.engine == base.name]
    try:
        with console.status(f"fitting {base.name} to {len(chosen)} rows…"):
            fitted = fit_profile(base, chosen)
    except ValueError as exc:
        fail(str(exc))
        return
    fitted = fitted.with_values(fitted_on=f"{file.name}: {fitted.fit['rows']} rows")
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
    from tokenomy.cli.planning import catalog_listing

    try:
        title, columns, rows = catalog_listing(what)
    except CatalogError as exc:
        fail(str(exc))
        return
    if as_json:
        emit_json([dict(zip(columns, r, strict=True)) for r in rows])
        return
    from tokenomy.report.tables import list_table

    console.print(list_table(title, columns, rows))


from tokenomy.cli.bench import bench_command  # noqa: E402 (options and logic live in cli/bench.py)

app.command(name="bench")(bench_command)

from tokenomy.cli.gateway import gateway_app, ledger_app  # noqa: E402

app.add_typer(gateway_app, name="gateway")
app.add_typer(ledger_app, name="ledger")


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
    busy_wait: Annotated[
        bool, typer.Option(help="spin between steps instead of sleeping: the most even token timing, one CPU busy")
    ] = False,
    fail_mode: Annotated[
        str | None, typer.Option("--fail", help="fault to inject: refuse, http500, cut, stall")
    ] = None,
    after_tokens: Annotated[int, typer.Option(help="cut/stall after this many output tokens")] = 0,
    served_model_name: Annotated[str | None, typer.Option(help="model name clients must send")] = None,
    scheduler: Annotated[str, typer.Option(help="static, continuous (prefill first) or chunked")] = "chunked",
    kv: Annotated[str, typer.Option(help="paged or contiguous (max-length reservation)")] = "paged",
    block_size: Annotated[int, typer.Option(help="paged KV block size in tokens")] = 16,
    max_num_seqs: Annotated[int | None, typer.Option(help="scheduler limit on running sequences")] = None,
    max_batched_tokens: Annotated[int | None, typer.Option(help="token budget per step")] = None,
    default_max_tokens: Annotated[int, typer.Option(help="output tokens when a request sets no max_tokens")] = 256,
    max_model_len: Annotated[int, typer.Option(help="context limit (0: the model's)")] = 0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    answer_pass_rate: Annotated[
        float | None, typer.Option(help="answer evaluation-set prompts, correctly with this probability")
    ] = None,
    answer_pass_rate_by_type: Annotated[
        str | None, typer.Option(help="per task type, e.g. 'arithmetic=0.5,code=0.9'")
    ] = None,
) -> None:
    """Serve an OpenAI-compatible stand-in for a deployment: the simulator's scheduler in real time, no GPU."""
    from tokenomy.cli.twin import parse_pass_rates, serve, twin_server
    from tokenomy.sim.replica import ReplicaConfig

    try:
        answers = (answer_pass_rate, parse_pass_rates(answer_pass_rate_by_type))
        replica = ReplicaConfig(scheduler, kv, block_size, max_num_seqs, max_batched_tokens)
        server = twin_server(
            model,
            gpu,
            tp,
            pp,
            precision,
            kv_precision,
            engine,
            str(accelerators_file) if accelerators_file else None,
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
        fail(str(exc).replace("\n", " "))
        return
    serve(server, host, port, console)


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
    from tokenomy.cli.chain import chain_lines, chain_report, parse_tier_spec, tiers_from_ledger

    try:
        if from_ledger is not None:
            from tokenomy.gateway.config import load_config
            from tokenomy.gateway.ledger import Database

            cfg = load_config(from_ledger)
            tiers = tiers_from_ledger(Database(cfg.ledger.url, cfg.state_dir).attempts(), request_class)
        else:
            tiers = [parse_tier_spec(spec) for spec in tier or []]
        if not tiers:
            raise ValueError("give --tier at least once, or --from-ledger gateway.yaml")
        report = chain_report(tiers)
    except (CatalogError, ValueError) as exc:
        fail(str(exc))
        return
    if as_json:
        emit_json(report)
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
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    executor: Annotated[str, typer.Option(help="verification: local (processes) or ray")] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    html: Annotated[Path | None, typer.Option(help="write a self-contained HTML report")] = None,
    emit_gateway_config: Annotated[Path | None, typer.Option(help="write a gateway config for the plan")] = None,
) -> None:
    """The cheapest deployment that meets the SLOs and quality floors: tiers, routes, replicas per hour, $."""
    from rich.progress import Progress

    from tokenomy.cli.advising import load_with_overrides, run

    try:
        wl = load_with_overrides(workload, requests_per_day, models, gpus, precisions, apis)
        with Progress(console=err_console, transient=True, disable=as_json) as progress:
            task = progress.add_task("simulating candidates", total=None)
            report = run(
                wl, executor, verify, sim_requests, seed, lambda d, t: progress.update(task, completed=d, total=t)
            )
    except CatalogError as exc:
        fail(str(exc).replace("\n", " "))
        return
    if emit_gateway_config:
        from tokenomy.advise.gateway import write_gateway_config

        write_gateway_config(report, wl, emit_gateway_config)
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
    for path in (html, emit_gateway_config):
        if path:
            console.print(f"written: {path}")


if __name__ == "__main__":
    app()
