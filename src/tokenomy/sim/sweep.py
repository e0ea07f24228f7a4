"""Rate sweeps: the same deployment under a list of request rates, run in local processes or on Ray.

Each point is a pure function of (deployment, workload spec with its rate, seed), so the two
executors give identical results for the same seed.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import SLO, simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload

EXECUTORS = ("local", "ray")


def sweep_point(d: Deployment, spec: WorkloadSpec, config: ReplicaConfig, slo: SLO | None) -> dict[str, Any]:
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
) -> list[dict[str, Any]]:
    """One summary per rate, in the order given."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor '{executor}'; choose from {', '.join(EXECUTORS)}")
    specs = [spec.model_copy(update={"rate": float(r), "concurrency": None}) for r in rates]
    if executor == "ray":
        return _on_ray(d, specs, config, slo)
    if workers == 1 or len(specs) == 1:
        return [sweep_point(d, s, config, slo) for s in specs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(sweep_point, d, s, config, slo) for s in specs]
        return [f.result() for f in futures]


def _on_ray(d: Deployment, specs: list[WorkloadSpec], config: ReplicaConfig, slo: SLO | None) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--executor ray needs Ray: pip install 'tokenomy[ray]'") from exc
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=None, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(sweep_point)
        return ray.get([remote.remote(d, s, config, slo) for s in specs])
    finally:
        if started:
            ray.shutdown()
