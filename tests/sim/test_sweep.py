"""Rate sweeps: local processes and Ray give the same summaries for the same seed."""

from __future__ import annotations

import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.sweep import local_pool, sweep_rates
from tokenomy.sim.workload import WorkloadSpec

D = Deployment(load_model("llama-3.1-8b"), load_accelerator("H100-SXM"), 1, 1, "bf16", "auto", load_profile("vllm"))
SPEC = WorkloadSpec(isl="lognormal:800:0.7", osl="lognormal:200:0.7", num_requests=300, seed=3)


def test_sweep_latency_rises_with_rate_and_processes_match_inline() -> None:
    inline = sweep_rates(D, SPEC, ReplicaConfig(), [2.0, 40.0], workers=1)
    local = sweep_rates(D, SPEC, ReplicaConfig(), [2.0, 40.0], executor="local", workers=2)
    assert [s["rate"] for s in local] == [2.0, 40.0]
    assert local[1]["ttft_s"]["p99"] > local[0]["ttft_s"]["p99"]
    assert local[1]["throughput"]["output_tokens_per_s"] > 5 * local[0]["throughput"]["output_tokens_per_s"]
    for a, b in zip(inline, local, strict=True):
        assert a["ttft_s"] == b["ttft_s"] and a["throughput"] == b["throughput"]


def test_ray_gives_the_same_results_as_local_processes() -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tokenomy[ray]')")
    local = sweep_rates(D, SPEC, ReplicaConfig(), [4.0, 20.0], executor="local", workers=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = sweep_rates(D, SPEC, ReplicaConfig(), [4.0, 20.0], executor="ray")
    finally:
        ray.shutdown()
    for a, b in zip(local, on_ray, strict=True):
        assert a["ttft_s"] == b["ttft_s"] and a["itl_s"] == b["itl_s"] and a["throughput"] == b["throughput"]


def test_local_processes_are_spawned_not_forked_once_ray_is_loaded() -> None:
    """A child forked from a process holding Ray's threads crashed in _raylet.so (a flaky `make test`, when a Ray
    test had run earlier in the same worker); after Ray is loaded the local pool spawns, and still gives the
    same results as inline."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'tokenomy[ray]')")
    import ray._raylet  # noqa: F401 - what a Ray session leaves loaded

    with local_pool(2) as pool:
        assert pool._mp_context.get_start_method() == "spawn"
    processes = sweep_rates(D, SPEC, ReplicaConfig(), [4.0, 20.0], workers=2)
    inline = sweep_rates(D, SPEC, ReplicaConfig(), [4.0, 20.0], workers=1)
    assert [r["throughput"] for r in processes] == [r["throughput"] for r in inline]


def test_unknown_executor_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown executor 'spark'"):
        sweep_rates(D, SPEC, ReplicaConfig(), [1.0], executor="spark")
