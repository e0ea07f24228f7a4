"""An independent check on a source the project never fits or calibrates on: SemiAnalysis InferenceX's DeepSeek-R1
points (benchmarks/data/inferencex_deepseek_r1.csv, made by scripts/import_inferencex.py; SOURCES.md), SGLang on
H200, B200, B300, MI300X, MI325X and MI355X and TensorRT-LLM on B200 at fixed concurrencies of 1–128 with random
1k/1k, 1k/8k and 8k/1k prompts. The file lives outside the catalogue, so no profile fit, cross-validation or residual
band has seen a row of it: its errors and 80 % interval coverage are out of sample for the parameters and the bands
alike.

Prints, with the shipped profiles, median / p90 APE and coverage per metric, then the geometric mean of predicted /
measured per engine, accelerator and metric (above 1: predicted too high). Last line:
`inferencex_output_throughput_median: X %`.

Run: python benchmarks/inferencex_check.py   (a few seconds)
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from tokenomy.calibrate.measurements import read_measurements
from tokenomy.calibrate.validate import validate

DATA = Path(__file__).parent / "data" / "inferencex_deepseek_r1.csv"


def main() -> None:
    report = validate(read_measurements(DATA))
    print(f"{len(report['rows'])} rows of {DATA.name}; skipped: {dict(report['skipped_reasons']) or 'none'}")
    for metric, s in report["metrics"].items():
        if s["n"]:
            cover = "—" if s.get("coverage_80") is None else f"{s['coverage_80']:.0%}"
            print(f"{metric:18s} n {s['n']:3d}  median {s['median_ape']:6.1%}  p90 {s['p90_ape']:6.1%}  in 80% {cover}")
    ratios: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in report["rows"]:
        if r.get("predicted"):
            ratios[(r["engine"], r["gpu"], r["metric"])].append(math.log(r["predicted"] / r["measured"]))
    for (engine, gpu, metric), logs in sorted(ratios.items()):
        ratio = math.exp(sum(logs) / len(logs))
        print(f"  {engine:13s} {gpu:9s} {metric:18s} n {len(logs):2d}  predicted/measured {ratio:.2f}")
    print(f"inferencex_output_throughput_median: {100 * report['metrics']['output_throughput']['median_ape']:.1f} %")


if __name__ == "__main__":
    main()
