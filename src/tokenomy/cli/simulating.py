"""Glue between `tokenomy simulate` and the simulator: deployments, checks, CSV output (fleet files: sim.fleetfile)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from tokenomy.catalog.errors import CatalogError
from tokenomy.cli.errors import option_error
from tokenomy.cli.planning import build_deployment, validated_request
from tokenomy.costmodel.deployment import Deployment, serving_constraints
from tokenomy.costmodel.perf import max_batch, single_stream, steady_state
from tokenomy.sim.fleet import Fleet
from tokenomy.sim.metrics import RequestLog
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import SLO, SimResult
from tokenomy.sim.workload import Workload, WorkloadSpec


def deployment_for(
    model: str,
    gpu: str,
    tp: int | None,
    pp: int,
    precision: str,
    kv_precision: str,
    engine: str,
    max_context: int = 0,
    accelerators_file: str | None = None,
) -> Deployment:
    """The replica a simulation runs: the options of `plan` for one precision (tp chosen when not given)."""
    req = validated_request(
        model=model,
        gpu=gpu,
        gpus=None,
        tp=tp,
        pp=pp,
        precisions=[precision],
        kv_precision=kv_precision,
        engine=engine,
        max_context=max_context,
        accelerators_file=accelerators_file,
    )
    d, _ = build_deployment(req, precision)
    return d


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


def write_requests_csv(log: RequestLog, path: Path) -> None:
    """One row per request: its lengths, times and where it ran."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            [
                "id",
                "arrival_s",
                "input_tokens",
                "output_tokens",
                "ttft_s",
                "e2e_s",
                "tpot_s",
                "preemptions",
                "cached_tokens",
                "served_by",
            ]
        )
        ttft = log.first_token_s - log.arrival_s
        e2e = log.finish_s - log.arrival_s
        tpot = np.where(
            log.output_tokens > 1, (log.finish_s - log.first_token_s) / np.maximum(log.output_tokens - 1, 1), np.nan
        )
        for i in range(len(log.arrival_s)):
            out.writerow(
                [
                    i,
                    f"{log.arrival_s[i]:.6f}",
                    int(log.input_tokens[i]),
                    int(log.output_tokens[i]),
                    _fmt(ttft[i]),
                    _fmt(e2e[i]),
                    _fmt(tpot[i]),
                    int(log.preemptions[i]),
                    int(log.cached_tokens[i]),
                    int(log.where[i]),
                ]
            )


def _fmt(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.6f}"


def parse_floats(text: str | None, flag: str, positive: bool = False) -> list[float] | None:
    """'1,2.5,4' -> [1.0, 2.5, 4.0]; every number finite and >= 0 (> 0 when `positive`), else a CatalogError."""
    if not text:
        return None
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise CatalogError(f"{flag}: expected comma-separated numbers, got '{text}'") from exc
    bad = [v for v in values if not math.isfinite(v) or v < 0 or (positive and v == 0)]
    if bad or not values:
        need = "positive" if positive else "non-negative"
        raise CatalogError(f"{flag}: every value must be a finite {need} number, got {bad[0] if bad else text!r}")
    return values


def check_executor(executor: str) -> None:
    """Refuse an executor the sweep does not know."""
    from tokenomy.sim.sweep import EXECUTORS

    if executor not in EXECUTORS:
        raise CatalogError(f"--executor must be one of {', '.join(EXECUTORS)}, got '{executor}'")


WORKLOAD_OPTIONS = {"num_requests": "--num-requests", "daily_rates": "--daily-rates", "time_scale": "--time-scale"}


def workload_spec(**fields: Any) -> WorkloadSpec:
    """The WorkloadSpec of simulate's options; a bad one is a CatalogError naming the option."""
    try:
        return WorkloadSpec(**fields)
    except ValidationError as exc:
        raise option_error(exc, WORKLOAD_OPTIONS) from exc


def is_offline(spec: WorkloadSpec) -> bool:
    """True when every request arrives at t=0 (no rate, concurrency, trace or daily profile was given)."""
    return spec.rate is None and spec.concurrency is None and spec.trace is None and spec.daily_rates is None


def describe_workload(spec: WorkloadSpec, n_requests: int) -> str:
    """The workload in words: lengths, arrivals and request count."""
    lengths = f"trace {spec.trace}" if spec.trace else f"isl {spec.isl}, osl {spec.osl}"
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


def capacity_fraction(d: Deployment, workload: Workload, summary: dict[str, Any]) -> dict[str, Any] | None:
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
    served = summary["throughput"]["output_tokens_per_s"]
    return {
        "max_output_tokens_per_s_per_replica": max_tps,
        "fraction": served / max_tps if max_tps else None,
        "at_isl": isl,
        "at_osl": osl,
    }


def parse_classes(text: str | None) -> dict[str, float] | None:
    """'chat=0.7,batch=0.3' -> {'chat': 0.7, 'batch': 0.3}."""
    if not text:
        return None
    out: dict[str, Any] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight)
        except ValueError as exc:
            raise CatalogError(f"--classes: expected name=weight pairs, got '{part}'") from exc
    return out


@dataclass
class SimulateRun:
    """What `tokenomy simulate` runs: the replica (or fleet), the workload, the scheduler settings and the SLO."""

    d: Deployment
    spec: WorkloadSpec
    workload: Workload
    config: ReplicaConfig
    slo: SLO | None

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
        }

    def headline(self, fleet: Fleet | None, compare_day: bool) -> tuple[dict[str, Any], SimResult | None]:
        """The run the options ask for: one replica, a fleet, or a fleet's day against all-API and all-GPU."""
        from tokenomy.sim import fleet as fleet_sim
        from tokenomy.sim.run import simulate

        result = None
        if fleet is None:
            result = simulate(self.d, self.workload, self.config, self.spec.seed)
            summary = result.summary(self.slo)
            capacity = capacity_fraction(self.d, self.workload, summary)
            if capacity is not None:
                summary["capacity"] = capacity
        elif compare_day:
            variants = fleet_sim.compare_day(fleet, self.workload, self.spec.seed, self.slo)
            summary = variants["hybrid"]
            summary["comparison"] = {k: v for k, v in variants.items() if k != "hybrid"}
        else:
            run = fleet_sim.simulate_fleet(fleet, self.workload, self.spec.seed, self.slo)
            result, summary = run.result, run.summary
        header = self.header()
        if fleet is not None:
            names = ", ".join(t.name for t in fleet.tiers)
            header["deployment"] = {"fleet": [t.name for t in fleet.tiers], "description": f"fleet of tiers {names}"}
        return {**header, **summary}, result

    def sweep(self, rates: list[float], executor: str) -> list[dict[str, Any]]:
        """One simulation per offered rate (Poisson), in parallel: the latency-throughput curve."""
        from tokenomy.sim.sweep import sweep_rates

        return sweep_rates(self.d, self.spec, self.config, rates, self.slo, executor)
