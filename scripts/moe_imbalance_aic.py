"""Extract how much slower TensorRT-LLM's MoE kernel runs under uneven expert routing than under balanced routing,
from NVIDIA AIConfigurator's MoE tables, into src/tokenomy/catalog/data/moe_routing_imbalance.csv.

AIConfigurator (pip install "aiconfigurator==0.12.*", Apache-2.0) times TensorRT-LLM's fused MoE op per system under
balanced routing and under power-law routing (`distribution` power_law_1.01 / power_law_1.2: expert loads drawn from a
power law of that exponent), and estimates MoE models at power law: α = 1.2 for MoE models in general
(aiconfigurator_core/sdk/models/moe.py: Qwen3 MoE, Mixtral, Llama 4, gpt-oss) and 1.01 for DeepSeek's
(sdk/models/deepseek.py; sdk/config.py: workload_distribution "power_law"). With whole experts spread over ep GPUs
(moe tp 1), the busiest GPU's experts get more than their share of the routed tokens, and every GPU waits for it.

For each exponent, expert count and ep, the ratio is the median of latency(power law) / latency(balanced) over every
expert shape and MoE kernel type timed with that expert count and ep at MOE_MIN_TOKENS tokens or more (compute-bound:
the ratio of the grouped GEMMs' times, which the cost model scales; at decode sizes the layer reads its experts'
weights and the ratio is near 1), on H100, H200, B200 and GB200 together, each point from the newest collection that
timed it.

Run with an interpreter that has aiconfigurator installed (it brings pandas):
    /path/to/aic-venv/bin/python scripts/moe_imbalance_aic.py [--out PATH]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import re
import sys
from pathlib import Path

try:  # the AIConfigurator interpreter's packages, not tokenomy's dependencies
    import aiconfigurator_core
    import pandas as pd
except ImportError as exc:
    raise SystemExit(
        f"error: {exc.name} is not installed in {sys.executable}: run this script with an interpreter that has "
        'AIConfigurator (python -m venv aic && aic/bin/pip install "aiconfigurator==0.12.*" && '
        "aic/bin/python scripts/moe_imbalance_aic.py)"
    ) from None

SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm", "gb200")  # the datacenter parts with TensorRT-LLM MoE tables
ALPHAS = {"power_law_1.01": 1.01, "power_law_1.2": 1.2}
MOE_MIN_TOKENS = 8192  # tokens per MoE call from which the op is compute-bound (the ratio still rises below it:
# 128 experts over 8 GPUs at 1-4k tokens 1.37-1.55, at 8,192 or more 1.77; the cost model applies it to compute only,
# which a step of a few hundred tokens barely has)
OUT = Path(__file__).resolve().parents[1] / "src/tokenomy/catalog/data/moe_routing_imbalance.csv"
FIELDS = ("alpha", "experts", "ep", "ratio", "timings", "source", "read_on")
POINT = ["kernel_source", "moe_dtype", "hidden_size", "inter_size", "topk", "num_experts", "moe_ep_size", "num_tokens"]


def version_key(name: str) -> tuple[tuple[int, ...], int, int]:
    """A collection directory's engine release for ordering: its release numbers, then a release candidate before the
    final release ('1.3.0rc20' -> ((1, 3, 0), 0, 20), '1.3.0' -> ((1, 3, 0), 1, 0))."""
    match = re.match(r"v?([0-9]+(?:\.[0-9]+)*)(?:rc([0-9]+))?", name)
    if match is None:
        return ((), 0, 0)
    release = tuple(int(x) for x in match.group(1).split("."))
    return (release, 0, int(match.group(2))) if match.group(2) else (release, 1, 0)


def ratios(data: Path) -> tuple[pd.DataFrame, list[str]]:
    """Power-law / balanced latency of every compute-bound whole-expert timing, by exponent (each point from the
    newest collection that timed it), with the tables read."""
    frames, tables = [], []
    for system in SYSTEMS:
        root = data / system / "moe" / "trtllm"
        for path in sorted(root.glob("*/moe_perf.parquet"), key=lambda p: version_key(p.parent.name)):
            tables.append(f"systems/data/{system}/moe/trtllm/{path.parent.name}")
            df = pd.read_parquet(path)
            df = df[(df.moe_tp_size == 1) & (df.num_tokens >= MOE_MIN_TOKENS)]
            wide = df.pivot_table(index=POINT, columns="distribution", values="latency", aggfunc="min").reset_index()
            for name, alpha in ALPHAS.items():
                if name in wide and "balanced" in wide:
                    part = wide[POINT].assign(alpha=alpha, ratio=wide[name] / wide["balanced"], system=system)
                    frames.append(part.dropna())
    table = pd.concat(frames)  # newer collections last: keep each point's newest timing
    return table.groupby(["system", "alpha", *POINT]).tail(1), tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = Path(os.path.dirname(aiconfigurator_core.__file__)) / "systems" / "data"
    from importlib.metadata import version

    table, tables = ratios(data)
    source = f"NVIDIA AIConfigurator {version('aiconfigurator_core')} (PyPI aiconfigurator_core): {', '.join(tables)}"
    read_on = datetime.date.today().isoformat()
    grouped = table.groupby(["alpha", "num_experts", "moe_ep_size"]).ratio.agg(["median", "size"]).reset_index()
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in grouped.itertuples():
            writer.writerow(
                dict(
                    alpha=r.alpha,
                    experts=int(r.num_experts),
                    ep=int(r.moe_ep_size),
                    ratio=round(float(r.median), 3),
                    timings=int(r.size),
                    source=source,
                    read_on=read_on,
                )
            )
    print(f"wrote {len(grouped)} rows to {args.out}")


if __name__ == "__main__":
    main()
