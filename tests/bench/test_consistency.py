"""Must show: `tokenomy bench` against `tokenomy twin` agrees with `tokenomy simulate` of the same workload.

The twin serves Llama-3.1-8B on an L4 at speedup 4 on a background thread; `tokenomy bench --speedup 4`
runs in a subprocess (its own event loop and CPU time), so the client does not share the twin's loop. A slow
accelerator and 2,048-token prompts (~310 ms of prefill, ~78 ms of wall clock; decode steps of ~8 ms) keep the
twin's own cost per request (HTTP, counting the prompt: 1–3 ms, more on a busy machine) small against the
predicted times. Bench scales its wall-clock figures back by the speedup; the
simulator runs the same WorkloadSpec at the deployment's rate (the wall-clock rate ÷ the speedup).
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload
from tokenomy.twin.server import running_twin

MODEL, GPU = "llama-3.1-8b", "L4"
SPEEDUP = 4.0
ISL, OSL, N, SEED = 2048, 64, 20, 11
RATE_RPS = 0.6  # deployment time; bench offers RATE_RPS × SPEEDUP requests per wall-clock second
TOLERANCE = 0.10
# The twin adds its own time before the first token (HTTP, counting a 2,048-token prompt): 1–3 ms on an idle
# machine, several times that at load average 5 on 2 cores — ×4 in deployment time, on a ~340 ms TTFT. So TTFT
# may be late, never early: by 40% plus whatever the twin itself reports it ran behind its schedule (its clock
# moved forward, `counters.behind_s`, and its writes' lateness, /twin/stats), so that a busy machine widens the
# bound by what it measurably did and nothing else. The 10% check on TTFT is benchmarks/bench_vs_simulate.py.
TTFT_EARLY, TTFT_LATE = 0.05, 0.40


def bench_json(url: str) -> dict:
    """`tokenomy bench … --speedup K --json` in a subprocess; its summary."""
    args = ["--url", url + "/v1", "--model", MODEL, "--isl", str(ISL), "--osl", str(OSL), "--seed", str(SEED)]
    args += ["--rate", str(RATE_RPS * SPEEDUP), "--num-requests", str(N), "--speedup", str(SPEEDUP)]
    args += ["--json", "--no-progress"]
    code = "import sys; from tokenomy.cli.main import app; sys.argv[0] = 'tokenomy'; app()"
    done = subprocess.run([sys.executable, "-c", code, "bench", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_bench_against_the_twin_agrees_with_simulate_of_the_same_workload() -> None:
    with running_twin(MODEL, GPU, speedup=SPEEDUP) as url:
        measured = bench_json(url)
        twin = httpx.get(url + "/twin/stats").json()
    behind_wall_s = twin["counters"]["behind_s"] + max(twin["emission_lateness_s"].get("p99", 0.0), 0.0)
    d = resolve(DeploymentSpec(model=MODEL, gpu=GPU)).deployment
    spec = WorkloadSpec(isl=str(ISL), osl=str(OSL), rate=RATE_RPS, num_requests=N, seed=SEED)
    predicted = simulate(d, build_workload(spec), ReplicaConfig(), seed=SEED).summary()
    assert measured["requests"]["completed"] == N and measured["errors"]["total"] == 0
    measured_tps = measured["throughput"]["output_tokens_per_s"] / SPEEDUP  # wall clock → deployment time
    pairs = {
        "throughput": (measured_tps, predicted["throughput"]["output_tokens_per_s"]),
        "mean TTFT": (measured["ttft_s"]["mean"] * SPEEDUP, predicted["ttft_s"]["mean"]),
        "mean ITL": (measured["itl_s"]["mean"] * SPEEDUP, predicted["itl_s"]["mean"]),
    }
    ratios = {name: m / p for name, (m, p) in pairs.items()}
    print("measured / simulated:", {k: round(v, 3) for k, v in ratios.items()})
    for name in ("throughput", "mean ITL"):  # set by the arrivals and by whole decodes: late writes barely move them
        m, p = pairs[name]
        assert m == pytest.approx(p, rel=TOLERANCE), f"{name}: bench {m:.4g} vs simulate {p:.4g}"
    m, p = pairs["mean TTFT"]
    late_s = behind_wall_s * SPEEDUP  # deployment time
    assert (1 - TTFT_EARLY) * p <= m <= (1 + TTFT_LATE) * p + late_s, (
        f"mean TTFT: bench {m:.4g} vs simulate {p:.4g} (twin behind its schedule by {late_s:.3g} s)"
    )
