"""The summary of a `tokenomy simulate`: what ran (deployment and workload, in fields and in words), the headline
run (one replica, a fleet, or a fleet's day compared), the share of the replica's capacity it used, the sweep.

The CLI (tokenomy.cli.simulate_command) parses the options into a `SimulateRun` and renders what
`SimulateRun.summary` returns: a `RunSummary`, or a `SimulateSweep` when only a sweep was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.profiles import profile_notes
from tokenomy.costmodel.deployment import Deployment, serving_constraints
from tokenomy.costmodel.intervals import figure_intervals, interval_notes
from tokenomy.costmodel.perf import max_batch, single_stream, steady_state
from tokenomy.results import RunSummary, SimulateSweep, plain
from tokenomy.sim.fleet import Fleet
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import SLO, SimResult
from tokenomy.sim.workload import Workload, WorkloadSpec


def check_runnable(d: Deployment, workload: Workload, slo: SLO | None) -> None:
    """Refuse configurations no load can serve: a model that does not fit, an SLO below the unloaded latency."""
    mem = d.memory
    refusals = [c for c in serving_constraints(d, 1, 0) if "context" not in c]
    if refusals:
        raise CatalogError(f"{d.model.id} on {d.n_gpus}× {d.gpu.id}: {'; '.join(refusals)}")
    if not mem.fits:
        need = (mem.weights_bytes + mem.activation_bytes + mem.runtime_overhead_bytes) / 2**30
        raise CatalogError(
            f"{d.model.id} at {d.fmt.name} does not fit {d.n_gpus}× {d.gpu.id}: weights and runtime need "
            f"{need:.1f} GiB, the engine may use {mem.usable_bytes / 2**30:.1f} GiB; raise --tp or lower --precision"
        )
    if slo is None or not len(workload):
        return
    isl = int(np.median(workload.input_tokens))
    osl = int(np.median(workload.output_tokens))
    ttft, itl = single_stream(d, isl, osl)
    if slo.ttft_s is not None and slo.ttft_s < ttft:
        raise CatalogError(
            f"--slo-ttft {slo.ttft_s * 1e3:.1f} ms is below the unloaded TTFT of this deployment "
            f"({ttft * 1e3:.1f} ms for a {isl}-token prompt): no load can meet it"
        )
    if slo.tpot_s is not None and slo.tpot_s < itl:
        raise CatalogError(
            f"--slo-tpot {slo.tpot_s * 1e3:.1f} ms is below the unloaded time per output token "
            f"({itl * 1e3:.1f} ms): no load can meet it"
        )


def is_offline(spec: WorkloadSpec) -> bool:
    """True when every request arrives at t=0 (no rate, concurrency, trace or daily profile was given)."""
    return spec.rate is None and spec.concurrency is None and spec.trace is None and spec.daily_rates is None


def describe_workload(spec: WorkloadSpec, n_requests: int) -> str:
    """The workload in words: lengths (sessions: turns, think time, system prompt), arrivals and request count."""
    lengths = f"trace {spec.trace}" if spec.trace else f"isl {spec.isl}, osl {spec.osl}"
    if spec.sessions:
        system = f", a {spec.system_prompt_tokens}-token system prompt" if spec.system_prompt_tokens else ""
        system += f" (1 of {spec.system_prompts})" if system and spec.system_prompts > 1 else ""
        lengths = (
            f"sessions of {spec.turns or 1} turns (each turn's new message isl {spec.isl}, answer osl {spec.osl}, "
            f"think {spec.think_s} s{system})"
        )
        if spec.concurrency is not None:
            return f"{lengths}; closed loop at {spec.concurrency} sessions in flight; {n_requests:,} turns"
        opens = "all at t=0" if spec.rate is None else f"{spec.rate:g} sessions/s"
        return f"{lengths}; sessions open {opens}; {n_requests:,} turns"
    if spec.concurrency is not None:
        arrivals = f"closed loop at concurrency {spec.concurrency}"
    elif spec.rate is not None:
        arrivals = f"{spec.rate:g} req/s " + (
            "Poisson" if spec.burstiness == 1 else f"gamma (shape {spec.burstiness:g})"
        )
    elif spec.daily_rates is not None:
        arrivals = "a 24-hour profile (--daily-rates)"
    elif spec.trace is not None:
        arrivals = "the trace's arrival times" + (f" × {spec.time_scale:g}" if spec.time_scale != 1 else "")
    else:
        arrivals = "offline: all at t=0"
    return f"{lengths}; {arrivals}; {n_requests:,} requests"


def describe_deployment(d: Deployment) -> str:
    """The replica in words: model, precision, GPUs, parallelism, engine."""
    return f"{d.model.id} {d.fmt.name} on {d.n_gpus}× {d.gpu.id} (tp={d.tp}, pp={d.pp}, {d.profile.name})"


def capacity_fraction(d: Deployment, workload: Workload, summary: RunSummary) -> dict[str, Any] | None:
    """Served output tok/s as a share of the replica's closed-form maximum (plan's steady state at max batch).

    "GPU busy" only says a step was running; this says how much of the replica's capacity the load used.
    """
    if not len(workload):
        return None
    isl = max(int(np.median(workload.input_tokens)), 1)
    osl = max(int(np.median(workload.output_tokens)), 1)
    b = max_batch(d, isl, osl)
    if b < 1:
        return None
    max_tps = float(steady_state(d, isl, osl, b).output_tokens_per_s[()])
    served = summary.throughput.output_tokens_per_s
    return {
        "max_output_tokens_per_s_per_replica": max_tps,
        "fraction": served / max_tps if max_tps and served is not None else None,
        "at_isl": isl,
        "at_osl": osl,
    }


# Figures an open-loop run's arrivals set (while the replica keeps up), not the cost model: no interval.
LOAD_SET = ("throughput.", "usd_per_mtok.")
OPEN_LOOP_NOTE = (
    "an open-loop run serves what arrives while the replica keeps up: its throughput and $/Mtok follow the "
    "arrivals, not the cost model, and carry no 80% interval"
)


def is_open_loop(spec: WorkloadSpec) -> bool:
    """True when arrivals come at their own pace (a rate, trace or daily profile; no closed-loop concurrency)."""
    return spec.concurrency is None and not is_offline(spec)


def with_intervals(summary: RunSummary, d: Deployment, open_loop: bool) -> RunSummary:
    """The one-replica summary with `intervals_80` on its predicted percentiles, throughput, $/Mtok and capacity.

    Mapping: the simulator is deterministic given the cost model, so each figure takes its cost-model metric's band —
    TTFT percentiles mean TTFT's, ITL/TPOT mean ITL's, E2E the e2e kind's, throughput offline output throughput's,
    $/Mtok that inverted (costmodel/intervals.py FIGURE_METRICS); open loop: throughput and $/Mtok have none.
    """
    intervals = figure_intervals(plain(summary), d.gpu.id, d.model.id)
    if open_loop:
        intervals = {k: v for k, v in intervals.items() if not k.startswith(LOAD_SET)}
    summary["intervals_80"] = intervals
    return summary


@dataclass
class SimulateRun:
    """What `tokenomy simulate` runs: the replica (or fleet), the workload, the scheduler settings and the SLO."""

    d: Deployment
    spec: WorkloadSpec
    workload: Workload
    config: ReplicaConfig
    slo: SLO | None

    def summary(
        self, fleet: Fleet | None, compare_day: bool, sweep_rates: list[float], executor: str
    ) -> tuple[RunSummary | SimulateSweep, SimResult | None]:
        """The headline run (one replica, a fleet, or a fleet's day compared) then the sweep when rates are given;
        a sweep alone (no arrival process asked for) runs only the sweep: no unrequested offline headline."""
        if sweep_rates and is_offline(self.spec) and fleet is None:
            sweep = self.sweep(sweep_rates, executor)
            header = self.header(sweep_rates)
            header["notes"] += [*interval_notes(sweep[0].get("intervals_80", {}) if sweep else {}), OPEN_LOOP_NOTE]
            return SimulateSweep.model_validate({**header, "sweep": sweep}), None
        summary, result = self.headline(fleet, compare_day)
        if sweep_rates:
            summary["sweep"] = self.sweep(sweep_rates, executor)
        return summary, result

    def header(self, sweep_rates: list[float] | None = None) -> dict[str, Any]:
        """The summary's description of what ran: deployment and workload, in fields and in words.

        With `sweep_rates` and no headline run, the workload is the sweep's: Poisson at each rate.
        """
        d = self.d
        described = describe_workload(self.spec, len(self.workload))
        if sweep_rates:
            rates = ", ".join(f"{r:g}" for r in sweep_rates)
            lengths = f"trace {self.spec.trace}" if self.spec.trace else f"isl {self.spec.isl}, osl {self.spec.osl}"
            described = f"{lengths}; Poisson at {rates} req/s (--sweep-rates); {len(self.workload):,} requests per rate"
        return {
            "deployment": {
                "model": d.model.id,
                "gpu": d.gpu.id,
                "tp": d.tp,
                "pp": d.pp,
                "precision": d.fmt.name,
                "engine": d.profile.name,
                "gpus_per_replica": d.n_gpus,
                "description": describe_deployment(d),
            },
            "workload": {
                "isl": self.spec.isl,
                "osl": self.spec.osl,
                "rate": self.spec.rate,
                "concurrency": self.spec.concurrency,
                "trace": self.spec.trace,
                "requests": len(self.workload),
                "offline": is_offline(self.spec) and not sweep_rates,
                "description": described,
            },
            "notes": [*profile_notes(d.profile), *filter(None, [d.moe_kernel_note()])],
        }

    def headline(self, fleet: Fleet | None, compare_day: bool) -> tuple[RunSummary, SimResult | None]:
        """The run the options ask for: one replica, a fleet, or a fleet's day against all-API and all-GPU."""
        from tokenomy.sim import fleet as fleet_sim
        from tokenomy.sim.run import simulate

        result = None
        summary: dict[str, Any] | RunSummary
        if fleet is None:
            result = simulate(self.d, self.workload, self.config, self.spec.seed)
            summary = result.summary(self.slo)
            capacity = capacity_fraction(self.d, self.workload, summary)
            if capacity is not None:
                summary["capacity"] = capacity
            summary = with_intervals(summary, self.d, is_open_loop(self.spec))
        elif compare_day:
            variants = fleet_sim.compare_day(fleet, self.workload, self.spec.seed, self.slo)
            summary = variants["hybrid"]
            summary["comparison"] = {k: v for k, v in variants.items() if k != "hybrid"}
        else:
            run = fleet_sim.simulate_fleet(fleet, self.workload, self.spec.seed, self.slo)
            result, summary = run.result, run.summary
        header = self.header()
        header["notes"] += interval_notes(summary.get("intervals_80", {}))
        if fleet is None and is_open_loop(self.spec):
            header["notes"].append(OPEN_LOOP_NOTE)
        if fleet is not None:
            names = ", ".join(t.name for t in fleet.tiers)
            header["deployment"] = {"fleet": [t.name for t in fleet.tiers], "description": f"fleet of tiers {names}"}
        return RunSummary.model_validate({**header, **summary}), result

    def sweep(self, rates: list[float], executor: str) -> list[RunSummary]:
        """One simulation per offered rate (Poisson), in parallel: the latency-throughput curve."""
        from tokenomy.sim.sweep import sweep_rates

        runs = sweep_rates(self.d, self.spec, self.config, rates, self.slo, executor)
        return [with_intervals(run, self.d, open_loop=True) for run in runs]  # Poisson at each rate
