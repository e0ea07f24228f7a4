"""How well the nearest timed expert set stands in for an untimed one (catalog.nearest_moe_timing), scored out of
sample on NVIDIA's own MoE timings (kernel_rates.csv, moe_gemm_efficiency rows): each timed expert shape is
left out in turn, on its accelerator and kernel type, and each of its timed slicings predicted from the other
shapes' timings, against the dense rate (η = 1) an untimed shape took before.

Error: |log(η predicted / η timed)|, the log error of the routed experts' compute time at large token counts.
Prints the median and p90 per accelerator and overall for both; last line
`moe_nearest_shape_median_error: X %` (the nearest timed set's median error factor, exp(median |log error|) − 1).

Run: python benchmarks/moe_nearest_shape.py   (about a second)
"""

from __future__ import annotations

import math

import numpy as np

from tokenomy.catalog.accelerators import kernel_rates, nearest_moe_timing


def main() -> None:
    nearest_all: list[float] = []
    dense_all: list[float] = []
    for accel, rates in sorted(kernel_rates().items()):
        timed = rates.moe_gemm_efficiency
        nearest: list[float] = []
        dense: list[float] = []
        for key, by_tp in timed.items():
            kernel, hidden, inter, topk, experts = key
            others = {k: v for k, v in timed.items() if k[1:] != key[1:]}  # every kernel type's run of this shape out
            for tp, eta in by_tp.items():
                found = nearest_moe_timing(others, kernel, hidden, inter, topk, experts, tp)
                if found is None:
                    continue
                nearest.append(abs(math.log(found[0] / eta)))
                dense.append(abs(math.log(1.0 / eta)))
        if not nearest:
            continue
        print(
            f"{accel:14s} {len(nearest):4d} timings: nearest timed set median {np.median(nearest):.3f} p90 "
            f"{np.percentile(nearest, 90):.3f} | dense rate median {np.median(dense):.3f} p90 "
            f"{np.percentile(dense, 90):.3f}"
        )
        nearest_all += nearest
        dense_all += dense
    print(
        f"all            {len(nearest_all):4d} timings: nearest timed set median {np.median(nearest_all):.3f} p90 "
        f"{np.percentile(nearest_all, 90):.3f} | dense rate median {np.median(dense_all):.3f} p90 "
        f"{np.percentile(dense_all, 90):.3f} (|log η error|; 0.405 = a factor 1.5)"
    )
    print(f"moe_nearest_shape_median_error: {100 * (math.exp(np.median(nearest_all)) - 1):.1f} %")


if __name__ == "__main__":
    main()
