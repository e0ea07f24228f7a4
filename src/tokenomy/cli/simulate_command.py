"""`tokenomy simulate`: its options parsed into specs (deployment, workload, replica settings, fleet), one call
(`tokenomy.sim.summary.SimulateRun.summary` on the simulator, or `tokenomy.bench.simcapacity`'s capacity search),
and its outputs rendered.

The command itself is declared in `tokenomy.cli.main` (one line per option, the aliases below); the simulator is
`tokenomy.sim`, the fleet file `tokenomy.sim.fleetfile`, the day's comparison `tokenomy.sim.fleet.compare_day`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tokenomy.cli.options import WorkloadOptions

if TYPE_CHECKING:
    from tokenomy.costmodel.deployment import Deployment
    from tokenomy.results import RunSummary, SimulateSweep
    from tokenomy.sim.fleet import Fleet
    from tokenomy.sim.replica import ReplicaConfig
    from tokenomy.sim.run import SLO, SimResult
    from tokenomy.sim.workload import Workload, WorkloadSpec

# ---------------------------------------------------------------- options (one line each in the command)

Osl = Annotated[str, typer.Option(help="output tokens, same forms as --isl")]
NumRequests = Annotated[int, typer.Option(help="requests to simulate")]
DailyRates = Annotated[str | None, typer.Option(help="24 comma-separated hourly rates (req/s): one day")]
Classes = Annotated[str | None, typer.Option(help="class mix for fleets, e.g. chat=0.7,batch=0.3")]
Scheduler = Annotated[str, typer.Option(help="static, continuous (prefill first) or chunked")]
Kv = Annotated[str, typer.Option(help="paged or contiguous (max-length reservation)")]
BlockSize = Annotated[int, typer.Option(help="paged KV block size in tokens")]
KvAdmission = Annotated[
    str | None,
    typer.Option(
        help="paged KV: on_demand (when the prompt's blocks are free, preempting when short: vLLM, SGLang) or "
        "full_length (when the whole length fits: TensorRT-LLM); default: the engine's"
    ),
]
MaxNumSeqs = Annotated[int | None, typer.Option(help="scheduler limit on running sequences")]
MaxBatchedTokens = Annotated[int | None, typer.Option(help="token budget per step")]
PrefixCaching = Annotated[bool, typer.Option(help="reuse cached prefix blocks (traces with prefix ids)")]
DraftModel = Annotated[str | None, typer.Option(help="speculative decoding with this draft model")]
DraftTokens = Annotated[int, typer.Option(help="speculative decoding: draft tokens per step (γ)")]
Acceptance = Annotated[float, typer.Option(help="speculative decoding: per-token acceptance (α)")]
Exact = Annotated[bool, typer.Option(help="take every step one by one (reference mode; slower)")]
SloTtft = Annotated[float | None, typer.Option(help="SLO on TTFT, seconds (for goodput)")]
SloTpot = Annotated[float | None, typer.Option(help="SLO on TPOT, seconds (for goodput)")]
SloExpr = Annotated[str | None, typer.Option("--slo", help="with --find-capacity: e.g. 'ttft_p99<=2s,tpot_p99<=50ms'")]
FindCapacity = Annotated[
    bool, typer.Option(help="search the highest Poisson rate meeting --slo (steady-state probes, as bench)")
]
FleetFile = Annotated[Path | None, typer.Option(help="fleet YAML: tiers (GPU or API) and routes per class")]
CompareDay = Annotated[bool, typer.Option(help="with --fleet: hybrid vs all-API vs all-self-hosted")]
SweepRates = Annotated[str | None, typer.Option(help="comma-separated rates: latency-throughput curve")]
Executor = Annotated[str, typer.Option(help="sweep executor: local (processes) or ray")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
Html = Annotated[Path | None, typer.Option(help="write a self-contained HTML report")]
RequestsCsv = Annotated[Path | None, typer.Option(help="write one row per request")]


@dataclass(frozen=True)
class SimulateOptions(WorkloadOptions):
    """The options of `tokenomy simulate`, as given (the parameters of the command, same names)."""

    model: str
    gpu: str
    tp: int | None
    pp: int
    precision: str
    kv_precision: str
    engine: str
    accelerators_file: Path | None
    daily_rates: str | None
    classes: str | None
    seed: int
    scheduler: str
    kv: str
    block_size: int
    kv_admission: str | None
    max_num_seqs: int | None
    max_batched_tokens: int | None
    prefix_caching: bool
    draft_model: str | None
    draft_tokens: int
    acceptance: float
    exact: bool
    slo_ttft: float | None
    slo_tpot: float | None
    slo_expr: str | None
    find_capacity: bool
    fleet: Path | None
    compare_day: bool
    sweep_rates: str | None
    executor: str
    as_json: bool
    html: Path | None
    requests_csv: Path | None


@dataclass(frozen=True)
class SimulateInputs:
    """What the options describe: the replica, the workload (spec and requests), scheduler settings, fleet, rates."""

    d: Deployment
    spec: WorkloadSpec
    workload: Workload
    config: ReplicaConfig
    fleet: Fleet | None
    sweep_rates: list[float]
    slo: SLO


def simulate_command(o: SimulateOptions) -> None:
    """Parse the options into specs, run the simulation (or the capacity search), render it."""
    from tokenomy.catalog.errors import CatalogError
    from tokenomy.cli.main import fail
    from tokenomy.sim.workload import TraceError

    try:
        inputs = simulate_inputs(o)
    except (CatalogError, TraceError, ValueError) as exc:
        fail(exc)
        return
    if o.find_capacity or o.slo_expr:
        find_capacity(inputs, o.slo_expr, o.find_capacity, o.rate, o.as_json)
        return
    summary, result = run_simulation(o, inputs)
    render_simulation(o, summary, result)


def workload_spec(o: SimulateOptions) -> WorkloadSpec:
    """The workload the options describe (a CatalogError naming a bad option)."""
    from tokenomy.cli import simulating as sim_cli

    return sim_cli.workload_spec(
        isl=o.isl,
        osl=o.osl,
        rate=o.rate,
        burstiness=o.burstiness,
        concurrency=o.concurrency,
        num_requests=o.num_requests,
        trace=o.trace,
        time_scale=o.time_scale,
        daily_rates=sim_cli.parse_floats(o.daily_rates, "--daily-rates"),
        classes=sim_cli.parse_classes(o.classes),
        seed=o.seed,
        **o.session_fields(),
    )


def replica_config(o: SimulateOptions, d: Deployment) -> ReplicaConfig:
    """The scheduler and KV settings, with speculative decoding when a draft model is given."""
    from tokenomy.cli import options as opt
    from tokenomy.sim.replica import ReplicaConfig, SpecDecoding

    spec_dec = None
    if o.draft_model:
        draft = opt.deployment_of(o.accelerators_file, model=o.draft_model, gpu=o.gpu, tp=d.tp, engine=o.engine)
        spec_dec = SpecDecoding(draft.deployment, o.draft_tokens, o.acceptance)
    limits = (o.max_num_seqs, o.max_batched_tokens, o.prefix_caching)
    return ReplicaConfig(o.scheduler, o.kv, o.block_size, *limits, spec_dec, o.exact, kv_admission=o.kv_admission)


def simulate_inputs(o: SimulateOptions) -> SimulateInputs:
    """Every spec of the run, checked: bad options raise CatalogError, TraceError or ValueError naming them."""
    from tokenomy.cli import options as opt
    from tokenomy.cli import simulating as sim_cli
    from tokenomy.sim.fleetfile import load_fleet
    from tokenomy.sim.run import SLO
    from tokenomy.sim.summary import check_runnable
    from tokenomy.sim.workload import build_workload

    slo = SLO(ttft_s=o.slo_ttft, tpot_s=o.slo_tpot)
    spec = workload_spec(o)
    rates = sim_cli.parse_floats(o.sweep_rates, "--sweep-rates", positive=True) or []
    sim_cli.check_executor(o.executor)
    deployment = dict(model=o.model, gpu=o.gpu, tp=o.tp, pp=o.pp, precision=o.precision, kv_precision=o.kv_precision)
    d = opt.deployment_of(o.accelerators_file, **deployment, engine=o.engine).deployment
    config = replica_config(o, d)
    workload = build_workload(spec)
    fleet = load_fleet(o.fleet, config) if o.fleet else None
    if fleet is None:
        check_runnable(d, workload, slo)
    return SimulateInputs(d, spec, workload, config, fleet, rates, slo)


def run_simulation(o: SimulateOptions, i: SimulateInputs) -> tuple[RunSummary | SimulateSweep, SimResult | None]:
    """The headline run (one replica, a fleet, or a fleet's day compared) and the sweep, as a summary."""
    from tokenomy.cli.main import console
    from tokenomy.sim.summary import SimulateRun

    run = SimulateRun(i.d, i.spec, i.workload, i.config, i.slo if i.slo.given else None)
    with console.status("simulating"):
        return run.summary(i.fleet, o.compare_day, i.sweep_rates, o.executor)


def render_simulation(o: SimulateOptions, summary: RunSummary | SimulateSweep, result: SimResult | None) -> None:
    """The per-request CSV and the HTML report when asked, then JSON or the terminal view."""
    from tokenomy.cli.main import console, emit_json, err_console

    if o.requests_csv and result is not None:
        from tokenomy.sim.records import write_requests_csv

        write_requests_csv(result.log, o.requests_csv)
    if o.html:
        from tokenomy.report.sim_html import simulation_report

        title = f"tokenomy simulate: {summary['deployment']['description']}"
        o.html.write_text(simulation_report(summary, result, summary.get("sweep"), title))
    if o.as_json:
        emit_json(summary)
        return
    print_simulation(summary)
    for note in summary.get("notes", []):
        err_console.print(f"note: {note}", markup=False, highlight=False)
    for path in (o.html, o.requests_csv):
        if path:
            console.print(f"written: {path}")


def find_capacity(i: SimulateInputs, slo: str | None, find: bool, rate: float | None, as_json: bool) -> None:
    """`simulate --slo … --find-capacity`: the capacity search on the simulator (tokenomy.bench.simcapacity)."""
    from rich.markup import escape

    from tokenomy.bench.search import SloError
    from tokenomy.bench.simcapacity import find_capacity_summary
    from tokenomy.cli.capacity import capacity_lines
    from tokenomy.cli.main import console, emit_json, fail

    if not (slo and find):
        fail("--slo and --find-capacity go together (--slo-ttft/--slo-tpot set goodput limits for one run)")
    try:
        with console.status("searching the capacity"):
            summary = find_capacity_summary(i.d, i.spec, i.config, slo or "", rate)
    except (SloError, ValueError) as exc:
        fail(exc)
        return
    if as_json:
        emit_json(summary)
        return
    for line in capacity_lines(summary):
        console.print(escape(line), highlight=False)


def print_simulation(summary: RunSummary | SimulateSweep) -> None:
    """The terminal view of `simulate`: what ran, latency table, headline lines, tiers, comparison, sweep."""
    from rich.markup import escape

    from tokenomy.cli.main import console, err_console
    from tokenomy.report import tables

    console.print(escape(f"deployment: {summary['deployment']['description']}"), highlight=False)
    console.print(escape(f"workload: {summary['workload']['description']}"), highlight=False)
    if summary["workload"].get("offline") and "requests" in summary:
        console.print(
            "offline run: every request arrives at t=0 (a batch job); give --rate or --concurrency for a load",
            style="yellow",
            highlight=False,
        )
    if "requests" in summary:
        console.print(tables.simulation_table(summary))
        for line in tables.simulation_lines(summary):
            console.print(escape(line), highlight=False)
        if summary.get("intervals_80"):
            console.print(escape(tables.SIM_INTERVALS_LEGEND), style="dim", highlight=False)
    if "tiers" in summary:
        console.print(tables.tiers_table(summary))
    if "comparison" in summary:
        console.print(tables.comparison_table({"hybrid": summary, **summary["comparison"]}))
    for reason, n in summary.get("rejected_reasons", {}).items():
        err_console.print(f"[yellow]warning:[/] {n:,} requests rejected: {escape(str(reason))}")
    if summary.get("sweep"):
        console.print(tables.sweep_table(summary["sweep"]))
