"""Closed form against simulator over the feature grid: the worst disagreement on capacity, TPOT and TTFT.

The grid, the loads and the tolerances are `tokenomy.sim.consistency` (dense and MoE; tp and pp;
static, continuous and chunked; paged and contiguous KV; speculative decoding on and off; bf16
and fp8 KV; 20% and 60% of capacity and twice it). The goal (issue 12) is ≤ 0.10 on capacity and
TPOT; TTFT below saturation is held to 0.20. The last line is the worst capacity/TPOT disagreement.

Run: python benchmarks/consistency.py [REQUESTS_PER_LOAD] [SEED]   (default 1500, 0)
"""

from __future__ import annotations

import sys
import time

from tokenomy.sim.consistency import GRID, TOLERANCE, compare


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    start = time.perf_counter()
    worst: dict[str, tuple[float, str]] = {}
    for case in GRID:
        for row in compare(case, requests=requests, seed=seed):
            mark = "" if row.within else f"  > {TOLERANCE[row.metric]:.0%}"
            print(
                f"{case.name:58} {row.load:>10} {row.metric:8} closed form {row.closed_form:10.4g} "
                f"simulated {row.simulated:10.4g}  {row.disagreement:6.1%}{mark}"
            )
            if row.disagreement > worst.get(row.metric, (-1.0, ""))[0]:
                worst[row.metric] = (row.disagreement, f"{case.name} at {row.load}")
    print(f"{len(GRID)} cases, {requests} requests a load, seed {seed}, {time.perf_counter() - start:.1f} s")
    for metric, (value, where) in worst.items():
        print(f"worst {metric}: {value:.1%} ({where})")
    print(f"worst_disagreement: {max(worst['capacity'][0], worst['tpot'][0]):.3f}")


if __name__ == "__main__":
    main()
