"""Stage 2 of the advisor: replay the actual workload on the best candidates with the simulator.

Each job simulates one replica (`tokenomy.sim.run.simulate`) under Poisson arrivals at a given rate,
with the group's class mix and length distributions, and reports what the closed form predicted:
tail TTFT, TPOT and SLO attainment. A candidate is probed at its closed-form capacity first, then at
lower fractions of it until the simulated attainment meets the target; the highest passing rate is
its simulated capacity. Jobs are pure functions of their inputs, so they run in local processes
(with a progress bar) or on Ray with identical results, through `tokenomy.sim.sweep.run_parallel`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.replica import ReplicaConfig, SpecDecoding
from tokenomy.sim.run import SLO, simulate
from tokenomy.sim.sweep import run_parallel
from tokenomy.sim.workload import Workload, parse_lengths, poisson_arrivals

PROBE_FRACTIONS = (1.0, 0.8, 0.6, 0.4)  # of the closed-form capacity, tried in order until one passes


@dataclass(frozen=True)
class SimJob:
    """One simulated replica: a deployment, its engine settings, and the load it gets."""

    key: tuple  # (candidate row, probe fraction) or any label the caller uses
    deployment: Deployment
    draft: Deployment | None
    draft_tokens: int
    acceptance: float
    max_num_seqs: int
    classes: tuple[tuple[str, str, str, float], ...]  # (name, isl form, osl form, share)
    rate_rps: float
    requests: int
    seed: int
    ttft_slo_s: float
    tpot_slo_s: float
    attainment: float
    scheduler: str = "chunked"
    kv: str = "paged"


def job_workload(job: SimJob) -> Workload:
    """Poisson arrivals at the job's rate; each request's class drawn by share, its lengths from its class."""
    rng_arrival, rng_class, rng_len = (np.random.default_rng(s) for s in np.random.SeedSequence(job.seed).spawn(3))
    n = job.requests
    shares = np.array([c[3] for c in job.classes], dtype=float)
    which = rng_class.choice(len(job.classes), size=n, p=shares / shares.sum())
    isl, osl = np.ones(n, dtype=np.int64), np.ones(n, dtype=np.int64)
    for k, (_, isl_form, osl_form, _) in enumerate(job.classes):
        mine = which == k
        isl[mine] = parse_lengths(isl_form, "isl").sample(int(mine.sum()), rng_len)
        osl[mine] = parse_lengths(osl_form, "osl").sample(int(mine.sum()), rng_len)
    names = np.array([c[0] for c in job.classes], dtype=object)[which]
    return Workload(poisson_arrivals(job.rate_rps, n, rng_arrival), isl, osl, classes=names, name="advise")


def simulate_job(job: SimJob) -> dict[str, Any]:
    """Run one job; the figures the advisor compares with its closed form."""
    spec = SpecDecoding(job.draft, job.draft_tokens, job.acceptance) if job.draft is not None else None
    config = ReplicaConfig(scheduler=job.scheduler, kv=job.kv, max_num_seqs=job.max_num_seqs, spec=spec)
    result = simulate(job.deployment, job_workload(job), config, seed=job.seed)
    summary = result.summary(SLO(ttft_s=job.ttft_slo_s, tpot_s=job.tpot_slo_s))
    log = result.log
    ttft = (log.first_token_s - log.arrival_s)[log.done]
    return {
        "key": job.key,
        "rate_rps": job.rate_rps,
        "requests": int(len(log.arrival_s)),
        "completed": int(log.done.sum()),
        "ttft_tail_s": float(np.quantile(ttft, job.attainment)) if len(ttft) else float("inf"),
        "ttft_p99_s": summary["ttft_s"]["p99"],
        "tpot_mean_s": summary["tpot_s"]["mean"],
        "tpot_p99_s": summary["tpot_s"]["p99"],
        "slo_attainment": summary.get("slo_attainment", 0.0),
        "output_tokens_per_s": summary["throughput"]["output_tokens_per_s"],
        "requests_per_s": summary["throughput"]["requests_per_s"],
        "mean_decode_batch": summary["mean_decode_batch"],
        "preempted": summary["requests"]["preempted"],
    }


def run_jobs(
    jobs: list[SimJob],
    executor: str = "local",
    workers: int | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every job's result, in the order given; `on_done` is called as each finishes (for a progress bar)."""
    return run_parallel(simulate_job, [(job,) for job in jobs], executor, workers, on_done)


def probe(
    job_at: Callable[[Hashable, float], SimJob],
    keys: list[Hashable],
    attainment: dict[Hashable, float],
    executor: str = "local",
    on_job: Callable[[int, int], None] | None = None,
    fractions: tuple[float, ...] = PROBE_FRACTIONS,
) -> dict[Hashable, tuple[list[dict[str, Any]], float]]:
    """Simulate each key at PROBE_FRACTIONS of its rate in turn until its SLO attainment meets its target.

    Returns, per key, the results in the order tried and the first passing fraction (0 if none passed).
    `job_at(key, fraction)` builds the job; `on_job(done, total)` reports progress.
    """
    out: dict[Hashable, tuple[list[dict[str, Any]], float]] = {k: ([], 0.0) for k in keys}
    pending, total, done = list(keys), len(keys), 0

    def tick(_: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if on_job:
            on_job(done, total)

    for fraction in fractions:
        if not pending:
            break
        results = run_jobs([job_at(k, fraction) for k in pending], executor, on_done=tick)
        still = []
        for k, result in zip(pending, results, strict=True):
            out[k][0].append({**result, "fraction": fraction})
            if result["slo_attainment"] >= attainment[k]:  # rejected requests count as misses
                out[k] = (out[k][0], fraction)
            else:
                still.append(k)
        pending = still
        total += len(pending)
    return out
