"""Turn a SemiAnalysis InferenceX benchmark snapshot (the JSON its API serves) into a tokenomy measurement CSV.

InferenceX runs DeepSeek-R1 (and others) nightly on one node at fixed concurrencies with random prompts, each
request's input and output lengths uniform from 0.8× to 1× the nominal isl/osl and every output generated to its
length (`--random-range-ratio 0.8 --ignore-eos`), and publishes mean/median/p90 TTFT, TPOT, ITL and per-GPU
throughput per point. This keeps the points tokenomy's profiles model as they ran, one row per metric:

* single node, no speculative decoding, no disaggregated prefill; the engine image named with a tag (the version);
* run from 2026-01-21 on, when the client began sending 2 × concurrency warm-up requests before timing
  (SemiAnalysisAI/InferenceX d053ae24: `--num-warmups`); earlier points timed a cold engine's first requests;
* an accelerator in the catalogue (H200, B200, B300, MI300X, MI325X, MI355X) and an engine with a profile (sglang,
  tensorrt-llm);
* the parallel layout the engine's profile runs: SGLang tensor parallel throughout (no expert parallelism, no DP
  attention: its profile has no such recipe), TensorRT-LLM from v0.19 (its PyTorch backend) with attention DP and
  whole experts per GPU (ep = tp: the profile's `moe_attention_dp` recipe); other layouts are counted and dropped,
  with the reason.

Rows: mean TTFT, mean TPOT (not ITL: SGLang's `--stream-interval` sends several tokens per chunk, so the client's
ITL counts chunks; TPOT = (E2E − TTFT)/(output tokens − 1) does not depend on it) and output throughput of the whole
node (the snapshot's per-GPU figure × tp: its GPU count field counts tp × ep for expert-parallel runs on one 8-GPU
node, which Little's law on its own figures rules out). DeepSeek-R1 has DeepSeek-V3's architecture, so the rows name
the catalogue's `deepseek-v3`; FP8 is DeepSeek's block-scaled FP8, FP4 NVIDIA's NVFP4 checkpoint on NVIDIA GPUs and
AMD's MXFP4 one on AMD GPUs.

Run: python scripts/import_inferencex.py SNAPSHOT.json OUT.csv   (prints what it kept and dropped, with reasons)
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenomy.calibrate.measurements import COLUMNS, OPTIONAL_COLUMNS
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.profile import version_before

SNAPSHOT = (
    "vngcloud/InferenceX-app@528c4146b8f502fcbce8df7870a935a970cbae25:packages/app/cypress/fixtures/api/benchmarks.json"
)
ACCELERATORS = {
    "h200": "H200-SXM",
    "b200": "B200",
    "b300": "B300",
    "mi300x": "MI300X",
    "mi325x": "MI325X",
    "mi355x": "MI355X",
}
ENGINES = {"sglang": "sglang", "trt": "tensorrt-llm"}
MODELS = {"dsr1": "deepseek-v3"}
# DeepSeek's own block-scaled FP8; FP4 is NVIDIA's NVFP4 checkpoint on NVIDIA GPUs and AMD's MXFP4 one on AMD GPUs
PRECISIONS = {("fp8", False): "fp8-block", ("fp4", False): "nvfp4", ("fp8", True): "fp8-block", ("fp4", True): "mxfp4"}
# KV cache type as the launch scripts set it (SemiAnalysisAI/InferenceX benchmarks/single_node/dsr1_*.sh, 2026-02 to
# 2026-05; B300 and MI355X in benchmarks/single_node/fixed_seq_len/ as at 843c6254): SGLang `--kv-cache-dtype
# fp8_e4m3` on B200, B300 and the AMD GPUs, none on H200 (the engine's default); TensorRT-LLM `kv_cache_config.dtype:
# fp8`.
KV_PRECISIONS = {
    **{("sglang", gpu): "fp8" for gpu in ("b200", "b300", "mi300x", "mi325x", "mi355x")},
    ("trt", "b200"): "fp8",
}
# Fields a point needs beyond the filters' own: its layout, shape, load and figures.
REQUIRED = ("decode_tp", "decode_ep", "decode_dp_attention", "isl", "osl", "conc", "metrics", "run_url")
WARMUPS_SINCE = "2026-01-21"  # SemiAnalysisAI/InferenceX d053ae24: the client sends 2 × concurrency warm-up requests
DATASET = "uniform:0.8"  # calibrate/predict.py: uniform_lengths (InferenceX's --random-range-ratio 0.8)
# (metric, snapshot key, unit); output throughput is the per-GPU figure × tp
METRICS = (("mean_ttft", "mean_ttft", "s"), ("mean_tpot", "mean_tpot", "s"), ("output_throughput", None, "tokens/s"))


@dataclass(frozen=True)
class Point:
    """One benchmark point of the snapshot that tokenomy can predict as it ran."""

    engine: str
    version: str
    accelerator: str
    tp: int
    precision: str
    isl: int
    osl: int
    concurrency: int
    kv_precision: str
    metrics: dict[str, float]
    source: str


def image_tag(image: str | None) -> str:
    """The tag of an engine image ('lmsysorg/sglang:v0.5.9-cu130' -> 'v0.5.9-cu130'), '' without one."""
    name = (image or "").rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else ""


def why_dropped(item: Any, recipe_since: str) -> str:
    """Why a snapshot point is not kept ('' when it is); `recipe_since`: the TensorRT-LLM release its profile's
    attention-DP recipe runs from."""
    if not isinstance(item, dict):
        return f"not a JSON object but {type(item).__name__}"
    missing = [k for k in REQUIRED if k not in item] + [
        f"metrics.{k}"
        for k in ("mean_ttft", "mean_tpot", "output_tput_per_gpu")
        if k not in (item.get("metrics") or {})
    ]
    if missing:
        return f"missing field {missing[0]}"
    if item.get("is_multinode") or item.get("disagg"):
        return "multi-node or disaggregated prefill"
    if item.get("spec_method") not in (None, "", "none"):
        return f"speculative decoding ({item['spec_method']})"
    if not image_tag(item.get("image")):
        return "no tagged engine image named (version unknown)"
    if str(item.get("date") or "") < WARMUPS_SINCE:
        return f"run before {WARMUPS_SINCE}, when the client began warm-up requests"
    if item.get("framework") not in ENGINES:
        return f"engine '{item.get('framework')}' has no tokenomy profile"
    if item.get("hardware") not in ACCELERATORS:
        return f"accelerator '{item.get('hardware')}' not in the catalogue"
    if item.get("model") not in MODELS or item.get("precision") not in ("fp8", "fp4"):
        return f"model/precision '{item.get('model')}/{item.get('precision')}' not mapped"
    tp, ep, dpa = item["decode_tp"], item["decode_ep"], bool(item["decode_dp_attention"])
    if item["framework"] == "sglang" and (ep > 1 or dpa):
        return "SGLang with expert parallelism or DP attention (its profile runs tensor-parallel MoE)"
    if item["framework"] == "trt" and (
        not (dpa and ep == tp) or version_before(image_tag(item["image"]), recipe_since)
    ):
        return (
            f"TensorRT-LLM before {recipe_since} or without attention DP and whole experts per GPU "
            "(its profile's recipe)"
        )
    return ""


def point(item: dict[str, Any]) -> Point:
    """The kept point of a snapshot item (why_dropped returned '')."""
    tp, m = item["decode_tp"], item["metrics"]
    values = {name: (m[key] if key else m["output_tput_per_gpu"] * tp) for name, key, _ in METRICS}
    return Point(
        engine=ENGINES[item["framework"]],
        version=image_tag(item["image"]),
        accelerator=ACCELERATORS[item["hardware"]],
        tp=tp,
        precision=PRECISIONS[(item["precision"], item["hardware"].startswith("mi"))],
        isl=item["isl"],
        osl=item["osl"],
        concurrency=item["conc"],
        kv_precision=KV_PRECISIONS.get((item["framework"], item["hardware"]), "auto"),
        metrics=values,
        source=f"SemiAnalysis InferenceX API snapshot ({SNAPSHOT}); image {item['image']}; run {item['run_url']}; "
        f"{item.get('date', '')}",
    )


def _order(p: Point) -> tuple[str, str, str, int, int, int, int, str]:
    """Rows in file order: engine, accelerator, precision, tp, shape, concurrency, version."""
    return (p.engine, p.accelerator, p.precision, p.tp, p.isl, p.osl, p.concurrency, p.version)


# Engine settings the launch scripts set that the profiles model (the `settings` column, calibrate/predict.py
# ROW_SETTINGS): TensorRT-LLM's runs balance new requests over the attention-DP ranks (attention_dp_config
# enable_balance with timeout_iters 60, benchmarks/single_node/ at 843c6254).
RUN_SETTINGS = {"tensorrt-llm": "attention_dp_balance=true"}


def rows(points: list[Point]) -> list[dict[str, object]]:
    """Measurement rows (one per metric) of the kept points, in a stable order."""
    out: list[dict[str, object]] = []
    for p in sorted(points, key=_order):
        for metric, _, unit in METRICS:
            out.append(
                {
                    "id": f"ix{len(out):04d}",
                    "source": p.source,
                    "engine": p.engine,
                    "engine_version": p.version,
                    "model": "deepseek-v3",
                    "gpu": p.accelerator,
                    "num_gpus": p.tp,
                    "tp": p.tp,
                    "pp": 1,
                    "precision": p.precision,
                    "kv_precision": p.kv_precision,
                    "isl": p.isl,
                    "osl": p.osl,
                    "dataset": DATASET,
                    "load_kind": "concurrency",
                    "load_value": p.concurrency,
                    "metric": metric,
                    "value": f"{p.metrics[metric]:.6g}",
                    "unit": unit,
                    "scope": "core",
                    "settings": RUN_SETTINGS.get(p.engine, ""),
                }
            )
    return out


def read_snapshot(snapshot: Path) -> list[Any]:
    """The snapshot's list of points; a file that is missing, not JSON or not a list ends the run with a message."""
    try:
        items = json.loads(snapshot.read_text())
    except OSError as exc:
        sys.exit(f"error: {snapshot}: cannot read it ({exc.strerror or exc})")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        sys.exit(f"error: {snapshot}: not JSON ({exc})")
    if not isinstance(items, list):
        sys.exit(f"error: {snapshot}: expected a JSON list of benchmark points, got a {type(items).__name__}")
    return items


def main(snapshot: Path, out: Path) -> None:
    items = read_snapshot(snapshot)
    since = load_profile("tensorrt-llm").python_executor_since  # the recipe runs from its PyTorch backend on
    why = [why_dropped(i, since) for i in items]
    reasons = Counter(why)
    kept = [point(i) for i, reason in zip(items, why, strict=True) if not reason]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, *OPTIONAL_COLUMNS])
        writer.writeheader()
        writer.writerows(rows(kept))
    print(f"{len(items)} points in {snapshot.name}: kept {len(kept)} ({3 * len(kept)} rows) -> {out}")
    for reason, n in reasons.most_common():
        if reason:
            print(f"  dropped {n}: {reason}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/import_inferencex.py SNAPSHOT.json OUT.csv")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
