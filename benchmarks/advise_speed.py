"""Advisor speed: the built-in example workload end to end, as `tokenomy advise` runs it with no options.

Stage 1 prices every candidate in closed form, stage 2 verifies the best 20 with the simulator in
local processes, then the fp16-static baseline and the busiest-hour fleet are simulated. Goal:
≤ 60 s on a 2-core machine. The load average is printed too: other processes sharing the CPU slow
the wall time down.

Run: python benchmarks/advise_speed.py
"""

from __future__ import annotations

import os
import time

from tokenomy.advise.output import run_advisor
from tokenomy.advise.workload import example_workload_path, load_workload


def main() -> None:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    cpu_start = time.process_time()
    report = run_advisor(load_workload(example_workload_path()))
    wall = time.perf_counter() - start
    search, rec = report["search"], report["recommendation"]
    print(f"CPUs: {os.cpu_count()}, load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}")
    print(f"candidates evaluated in closed form: {search['candidates_evaluated']:,}")
    print(f"verified with the simulator: {search['verified']} candidates, {search['simulations']} simulations")
    for name, seconds in search["seconds"].items():
        print(f"  {name}: {seconds:.2f} s")
    print(f"plan: ${rec['usd_per_day']['simulated']:,.2f}/day, ${rec['usd_per_mtok']['simulated']:.4f}/Mtok")
    print(f"main-process CPU: {time.process_time() - cpu_start:.1f} s (simulations run in worker processes)")
    print(f"advise_seconds: {wall:.1f} s")


if __name__ == "__main__":
    main()
