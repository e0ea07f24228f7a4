"""Client capacity: the highest Poisson rate `tokenomy bench` keeps up with, against a twin with ~zero step time.

The twin (Llama-3.1-8B on H100, speedup 1e6: each engine step takes microseconds) runs in its own process
on this machine; the client sends requests of 16 prompt and 64 output tokens (/v1/completions). A rate is
sustained when every request completes, the client's send lag p99 is <= 5 ms and requests are served at
>= 90% of the rate actually offered (the Poisson draw's n / last arrival). The search doubles from
50 req/s, then bisects (RateSearch, 8 probes, 2 s of arrivals each). Both processes share the machine's
cores, so the figure bounds the client and the twin together; other load on the machine lowers it (the
load average is printed). At zero step time a request's 64 steps are due at once: the twin takes them back
to back and writes each stream's 64 events in one socket write.

Run: python benchmarks/bench_client.py   (goal: >= 1,000 streamed requests/s of 64 tokens each)
     python benchmarks/bench_client.py --realtime   (root: client and twin under SCHED_FIFO, so that other
     processes' time slices on a busy machine do not show up as send lag; the kernel still keeps 5% for others)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from tokenomy.bench.client import Endpoint
from tokenomy.bench.runner import BenchPlan, run_bench
from tokenomy.bench.search import RateSearch
from tokenomy.sim.workload import WorkloadSpec
from tokenomy.tokenizer import count_tokens

MAX_SEND_LAG_P99_S = 0.005
PROBE_S = 2.0
REALTIME_PRIORITY = 10
TWIN = (
    "import sys, time\n"
    "from tokenomy.twin.server import running_twin\n"
    "with running_twin('llama-3.1-8b', 'H100-SXM', speedup=1e6, max_num_seqs=4096) as url:\n"
    "    print(url, flush=True)\n"
    "    sys.stdin.read()\n"
)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def probe(url: str, rate_rps: float, twin_pid: int) -> dict:
    """One run at `rate_rps`: whether it was sustained, with the figures that decide it."""
    spec = WorkloadSpec(isl="16", osl="64", rate=rate_rps, num_requests=max(100, int(rate_rps * PROBE_S)), seed=0)
    cpu0, twin_cpu0 = time.process_time(), process_cpu_s(twin_pid)
    out = run_bench(BenchPlan(Endpoint(url + "/v1", "llama-3.1-8b", "completions"), spec, timeout_s=30)).main
    s, n = out.summary, len(out.workload)
    offered_rps = (n - 1) / float(out.workload.arrival_s[-1])
    lag_p99 = s["client"]["send_lag_s"]["p99"]
    rps = s["throughput"]["requests_per_s"]
    ok = s["errors"]["total"] == 0 and lag_p99 <= MAX_SEND_LAG_P99_S and rps >= 0.9 * offered_rps
    return {
        "ok": ok,
        "lag_p99_s": lag_p99,
        "rps": rps,
        "cpu_ms_per_request": (time.process_time() - cpu0) / n * 1e3,
        "twin_cpu_ms_per_request": (process_cpu_s(twin_pid) - twin_cpu0) / n * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realtime", action="store_true", help="run client and twin under SCHED_FIFO (needs root)")
    args = parser.parse_args()
    if args.realtime:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))  # the twin inherits it
    count_tokens("warm up the tokenizer")  # loaded once, outside the probes' CPU time
    twin = subprocess.Popen([sys.executable, "-c", TWIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = twin.stdout.readline().strip() if twin.stdout else ""
        if not url.startswith("http"):
            raise SystemExit("the twin did not start")
        search = RateSearch(start_rps=50, min_rps=5, max_rps=5000, max_probes=8, rel_tol=0.1)
        rate = search.next_rate()
        while rate is not None:
            r = probe(url, rate, twin.pid)
            print(
                f"{rate:7.1f} req/s: {'sustained' if r['ok'] else 'not sustained'}; served {r['rps']:.1f} req/s, "
                f"send lag p99 {r['lag_p99_s'] * 1e3:.2f} ms; CPU per request: client {r['cpu_ms_per_request']:.2f} "
                f"ms, twin {r['twin_cpu_ms_per_request']:.2f} ms; load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            search.record(rate, r["ok"])
            rate = search.next_rate()
    finally:
        if twin.stdin:
            twin.stdin.close()
        twin.wait(timeout=20)
    policy = "SCHED_FIFO" if args.realtime else "normal scheduling"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{policy}; load average {load} (1, 5, 15 min) on {os.cpu_count()} CPUs")
    print(f"client_max_rate: {search.best_ok or 0:.0f} 1/s")


if __name__ == "__main__":
    main()
