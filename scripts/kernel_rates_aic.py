"""Extract the engine's own kernel rates from NVIDIA AIConfigurator's collected performance tables into
src/tokenomy/catalog/data/kernel_rates.csv: per NVIDIA accelerator, the best memory-bound GEMV bandwidth, the best
GEMM rate per compute type, TensorRT-LLM's custom all-reduce latency for small messages, and its MoE kernel's
grouped-GEMM efficiency per expert shape.

AIConfigurator (pip install "aiconfigurator==0.12.*", Apache-2.0) ships, per system, tables NVIDIA collected by
timing TensorRT-LLM's own kernels (GEMM through its torch flow, custom all-reduce) on that GPU. The cost model uses
the bandwidth and GEMM figures as achievable fractions measured by one harness on the reference H100 and on every
other accelerator alike (catalog/accelerators.py: relative_achievable); the all-reduce latency is documented beside
the profile's prior (docs/cost-model.md). Figures, not code, carry over; each row names its table.

- gemv_bandwidth: max over the bf16 GEMMs with m = 1 whose weights take at least 512 MB (past any L2 cache) of
  weight bytes / latency, GB/s: a memory-bound kernel's achieved bandwidth, as decode's weight reads run;
- gemm_rate: max over the table's shapes of 2·m·n·k / latency per compute type (bf16, fp8 per-tensor, nvfp4), TFLOP/s;
- allreduce_latency: median latency of messages of up to 16,384 bf16 elements (a decode step of up to two tokens of a
  hidden size of 8,192) per tensor-parallel size, µs;
- moe_gemm_efficiency: per MoE kernel type (MOE_DTYPES: the weight × activation types the table times, each against
  the dense GEMM type whose rate it is counted at) and expert shape (hidden, inter, topk, experts), the FLOPs one
  more token costs in the MoE kernel (topk · 6 · hidden · inter) at the GEMM table's best rate over the latency it
  adds (the slope from MOE_MIN_TOKENS tokens up), for a whole expert set on one GPU under balanced routing and for its
  tensor-parallel slices on 2, 4 and 8 GPUs (`moe_rows`); where the whole set was not timed on one GPU (gpt-oss-120b's
  128 experts on an H100), the smallest expert-parallel split that was (shape 'ep=N': each GPU holds 1/N of the
  experts whole and computes topk/N of each token's copies), and the 2-way split where it computes more than
  MOE_SPLIT_FASTER times the whole set's routed copies per GPU at the largest token count both timed. The slope is
  the whole fused MoE op's: its permute/unpermute passes over the routed copies are in it.

Run with an interpreter that has aiconfigurator installed (it brings pandas and pyarrow):
    /path/to/aic-venv/bin/python scripts/kernel_rates_aic.py [--out PATH]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys
from pathlib import Path

try:  # the AIConfigurator interpreter's packages, not tokenomy's dependencies
    import aiconfigurator_core
    import numpy as np
    import pandas as pd
except ImportError as exc:
    raise SystemExit(
        f"error: {exc.name} is not installed in {sys.executable}: run this script with an interpreter that has "
        'AIConfigurator (python -m venv aic && aic/bin/pip install "aiconfigurator==0.12.*" && '
        "aic/bin/python scripts/kernel_rates_aic.py)"
    ) from None

# AIConfigurator system directory -> tokenomy catalogue accelerator id (the systems tokenomy's catalogue has).
SYSTEMS = {
    "h100_sxm": "H100-SXM",
    "h200_sxm": "H200-SXM",
    "b200_sxm": "B200",
    "gb200": "GB200",
    "l40s": "L40S",
    "rtx_pro_6000_server": "RTX-PRO-6000",
    "a100_sxm": "A100-SXM-80GB",
}
GEMM_DTYPES = {"bfloat16": ("bf16", 2.0), "fp8": ("fp8", 1.0), "nvfp4": ("fp4", 0.5625)}  # weight bytes per value
GEMV_MIN_BYTES = 512e6
ALLREDUCE_MAX_ELEMENTS = 16384
MOE_MIN_TOKENS = 4096  # tokens per MoE call from which its latency is taken as linear (compute-bound, large M)
# A whole expert set whose 2-way expert split (the same per-expert GEMMs on half the experts, which cannot run them
# faster) computes more than MOE_SPLIT_FASTER times its routed copies per GPU, at the largest token count both timed,
# was timed with a slower kernel choice than the split: the split's η stands in. Over the 499 whole / split pairs of
# AIConfigurator 0.12's newest tables the ratio is at most 1.24 or at least 1.87 (Llama 4 Scout's experts in FP8:
# 1.9-4.9 on five systems; a 512-expert shape in BF16 on RTX PRO 6000); 1.5 lies in that gap.
MOE_SPLIT_FASTER = 1.5
MOE_TP_SIZES = (1, 2, 4, 8)  # tensor-parallel MoE: each GPU runs every expert's 1/moe_tp slice (inter / moe_tp)
# MoE table dtype -> (kernel_rates.csv compute name, the GEMM table dtype whose best rate η is a fraction of: the
# catalogue's MOE_KERNEL_RATES). Block-scaled FP8 (DeepSeek-V3's checkpoint) counts at the per-tensor FP8 rate;
# gpt-oss's MXFP4 experts run W4A16 (bf16 activations: Hopper's Triton kernel) or W4A8 (MXFP8 activations:
# Blackwell's CUTLASS / TensorRT-LLM-gen kernels), each at its activations' rate (TensorRT-LLM
# examples/models/core/gpt_oss/README.md, its support matrix).
MOE_DTYPES = {
    "bfloat16": ("bf16", "bfloat16"),
    "fp8": ("fp8", "fp8"),
    "nvfp4": ("fp4", "nvfp4"),
    "fp8_block": ("fp8-block", "fp8"),
    "w4a16_mxfp4": ("mxfp4-w4a16", "bfloat16"),
    "w4a8_mxfp4_mxfp8": ("mxfp4-w4a8", "fp8"),
}
OUT = Path(__file__).resolve().parents[1] / "src/tokenomy/catalog/data/kernel_rates.csv"
FIELDS = ("accelerator", "quantity", "compute", "tp", "value", "unit", "shape", "table", "device", "source")


def _newest(directory: Path, filename: str) -> Path | None:
    """The newest collection version directory under `directory` holding `filename` (named by engine release)."""
    if not directory.is_dir():
        return None
    versions = sorted((p for p in directory.iterdir() if (p / filename).is_file()), key=lambda p: p.name)
    return versions[-1] if versions else None


def _table(data: Path, system: str, kind: str, filename: str) -> tuple[pd.DataFrame, str] | None:
    """The newest TensorRT-LLM collection of one table of a system, with its path inside the package; None if absent."""
    version = _newest(data / system / kind / "trtllm", filename)
    if version is None:
        return None
    return pd.read_parquet(version / filename), f"systems/data/{system}/{kind}/trtllm/{version.name}/{filename}"


def _row(
    accel: str,
    quantity: str,
    compute: str,
    value: str,
    unit: str,
    shape: str,
    table: str,
    device: str,
    package: str,
    tp: str = "",
) -> dict:
    """One kernel_rates.csv row, naming the AIConfigurator table it was read from."""
    source = f"NVIDIA AIConfigurator {package} (PyPI aiconfigurator_core), {table}"
    return dict(
        accelerator=accel,
        quantity=quantity,
        compute=compute,
        tp=tp,
        value=value,
        unit=unit,
        shape=shape,
        table=table,
        device=device,
        source=source,
    )


def gemm_rows(system: str, accel: str, data: Path, package: str) -> list[dict]:
    """Best GEMV bandwidth (bf16) and best GEMM rate per compute type of one system's TensorRT-LLM GEMM table."""
    found = _table(data, system, "gemm", "gemm_perf.parquet")
    if found is None:
        return []
    df, table = found
    rows = []
    for dtype, (compute, weight_bytes) in GEMM_DTYPES.items():
        sub = df[df.gemm_dtype == dtype]
        if sub.empty:
            continue
        tflops = 2.0 * sub.m * sub.n * sub.k / (sub.latency * 1e-3) / 1e12
        best = sub.loc[tflops.idxmax()]
        shape = f"m={best.m} n={best.n} k={best.k}"
        rows.append(
            _row(accel, "gemm_rate", compute, f"{tflops.max():.1f}", "TFLOP/s", shape, table, best.device, package)
        )
        if dtype != "bfloat16":
            continue
        gemv = sub[(sub.m == 1) & (sub.n * sub.k * weight_bytes >= GEMV_MIN_BYTES)]
        if gemv.empty:
            continue
        gb_s = gemv.n * gemv.k * weight_bytes / (gemv.latency * 1e-3) / 1e9
        best = gemv.loc[gb_s.idxmax()]
        shape = f"m=1 n={best.n} k={best.k}"
        rows.append(
            _row(accel, "gemv_bandwidth", compute, f"{gb_s.max():.0f}", "GB/s", shape, table, best.device, package)
        )
    return rows


