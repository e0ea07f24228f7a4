"""Mean TTFT at a fixed concurrency: the simulator against NVIDIA NIM's published tables (measurements_nim.csv),
with the shipped tensorrt-llm profile and with other prompt-token budgets per step (max_num_batched_tokens).

NIM does not publish the engine settings of its runs; this checks whether a token budget explains the TTFT misses
(README, cross-validated accuracy). Prints median / p90 APE of mean TTFT, mean ITL and output throughput per
budget; the last line is `nim_mean_ttft_median_shipped: X %`.

Run: python benchmarks/ttft_concurrency.py   (about 30 s)
"""

from __future__ import annotations

import numpy as np

from tokenomy.calibrate.measurements import read_measurements
from tokenomy.calibrate.predict import predict
from tokenomy.catalog.models import DATA_DIR
from tokenomy.catalog.profiles import load_profile

BUDGETS = (None, 2048, 4096, 16384, 32768, 65536)  # None: the profile's own (8192)


def errors(rows: list, budget: int | None) -> dict[str, list[float]]:
    """APE per metric of every row, predicted with the tensorrt-llm profile at `budget` tokens per step."""
    profile = load_profile("tensorrt-llm")
    if budget:
        profile = profile.with_values(max_num_batched_tokens=budget)
    out: dict[str, list[float]] = {}
    for row in rows:
        pred = predict(row, profile.for_engine_version(row.engine_version)).value
        if pred:
            out.setdefault(row.metric, []).append(abs(pred - row.value) / row.value)
    return out


def main() -> None:
    rows = read_measurements(DATA_DIR / "measurements_nim.csv")
    shipped = 0.0
    for budget in BUDGETS:
        apes = errors(rows, budget)
        label = f"budget {budget or 'shipped'}"
        for metric, v in sorted(apes.items()):
            print(f"{label:16} {metric:18} n {len(v):3d}  median {np.median(v):6.1%}  p90 {np.percentile(v, 90):6.1%}")
        if budget is None:
            shipped = float(np.median(apes["mean_ttft"]))
    print(f"nim_mean_ttft_median_shipped: {100 * shipped:.1f} %")


if __name__ == "__main__":
    main()
