"""`tokenomy bench` against `tokenomy twin` vs `tokenomy simulate` of the same workload: the timing-precision check.

tests/bench/test_consistency.py asserts the behaviour with margins that hold on a busy machine (TTFT may only be
late, by the twin's own HTTP and tokenisation time); this script prints how close the three figures actually
come: throughput, mean TTFT and mean ITL of bench (÷ the speedup: deployment time) over simulate's. The twin
serves Llama-3.1-8B on an L4 at speedup 4 in its own process; bench runs in another (the same setup as the test).

Run: python benchmarks/bench_vs_simulate.py   (goal: every ratio within 10% of 1 on a quiet machine)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload

MODEL, GPU = "llama-3.1-8b", "L4"
SPEEDUP = 4.0
ISL, OSL, N, SEED = 2048, 64, 40, 11
RATE_RPS = 0.6  # deployment time
TWIN = (
    "import sys\n"
    "from tokenomy.twin.server import running_twin\n"
    f"with running_twin({MODEL!r}, {GPU!r}, speedup={SPEEDUP}) as url:\n"
    "    print(url, flush=True)\n"
    "    sys.stdin.read()\n"
)
TOKENOMY = [sys.executable, "-c", "import sys; from tokenomy.cli.main import app; sys.argv[0] = 'tokenomy'; app()"]


def main() -> None:
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    twin = subprocess.Popen([sys.executable, "-c", TWIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = twin.stdout.readline().strip()
        args = ["bench", "--url", url + "/v1", "--model", MODEL, "--isl", str(ISL), "--osl", str(OSL)]
        args += ["--seed", str(SEED), "--rate", str(RATE_RPS * SPEEDUP), "--num-requests", str(N)]
        args += ["--speedup", str(SPEEDUP), "--json", "--no-progress"]
        done = subprocess.run([*TOKENOMY, *args], capture_output=True, text=True, timeout=600)
    finally:
        twin.stdin.close()
        twin.wait(timeout=10)
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    measured = json.loads(done.stdout)
    d = resolve(DeploymentSpec(model=MODEL, gpu=GPU)).deployment
    spec = WorkloadSpec(isl=str(ISL), osl=str(OSL), rate=RATE_RPS, num_requests=N, seed=SEED)
    predicted = simulate(d, build_workload(spec), ReplicaConfig(), seed=SEED).summary()
    pairs = {
        "throughput": (
            measured["throughput"]["output_tokens_per_s"] / SPEEDUP,
            predicted["throughput"]["output_tokens_per_s"],
        ),
        "mean TTFT": (measured["ttft_s"]["mean"] * SPEEDUP, predicted["ttft_s"]["mean"]),
        "mean ITL": (measured["itl_s"]["mean"] * SPEEDUP, predicted["itl_s"]["mean"]),
    }
    worst = 0.0
    for name, (m, p) in pairs.items():
        print(f"{name}: bench {m:.4g}, simulate {p:.4g} (ratio {m / p:.3f})")
        worst = max(worst, abs(m / p - 1))
    print(f"worst_bench_vs_simulate_error: {worst * 100:.1f} %")


if __name__ == "__main__":
    main()
