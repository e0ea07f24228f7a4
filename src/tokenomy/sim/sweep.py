"""Rate sweeps: the same deployment under a list of request rates, run in local processes or on Ray.

Each point is a pure function of (deployment, workload spec with its rate, seed), so the two
executors give identical results for the same seed. `run_parallel` is the executor part, shared with
the advisor's verification (`tokenomy.advise.verify`).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

from tokenomy.costmodel.deployment import Deployment
from tokenomy.results import RunSummary
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import SLO, simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload

EXECUTORS = ("local", "ray")


def sweep_point(d: Deployment, spec: WorkloadSpec, config: ReplicaConfig, slo: SLO | None) -> RunSummary:
    """Summary of one simulated run, with the offered rate under 'rate'."""
    summary = simulate(d, build_workload(spec), config, seed=spec.seed).summary(slo)
    summary["rate"] = spec.rate
    return summary


def sweep_rates(
    d: Deployment,
    spec: WorkloadSpec,
    config: ReplicaConfig,
    rates: list[float],
    slo: SLO | None = None,
    executor: str = "local",
    workers: int | None = None,
) -> list[RunSummary]:
    """One summary per rate, in the order given."""
    specs = [spec.model_copy(update={"rate": float(r), "concurrency": None}) for r in rates]
    return run_parallel(sweep_point, [(d, s, config, slo) for s in specs], executor, workers)


def run_parallel(
    fn: Callable[..., Any],
    args: list[tuple],
    executor: str = "local",
    workers: int | None = None,
    on_done: Callable[[Any], None] | None = None,
) -> list[Any]:
    """`fn(*a)` for each `a` in `args`, in the order given, in local processes or on Ray (`fn` must be a
    module-level function); `on_done(result)` is called as each one finishes (for a progress bar)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor '{executor}'; choose from {', '.join(EXECUTORS)}")
    if not args:
        return []
    if executor == "ray":
        return _on_ray(fn, args, on_done)
    if workers == 1 or len(args) == 1:
        results = []
        for a in args:
            results.append(fn(*a))
            if on_done:
                on_done(results[-1])
        return results
    out: list[Any] = [None] * len(args)
    with local_pool(workers) as pool:
        futures = {pool.submit(fn, *a): i for i, a in enumerate(args)}
        for future in as_completed(futures):
            out[futures[future]] = future.result()
            if on_done:
                on_done(out[futures[future]])
    return out


def local_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of local worker processes: forked (fast to start) unless Ray's core is loaded in this process — a
    child forked from a process holding Ray's threads can crash in them (segfaults in _raylet.so seen here) —,
    then spawned."""
    context = multiprocessing.get_context("spawn") if "ray._raylet" in sys.modules else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


@contextmanager
def executor_session(executor: str) -> Iterator[None]:
    """Keep one Ray instance up for what runs inside (started here unless one is running); nothing for local."""
    if executor != "ray":
        yield
        return
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--executor ray needs Ray: pip install 'tokenomy[ray]'") from exc
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=None, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _on_ray(fn: Callable[..., Any], args: list[tuple], on_done: Callable[[Any], None] | None) -> list[Any]:
    with executor_session("ray"):
        import ray

        remote = ray.remote(fn)
        refs = [remote.remote(*a) for a in args]
        index = {ref: i for i, ref in enumerate(refs)}
        out: list[Any] = [None] * len(args)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                out[index[ref]] = ray.get(ref)
                if on_done:
                    on_done(out[index[ref]])
        return out