def allreduce_rows(system: str, accel: str, data: Path, package: str) -> list[dict]:
    """Median small-message latency per tensor-parallel size of one system's TensorRT-LLM custom all-reduce table."""
    found = _table(data, system, "comm", "custom_allreduce_perf.parquet")
    if found is None:
        return []
    df, table = found
    small = df[df.message_size <= ALLREDUCE_MAX_ELEMENTS]
    return [
        _row(
            accel,
            "allreduce_latency",
            "bf16",
            f"{grp.latency.median() * 1e3:.2f}",
            "us",
            f"messages of {int(grp.message_size.min())}-{int(grp.message_size.max())} elements",
            table,
            grp.device.iloc[0],
            package,
            tp=str(int(tp)),
        )
        for tp, grp in small.groupby("num_gpus")
    ]


def _latency_ms(grp: pd.DataFrame) -> pd.Series:
    """A MoE table cell's median latency (ms) by token count, ascending."""
    return grp.groupby("num_tokens").latency.median().sort_index()


def _moe_eta(latency_ms: pd.Series, flops_per_token: float, rate_flop_s: float) -> float | None:
    """η of one MoE table cell: flops_per_token at the dense rate over the latency one more token adds (least-squares
    slope over MOE_MIN_TOKENS tokens and up); inf where the slope is not positive, None with under two such counts."""
    big = latency_ms[latency_ms.index >= MOE_MIN_TOKENS]
    if len(big) < 2:
        return None
    slope_s = np.polyfit(big.index.to_numpy(dtype=float), big.to_numpy() * 1e-3, 1)[0]
    return flops_per_token / rate_flop_s / slope_s if slope_s > 0 else float("inf")


