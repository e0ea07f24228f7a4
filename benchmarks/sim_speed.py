"""Simulator speed: requests shaped like the Azure 2023 conversation trace, on one replica, per second of wall time.

Lengths are resampled from the built-in Azure conversation sample, arrivals are Poisson at the
sample's mean rate, the replica is Llama-3.1-8B bf16 on one H100 (vLLM profile). The exact
(per-iteration) mode runs a smaller slice in the same process as the baseline.

Run: python benchmarks/sim_speed.py [N_REQUESTS]   (goal: 1,000,000 requests in <= 20 s on one core)
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import azure_conv_like


def timed(d: Deployment, n: int, exact: bool) -> tuple[float, float, dict]:
    """Wall and CPU seconds of simulating n Azure-conversation-like requests, and the run's summary."""
    w = azure_conv_like(n, np.random.default_rng(0))
    start, start_cpu = time.perf_counter(), time.process_time()
    summary = simulate(d, w, ReplicaConfig(exact=exact)).summary()
    return time.perf_counter() - start, time.process_time() - start_cpu, summary


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    d = Deployment(load_model("llama-3.1-8b"), load_accelerator("H100-SXM"), 1, 1, "bf16", "auto", load_profile("vllm"))
    n_exact = min(n, 20_000)
    exact_s, _, _ = timed(d, n_exact, exact=True)
    fast_s, fast_cpu_s, s = timed(d, n, exact=False)
    print(f"replica: {d.model.id} {d.fmt.name} on {d.gpu.id}; {n:,} requests, {s['duration_s'] / 3600:.1f} h simulated")
    print(
        f"TTFT p50 {s['ttft_s']['p50'] * 1e3:.1f} ms, ITL mean {s['itl_s']['mean'] * 1e3:.2f} ms, "
        f"mean decode batch {s['mean_decode_batch']:.1f}"
    )
    print(
        f"exact mode: {n_exact / exact_s:,.0f} requests/s; fast mode: {n / fast_s:,.0f} requests/s "
        f"({(n / fast_s) / (n_exact / exact_s):.1f}x); {n:,} requests in {fast_s:.1f} s "
        f"({fast_cpu_s:.1f} s of CPU; a wall time well above it means other processes took the core)"
    )
    print(f"sim_requests_per_s: {n / fast_s:.0f} 1/s")


if __name__ == "__main__":
    main()
