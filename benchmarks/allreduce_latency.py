"""NVIDIA NIM's fixed-concurrency rows (measurements_nim.csv) split by tensor parallelism, predicted with the
shipped tensorrt-llm profile at its all-reduce latency prior (8 µs per all-reduce, not fitted: no fitted row
identifies it) and at 16 and 25 µs: does the multi-GPU rows' error point at that prior? A screen, not a fit; the
NIM rows fit nothing, and choosing a prior on them would make them in sample.

Prints median / p90 APE per metric for tp = 1 and tp > 1 at each latency; last line
`nim_tp_gt1_itl_median_at_prior: X %`.

Run: python benchmarks/allreduce_latency.py   (about 15 s)
"""

from __future__ import annotations

import numpy as np

from tokenomy.calibrate.measurements import read_measurements
from tokenomy.calibrate.predict import predict
from tokenomy.catalog.models import DATA_DIR
from tokenomy.catalog.profiles import load_profile

LATENCIES_S = (None, 16e-6, 25e-6)  # None: the profile's own prior


def main() -> None:
    rows = read_measurements(DATA_DIR / "measurements_nim.csv")
    at_prior = 0.0
    for latency_s in LATENCIES_S:
        profile = load_profile("tensorrt-llm")
        if latency_s:
            profile = profile.with_values(allreduce_latency_s=latency_s)
        apes: dict[tuple[str, str], list[float]] = {}
        for row in rows:
            pred = predict(row, profile.for_engine_version(row.engine_version)).value
            if pred:
                key = (row.metric, "tp > 1" if row.tp > 1 else "tp = 1")
                apes.setdefault(key, []).append(abs(pred - row.value) / row.value)
        label = f"{profile.allreduce_latency_s * 1e6:.0f} us"
        for (metric, tp), v in sorted(apes.items()):
            spread = f"median {np.median(v):6.1%}  p90 {np.percentile(v, 90):6.1%}"
            print(f"{label:6} {metric:18} {tp:7} n {len(v):3d}  {spread}")
        if latency_s is None:
            at_prior = float(np.median(apes[("mean_itl", "tp > 1")]))
    print(f"nim_tp_gt1_itl_median_at_prior: {100 * at_prior:.1f} %")


if __name__ == "__main__":
    main()