def _split_speedup(whole_ms: pd.Series, half_ms: pd.Series) -> float:
    """How many times more routed copies per GPU a 2-way expert split computes than its whole set, at the largest
    token count both cells timed (each GPU of the split computes half the copies); 0 where they share none."""
    shared = whole_ms.index.intersection(half_ms.index)
    if shared.empty:
        return 0.0
    tokens = shared.max()
    return float(whole_ms[tokens] / (2.0 * half_ms[tokens]))


def moe_rows(system: str, accel: str, data: Path, package: str) -> list[dict]:
    """Large-M grouped-GEMM efficiency per MoE kernel type and expert shape of one system's TensorRT-LLM MoE table:
    a whole expert set on one GPU (moe_tp_size = moe_ep_size = 1, balanced routing), its tensor-parallel slices
    (moe_tp_size = 2, 4, 8: each GPU runs every expert's inter / moe_tp columns; shape 'tp=N') and, where the whole
    set was not timed, its smallest expert-parallel split (moe_ep_size = N: shape 'ep=N') and, where the whole set
    computed its routed copies per GPU over MOE_SPLIT_FASTER times slower than its 2-way split, that split; η = the
    FLOPs one more token costs on one GPU (topk · 6 · hidden · inter / (moe_tp · ep)) at the same table release's best
    dense GEMM rate of the kernel's MOE_DTYPES type over the latency one more token adds (the least-squares slope over
    MOE_MIN_TOKENS tokens and up). A slope faster than the dense rate allows (η > 1: not compute-bound, the weight
    reads still dominate) is written as 1.0, so that every shape NVIDIA timed has a row."""
    gemm = _table(data, system, "gemm", "gemm_perf.parquet")
    if gemm is None:
        return []
    release = gemm[1].split("/")[-2]  # the GEMM table's release: η is a ratio of two tables of one harness
    path = data / system / "moe" / "trtllm" / release / "moe_perf.parquet"
    if not path.is_file():
        return []
    df, table = pd.read_parquet(path), f"systems/data/{system}/moe/trtllm/{release}/moe_perf.parquet"
    gemm_df = gemm[0]
    balanced = df[df.distribution == "balanced"]
    sliced = balanced[balanced.moe_tp_size.isin(MOE_TP_SIZES) & (balanced.moe_ep_size == 1)]
    split = balanced[(balanced.moe_tp_size == 1) & (balanced.moe_ep_size > 1)]
    rows = []
    for moe_dtype, (compute, dense_dtype) in MOE_DTYPES.items():
        dense = gemm_df[gemm_df.gemm_dtype == dense_dtype]
        if dense.empty:
            continue
        rate = (2.0 * dense.m * dense.n * dense.k / (dense.latency * 1e-3)).max()  # FLOP/s
        shape_keys = ["hidden_size", "inter_size", "topk", "num_experts"]
        sub = sliced[sliced.moe_dtype == moe_dtype]
        timed = [(key, 1, grp) for key, grp in sub.groupby([*shape_keys, "moe_tp_size"])]
        whole = {key[:4] for key, _, _ in timed if key[4] == 1}
        splits = split[split.moe_dtype == moe_dtype]
        for shape_key, by_shape in splits.groupby(shape_keys):
            if shape_key not in whole:  # the whole set untimed: its smallest expert-parallel split stands in
                ep = int(by_shape.moe_ep_size.min())
                timed.append(((*shape_key, 1), ep, by_shape[by_shape.moe_ep_size == ep]))
        # iter(): a GroupBy's .keys is a list, which dict() would take for a mapping's
        halves = dict(iter(splits[splits.moe_ep_size == 2].groupby(shape_keys)))
        for (hidden, inter, topk, experts, moe_tp), ep, grp in timed:
            latency = _latency_ms(grp)
            eta = _moe_eta(latency, topk * 6.0 * hidden * (inter / moe_tp) / ep, rate)
            half = halves.get((hidden, inter, topk, experts)) if (moe_tp, ep) == (1, 1) else None
            if eta is not None and half is not None:
                half_latency = _latency_ms(half)
                half_eta = _moe_eta(half_latency, topk * 6.0 * hidden * inter / 2, rate)
                if half_eta is not None and _split_speedup(latency, half_latency) > MOE_SPLIT_FASTER:
                    # the whole set ran slower than its 2-way expert split, the same per-expert GEMMs on half the
                    # experts: not the kernel the engine's autotuner picks; the split stands in
                    ep, eta, latency, grp = 2, half_eta, half_latency, half
            if eta is None:
                continue
            big = latency[latency.index >= MOE_MIN_TOKENS]
            shape = (
                f"hidden={hidden} inter={inter} topk={topk} experts={experts} "
                f"tokens={int(big.index.min())}-{int(big.index.max())}"
                + (f" tp={moe_tp}" if moe_tp > 1 else "")
                + (f" ep={ep}" if ep > 1 else "")
            )
            rows.append(
                _row(
                    accel,
                    "moe_gemm_efficiency",
                    compute,
                    f"{min(eta, 1.0):.3f}",
                    "of the dense GEMM rate",
                    shape,
                    table,
                    grp.device.iloc[0],
                    package,
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = Path(os.path.dirname(aiconfigurator_core.__file__)) / "systems" / "data"
    from importlib.metadata import version

    package = version("aiconfigurator_core")
    rows = []
    for system, accel in SYSTEMS.items():
        rows += gemm_rows(system, accel, data, package) + allreduce_rows(system, accel, data, package)
        rows += moe_rows(system, accel, data, package)
    read_on = datetime.date.today().isoformat()
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=(*FIELDS, "read_on"), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "read_on": read_on})
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
