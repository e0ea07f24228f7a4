"""Mean TTFT at a fixed concurrency: the simulator against NVIDIA NIM's published tables (measurements_nim.csv),
with the shipped tensorrt-llm profile, with other prompt-token budgets per step (max_num_batched_tokens), with
vLLM's on-demand KV admission in place of TensorRT-LLM's full-length one (kv_admission), and with other run lengths
(requests per simulated run: the shipped 500, or k times the concurrency, so k = 1 is one wave of sessions all
starting at once).

NIM publishes neither the engine settings nor the request count of its runs; this checks whether a token budget,
the admission rule or the run's length explains the TTFT misses (README, cross-validated accuracy). Prints median /
p90 APE of mean TTFT, mean ITL and output throughput per variant; the last line is
`nim_mean_ttft_median_shipped: X %`.

Run: python benchmarks/ttft_concurrency.py   (about 30 s)
"""

from __future__ import annotations

import numpy as np

from tokenomy.calibrate.measurements import Measurement, read_measurements
from tokenomy.calibrate.predict import SIM_METRICS, SIM_REQUESTS, predict, row_deployment
from tokenomy.catalog.models import DATA_DIR
from tokenomy.catalog.profiles import load_profile
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import WorkloadSpec, build_workload

# (label, profile values changed): the shipped profile first (8,192 tokens per step, full-length admission)
VARIANTS: tuple[tuple[str, dict[str, object]], ...] = (
    ("shipped", {}),
    *((f"budget {b}", {"max_num_batched_tokens": b}) for b in (2048, 4096, 16384, 32768, 65536)),
    ("on-demand KV", {"kv_admission": "on_demand"}),
)
# Requests per simulated run at concurrency c: k·c (k waves of sessions; k = 1: every session starts at t = 0 and the
# run ends with the first wave; k = 3: NIM's benchmarking guide's AIPerf recipe, `--request-count` 3 × concurrency
# with no warm-up inside the run, docs.nvidia.com/nim/benchmarking/llm/latest/quickstart.html) or a fixed count; the
# shipped predictions run SIM_REQUESTS.
RUN_LENGTHS: tuple[tuple[str, int | None, int | None], ...] = (
    *((f"{k} x concurrency", k, None) for k in (1, 2, 3, 5, 20)),
    *((f"{n} requests", None, n) for n in (2000,)),
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


def run_length_errors(rows: list[Measurement], waves: int | None, requests: int | None) -> dict[str, list[float]]:
    """APE of the simulated mean TTFT and ITL of every concurrency row, the run `waves` × its concurrency requests
    long (or `requests` long), shipped profile otherwise."""
    profile = load_profile("tensorrt-llm")
    out: dict[str, list[float]] = {}
    for row in rows:
        if row.load_kind != "concurrency" or row.metric not in ("mean_ttft", "mean_itl"):
            continue
        c = int(row.load_value or 1)
        n = waves * c if waves else requests or SIM_REQUESTS
        d = row_deployment(row, profile.for_engine_version(row.engine_version))
        spec = WorkloadSpec(isl=str(row.isl), osl=str(row.osl), num_requests=n, seed=0, concurrency=c)
        key, stat = SIM_METRICS[row.metric]
        pred = simulate(d, build_workload(spec)).summary()[key][stat]
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
    for label, waves, requests in RUN_LENGTHS:
        for metric, v in sorted(run_length_errors(rows, waves, requests).items()):
            print(f"{label:16} {metric:18} n {len(v):3d}  median {np.median(v):6.1%}  p90 {np.percentile(v, 90):6.1%}")
    print(f"nim_mean_ttft_median_shipped: {100 * shipped:.1f} %")


if __name__ == "__main__":
    main()
