"""Must show (issue 12): the SLO capacity search against `tokenomy twin --speedup 10`, checked three ways.

1. `tokenomy twin --speedup 10` serves the deployment in its own process (10× faster than real time).
2. `tokenomy bench --slo … --speedup 10` searches the highest Poisson rate meeting the SLO (steady-state probes,
   each invalid unless the twin served >= 95% of the rate offered), then runs a 40 s verification at that rate;
   the SLO is given in the twin's wall-clock time (deployment limits ÷ 10).
3. `tokenomy simulate --slo … --find-capacity` runs the same search on the simulator, in deployment time.

Printed: bench's rate (wall clock and ÷ 10 = deployment time), the verification's served rate and goodput and
whether the SLO held, simulate's rate, and last the gap between bench (deployment time) and simulate.
Goal: the verification holds and the gap is within 10%. The twin and the bench client share this machine's CPUs:
other load makes the twin late, which lowers bench's answer (the load average is printed).

Run: python benchmarks/capacity_search.py [--gpu L4 --isl 256 --osl 64 --slo 'ttft_p99<=2s,tpot_p90<=60ms']
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time

from tokenomy.bench.search import parse_slo

SPEEDUP = 10.0
TOKENOMY = [sys.executable, "-c", "import sys; from tokenomy.cli.main import app; sys.argv[0] = 'tokenomy'; app()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wall_slo(slo: str, speedup: float) -> str:
    """The SLO in the twin's wall-clock time: every limit ÷ speedup."""
    return ",".join(f"{t.key}{'<' if t.strict else '<='}{t.limit_s / speedup:.6g}s" for t in parse_slo(slo))


def shown(cmd: list[str]) -> str:
    return "tokenomy " + " ".join(shlex.quote(a) for a in cmd)


def run_json(cmd: list[str], timeout_s: float) -> dict:
    print(f"$ {shown(cmd)}", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([*TOKENOMY, *cmd], capture_output=True, text=True, timeout=timeout_s)
    print(f"  ({time.perf_counter() - t0:.0f} s, exit {done.returncode})", flush=True)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        sys.exit(f"failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--gpu", default="L4")
    parser.add_argument("--isl", default="256")
    parser.add_argument("--osl", default="64")
    parser.add_argument("--slo", default="ttft_p99<=2s,tpot_p90<=60ms", help="in deployment time")
    parser.add_argument("--search-start", default="20", help="bench's first probe, req/s wall clock")
    parser.add_argument("--probe-seconds", default="10")
    parser.add_argument("--verify-seconds", default="40")
    args = parser.parse_args()
    deployment = ["--model", args.model, "--gpu", args.gpu]
    workload = ["--isl", args.isl, "--osl", args.osl]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)

    sim = run_json(["simulate", *deployment, *workload, "--slo", args.slo, "--find-capacity", "--json"], 600)
    sim_rps = sim["slo_search"]["best_rate_rps"]

    port = free_port()
    twin_cmd = ["twin", *deployment, "--speedup", f"{SPEEDUP:g}", "--port", str(port)]
    print(f"$ {shown(twin_cmd)} &", flush=True)
    twin = subprocess.Popen([*TOKENOMY, *twin_cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(200):  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        bench_cmd = ["bench", "--url", f"http://127.0.0.1:{port}/v1", *workload]
        bench_cmd += ["--slo", wall_slo(args.slo, SPEEDUP), "--speedup", f"{SPEEDUP:g}"]
        bench_cmd += ["--search-start", args.search_start, "--probe-seconds", args.probe_seconds]
        bench_cmd += ["--verify-seconds", args.verify_seconds, "--no-progress", "--json"]
        bench = run_json(bench_cmd, 3600)
    finally:
        twin.terminate()
        twin.wait(timeout=10)
    print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)

    search = bench["slo_search"]
    for p in search["probes"]:
        verdict = "pass" if p["ok"] else "FAIL: " + "; ".join(p["reasons"])
        print(
            f"  bench probe {p['rate_rps']:.4g} req/s: served {p['served_rps']:.4g} of {p['offered_rps']:.4g} "
            f"in {p['window_s']:.3g} s ({p['measured_requests']} requests): {verdict}"
        )
    best = search["best_rate_rps"]
    if best is None:
        sys.exit("bench found no rate meeting the SLO")
    v = search["verification"]
    print(f"SLO (deployment time): {args.slo}; in the twin's wall clock: {wall_slo(args.slo, SPEEDUP)}")
    print(f"bench reported rate: {best:.4g} req/s wall clock = {best / SPEEDUP:.4g} req/s in deployment time")
    print(
        f"verification ({v['window_s']:.3g} s measured of {args.verify_seconds} s): served {v['served_rps']:.4g} "
        f"req/s of {v['offered_rps']:.4g} offered, goodput {v['goodput_rps']:.4g} req/s wall clock "
        f"(= {v['served_rps'] / SPEEDUP:.4g} and {v['goodput_rps'] / SPEEDUP:.4g} in deployment time); "
        + ("the SLO held" if v["ok"] else "the SLO did NOT hold: " + "; ".join(v["reasons"]))
    )
    print(f"simulate's answer: {sim_rps:.4g} req/s (deployment time, one replica)")
    gap = (best / SPEEDUP - sim_rps) / sim_rps
    print(f"bench_vs_simulate_capacity_gap: {gap * 100:+.1f} %")


if __name__ == "__main__":
    main()
