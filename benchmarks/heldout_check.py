"""Independent checks on sources the project never fits or calibrates on (benchmarks/data/SOURCES.md):

* `inferencex`: SemiAnalysis InferenceX's DeepSeek-R1 points (`inferencex_deepseek_r1.csv`, made by
  scripts/import_inferencex.py), SGLang on H200, B200, B300, MI300X, MI325X and MI355X and TensorRT-LLM on B200 at
  fixed concurrencies of 1–128 with random 1k/1k, 1k/8k and 8k/1k prompts;
* `gpustack`: GPUStack's performance-lab runs (`gpustack_serving.csv`, made by scripts/import_gpustack.py): vLLM,
  SGLang and TensorRT-LLM's OpenAI servers at their defaults on H100, H200 and A100, gpt-oss, Qwen3 and DeepSeek-R1,
  every request of a run sent at once (load kind `burst`) or through a fixed concurrency of 1–8.

The files live outside the catalogue, so no profile fit, cross-validation or residual band has seen a row of them:
their errors and 80 % interval coverage are out of sample for the parameters and the bands alike.

Prints, with the shipped profiles, median / p90 APE and coverage per metric and load kind, then the geometric mean
of predicted / measured per engine, accelerator, model, load kind and metric (above 1: predicted too high). Last
line: `<check>_output_throughput_median: X %`.

Run: python benchmarks/heldout_check.py inferencex|gpustack   (a few seconds)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

from tokenomy.calibrate.measurements import read_measurements
from tokenomy.calibrate.validate import validate
from tokenomy.catalog.errors import CatalogError

CHECKS = {"inferencex": "inferencex_deepseek_r1.csv", "gpustack": "gpustack_serving.csv"}
DATA = Path(__file__).parent / "data"


def main(check: str) -> None:
    path = DATA / CHECKS[check]
    try:
        report = validate(read_measurements(path))
    except CatalogError as exc:
        sys.exit(f"error: {exc}")
    print(f"{len(report['rows'])} rows of {path.name}; skipped: {dict(report['skipped_reasons']) or 'none'}")
    for load, s in report["loads"].items():
        cover = "—" if s.get("coverage_80") is None else f"{s['coverage_80']:.0%}"
        print(f"{load:34s} n {s['n']:3d}  median {s['median_ape']:6.1%}  p90 {s['p90_ape']:6.1%}  in 80% {cover}")
    ratios: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for r in report["rows"]:
        if r.get("predicted"):
            key = (r["engine"], r["gpu"], r["model"], r["load_kind"], r["metric"])
            ratios[key].append(math.log(r["predicted"] / r["measured"]))
    for (engine, gpu, model, load, metric), logs in sorted(ratios.items()):
        ratio = math.exp(sum(logs) / len(logs))
        print(f"  {engine:13s} {gpu:13s} {model:16s} {load:11s} {metric:18s} n {len(logs):2d}  pred/meas {ratio:.2f}")
    throughput = report["metrics"].get("output_throughput", {}).get("median_ape")
    if throughput is None:
        sys.exit(f"error: {path}: no output_throughput row was predicted")
    print(f"{check}_output_throughput_median: {100 * throughput:.1f} %")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=sorted(CHECKS), help="which held-out file to check")
    main(parser.parse_args().check)
