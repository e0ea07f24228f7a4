"""The offline-run closed form against the simulator, on the shipped TensorRT-LLM offline rows that give their run's
request count (`load_value`), in every shipped measurement file: both predict the same run of N fixed-length requests
queued at once.

`costmodel/perf.py: offline_run_tokens_per_s` (cohorts of the batch that fits, a thin last one, prompts spread over
a pipeline's micro-batches) against `sim.run.simulate` on the same deployment, limits and N. Prints the ratio's
percentiles for single-stage and pipelined rows and each one's error against the measurement; the last line is
the 95th percentile of |closed form / simulated − 1| over the single-stage rows.

Run: python benchmarks/offline_run_vs_sim.py   (about a minute)
"""

from __future__ import annotations

import numpy as np

from tokenomy.calibrate.measurements import read_measurements, shipped_measurement_files
from tokenomy.calibrate.predict import _profile_for, row_deployment
from tokenomy.costmodel.deployment import offline_deployment
from tokenomy.costmodel.perf import max_batch, offline_run_tokens_per_s
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload


def main() -> None:
    ratios: dict[str, list[float]] = {"single-stage": [], "pipelined": []}
    errors: dict[str, list[float]] = {"closed form": [], "simulator": []}
    rows = [row for path in shipped_measurement_files() for row in read_measurements(path)]
    for row in rows:
        offline = row.load_kind == "offline" and row.metric == "output_throughput" and row.load_value
        if row.engine != "tensorrt-llm" or not offline:
            continue
        d = row_deployment(row, _profile_for(row, None))
        if not d.memory.fits or max_batch(offline_deployment(d, row.isl, row.osl), row.isl, row.osl) < 1:
            continue
        replicas = max(row.num_gpus // d.n_gpus, 1)
        n = int(-(-row.load_value // replicas))  # the busiest replica's requests
        closed = offline_run_tokens_per_s(d, row.isl, row.osl, n)
        w = Workload(np.zeros(n), np.full(n, row.isl), np.full(n, row.osl))
        summary = simulate(offline_deployment(d, row.isl, row.osl), w, ReplicaConfig()).summary()
        simulated = summary["throughput"]["output_tokens_per_s"]
        ratios["pipelined" if row.pp > 1 else "single-stage"].append(closed / simulated)
        scale = row.load_value / n  # every replica's share of the run, at the busiest one's pace
        errors["closed form"].append(abs(closed * scale - row.value) / row.value)
        errors["simulator"].append(abs(simulated * scale - row.value) / row.value)
    for kind, r in ratios.items():
        p = np.percentile(r, [5, 50, 95])
        print(f"{kind:13} rows {len(r):4}  closed form / simulated: p5 {p[0]:.3f}  median {p[1]:.3f}  p95 {p[2]:.3f}")
    for kind, e in errors.items():
        print(f"{kind:13} against the measurements: median {np.median(e):.1%}  p90 {np.percentile(e, 90):.1%}")
    worst = float(np.percentile(np.abs(np.array(ratios["single-stage"]) - 1), 95))
    print(f"offline_run_vs_sim_p95: {100 * worst:.1f} %")


if __name__ == "__main__":
    main()
