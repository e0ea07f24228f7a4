"""Mean TTFT at a fixed concurrency: the simulator against NVIDIA NIM's published tables (measurements_nim.csv),
with the shipped tensorrt-llm profile, with other prompt-token budgets per step (max_num_batched_tokens) and with
vLLM's on-demand KV admission in place of TensorRT-LLM's full-length one (kv_admission).

NIM does not publish the engine settings of its runs; this checks whether a token budget or the admission rule
explains the TTFT misses (README, cross-validated accuracy). Prints median / p90 APE of mean TTFT, mean ITL and
output throughput per variant; the last line is `nim_mean_ttft_median_shipped: X %`.

Run: python benchmarks/ttft_concurrency.py   (about 30 s)
"""

from __future__ import annotations

import numpy as np

from tokenomy.calibrate.measurements import read_measurements
from tokenomy.calibrate.predict import predict
from tokenomy.catalog.models import DATA_DIR
from tokenomy.catalog.profiles import load_profile

# (label, profile values changed): the shipped profile first (8,192 tokens per step, full-length admission)
VARIANTS: tuple[tuple[str, dict[str, object]], ...] = (
    ("shipped", {}),
    *((f"budget {b}", {"max_num_batched_tokens": b}) for b in (2048, 4096, 16384, 32768, 65536)),
    ("on-demand KV", {"kv_admission": "on_demand"}),
)


def errors(rows: list, values: dict[str, object]) -> dict[str, list[float]]:
    """APE per metric of every row, predicted with the tensorrt-llm profile with `values` changed."""
    profile = load_profile("tensorrt-llm").with_values(**values)
    out: dict[str, list[float]] = {}
    for row in rows:
        pred = predict(row, profile.for_engine_version(row.engine_version)).value
        if pred:
            out.setdefault(row.metric, []).append(abs(pred - row.value) / row.value)
    return out


def main() -> None:
    rows = read_measurements(DATA_DIR / "measurements_nim.csv")
    shipped = 0.0
    for label, values in VARIANTS:
        apes = errors(rows, values)
        for metric, v in sorted(apes.items()):
            print(f"{label:16} {metric:18} n {len(v):3d}  median {np.median(v):6.1%}  p90 {np.percentile(v, 90):6.1%}")
        if not values:
            shipped = float(np.median(apes["mean_ttft"]))
    print(f"nim_mean_ttft_median_shipped: {100 * shipped:.1f} %")


if __name__ == "__main__":
    main()
