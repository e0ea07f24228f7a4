"""One MoE layer's time: tokenomy's cost model against NVIDIA's own timings of an engine's MoE kernels.

NVIDIA AIConfigurator ships MoE timings per accelerator and engine (`systems/data/<system>/moe/<trtllm|vllm|sglang>/*/
moe_perf.parquet`: hidden size, expert intermediate size, top-k, experts, MoE tp and ep, tokens, kernel, latency;
TensorRT-LLM's fused MoE op, vLLM's and SGLang's fused-MoE kernels, each kernel an engine version ships for a type
timed apart). `--engine` picks the engine's tables and its profile (default tensorrt-llm). For every catalogue MoE
model whose expert shape NVIDIA timed, each timed expert-parallel run (moe tp 1, ep = N: whole experts, as
TensorRT-LLM's attention-DP + EP recipe runs them on N GPUs, and as the tensorrt-llm profile's attention-DP recipe
holds them on a tp = N deployment) is set beside the cost model's time for the same layer: the engine's profile at
balanced routing (moe_routing_alpha 0, as the compared timings are), the deployment on N GPUs of that accelerator in
the matching precision, the MoE part of a step of T tokens (`costmodel/perf.py` StepCost: the touched experts' weight
reads, the router/permute passes, the experts' compute at their kernel's efficiency and the grouped-GEMM padding; no
all-gather, which NVIDIA times apart) divided over the MoE layers, plus the profile's per-layer overhead and its
per-MoE-layer overhead (`moe_layer_overhead_s`). That last one is the median gap TensorRT-LLM's timings at 1-16 tokens
showed without it (on H100, H200, B200, GB200), so for tensorrt-llm the 1-16 column is in sample for those four; the
other columns and the RTX PRO 6000 are not. Every GPU profile holds that 26 us: vLLM's and SGLang's own kernels sit a
median 29 and 44 us above their profiles' MoE layer without it (`--engine vllm|sglang`), but with those values the
held-out InferenceX and GPUStack checks (benchmarks/heldout_check.py) got worse, output throughput 11.1 -> 17.7 % and
25.9 -> 27.0 % median, as did this comparison's own median error for those engines (29.3 -> 30.4 %, 32.8 -> 34.4 %),
so they were not kept (measured with the profile before uneven routing).

Prints the median model / measured per accelerator and kernel type in bins of T (up to a few hundred tokens: decode,
where the layer streams its experts' weights; thousands: prefill, where it computes); the last line is
`moe_layer_vs_aic_median_error: X %` (exp(median |log(model / measured)|) − 1 over every compared point). NVIDIA's
timings are of the kernel alone, on NVIDIA's machines; below 1 the cost model's MoE layer is faster than measured.
The kernel timings put the MoE layer's other terms in question as well: fitted to them (floor, m½, permute passes by
least squares on log error over H100, H200, B200, GB200) they would be 28 us, 2 rows and 0 passes against the
priors' 32 and 4, median |log error| 0.23 -> 0.17 on those four and 0.245 -> 0.214 on the RTX PRO 6000 kept out; the
shipped profile keeps the priors (README, MoE kernel floor).

Run: python benchmarks/moe_layer_vs_aic.py --aic-python PATH [--engine vllm|sglang]
(PATH: a Python with aiconfigurator, pandas, pyarrow;
e.g. `python3 -m venv V && V/bin/pip install "aiconfigurator==0.12.*" pandas pyarrow`; about 3 s)
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections import defaultdict

import numpy as np

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model, model_ids
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment

# AIConfigurator system -> tokenomy accelerator id
SYSTEMS = {
    "h100_sxm": "H100-SXM",
    "h200_sxm": "H200-SXM",
    "b200_sxm": "B200",
    "gb200": "GB200",
    "rtx_pro_6000_server": "RTX-PRO-6000",
}
# AIConfigurator MoE kernel type -> (tokenomy precision, the MoE kernel type the deployment then runs:
# Deployment.expert_kernel). gpt-oss's MXFP4 experts run W4A16 on Hopper and W4A8 on Blackwell, so a timing of the
# other kernel on an accelerator is not compared.
PRECISIONS = {
    "bfloat16": ("bf16", "bf16"),
    "fp8": ("fp8", "fp8"),
    "fp8_block": ("fp8-block", "fp8-block"),
    "nvfp4": ("nvfp4", "fp4"),
    "w4a16_mxfp4": ("mxfp4-experts", "mxfp4-w4a16"),
    "w4a8_mxfp4_mxfp8": ("mxfp4-experts", "mxfp4-w4a8"),
}
# Token counts compared, by bin (a step's tokens entering the MoE layer); expert parallelism over the ranks the shipped
# rows run (2, 4, 8 GPUs).
TOKEN_BINS = ((1, 16), (17, 128), (129, 512), (513, 4096), (4097, 10**9))
EP_SIZES = (2, 4, 8)
# The accelerators whose 1-16-token timings gave the profile's moe_layer_overhead_s (the RTX PRO 6000 is kept out).
FLOOR_SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm", "gb200")

# tokenomy engine -> AIConfigurator's directory of that engine's tables
FRAMEWORKS = {"tensorrt-llm": "trtllm", "vllm": "vllm", "sglang": "sglang"}

# Runs under --aic-python (argv: the engine's directory, then the systems): every balanced expert-parallel timing
# (moe tp 1) of the newest engine version that timed the point, each of that version's kernels apart (vLLM renamed
# its kernels between versions, so the version is chosen per point before the kernels are told apart).
READER = """
import glob, json, os, re, sys
import pandas as pd
import aiconfigurator_core
root = os.path.join(os.path.dirname(aiconfigurator_core.__file__), "systems", "data")
point = ["moe_dtype", "hidden_size", "inter_size", "topk", "num_experts", "moe_ep_size", "num_tokens"]
for system in sys.argv[2:]:
    files = sorted(glob.glob(os.path.join(root, system, "moe", sys.argv[1], "*", "moe_perf.parquet")))
    if not files:
        continue
    df = pd.concat([pd.read_parquet(f) for f in files])
    df = df[(df.distribution == "balanced") & (df.moe_tp_size == 1) & (df.moe_ep_size > 1)]
    def release(v):  # 0.5.10 after 0.5.6.post2, 1.3.0 after 1.3.0rc23
        m = re.match(r"v?([0-9]+(?:[.][0-9]+)*)(?:rc([0-9]+))?", v)
        nums = tuple(int(x) for x in m.group(1).split(".")) if m else ()
        return (nums, 0, int(m.group(2))) if m and m.group(2) else (nums, 1, 0)
    rank = df.version.map(release)
    df = df[rank == rank.groupby([df[c] for c in point]).transform("max")]
    df = df.groupby(point + ["kernel_source"]).tail(1)
    for r in df.itertuples():
        print(json.dumps({"system": system, "version": r.version, "dtype": r.moe_dtype, "hidden": int(r.hidden_size),
                          "inter": int(r.inter_size), "topk": int(r.topk), "experts": int(r.num_experts),
                          "ep": int(r.moe_ep_size), "tokens": int(r.num_tokens), "latency_ms": float(r.latency)}))
"""


def aic_timings(python: str, engine: str) -> list[dict]:
    """NVIDIA's expert-parallel timings of `engine`'s MoE kernels for the accelerators in SYSTEMS, read by `python`."""
    try:
        argv = [python, "-c", READER, FRAMEWORKS[engine], *SYSTEMS]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"error: --aic-python {python}: cannot run it ({exc})") from None
    if done.returncode != 0:
        raise SystemExit(f"error: {python} could not read AIConfigurator's MoE tables:\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def moe_layer_s(d: Deployment, tokens: int) -> float:
    """The cost model's time for one MoE layer of a step of `tokens` tokens: StepCost.moe_terms plus the routed
    experts' FLOPs at the dense rate, per MoE layer, memory and compute added as the profile's overlap_k = 1 does,
    plus the per-layer and per-MoE-layer overheads."""
    cost, n, prof = d.step_cost(), d.numbers(), d.profile
    memory, compute = cost.moe_terms(tokens)
    dense_s = tokens * d.model.experts_per_token * n.expert_flops_per_token / n.matmul_flops_per_s
    return (memory + compute + dense_s) / n.n_moe_layers + prof.layer_overhead_s + prof.moe_layer_overhead_s


def shapes() -> dict[tuple[int, int, int, int], str]:
    """Catalogue MoE models by expert shape (hidden, expert intermediate, top-k, experts)."""
    out = {}
    for model_id in model_ids():
        m = load_model(model_id)
        if m.is_moe:
            out.setdefault((m.hidden_size, m.expert_intermediate_size, m.experts_per_token, m.n_experts), model_id)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aic-python", default=sys.executable, help="a Python with aiconfigurator, pandas, pyarrow")
    parser.add_argument("--engine", default="tensorrt-llm", choices=sorted(FRAMEWORKS), help="whose MoE kernels")
    args = parser.parse_args()
    by_shape = shapes()
    # balanced routing, as the timings compared here are (moe_routing_alpha scales the experts' compute for uneven)
    profile = load_profile(args.engine).with_values(moe_routing_alpha=0.0)
    ratios: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    floor_gaps_us: list[float] = []  # measured − modelled without the MoE layer's fixed cost, at 1-16 tokens
    models: dict[str, set[str]] = defaultdict(set)
    deployments: dict[tuple, Deployment | None] = {}
    for t in aic_timings(args.aic_python, args.engine):
        model_id = by_shape.get((t["hidden"], t["inter"], t["topk"], t["experts"]))
        precision, kernel = PRECISIONS.get(t["dtype"], (None, None))
        if model_id is None or precision is None or t["ep"] not in EP_SIZES:
            continue
        key = (model_id, t["system"], precision, t["ep"])
        if key not in deployments:
            try:
                gpu = load_accelerator(SYSTEMS[t["system"]])
                deployments[key] = Deployment(load_model(model_id), gpu, t["ep"], 1, precision, "auto", profile)
            except (ValueError, KeyError) as exc:
                print(f"skipped {model_id} {precision} ep{t['ep']} on {t['system']}: {exc}")
                deployments[key] = None
        d = deployments[key]
        if d is None or d.expert_kernel[0] != kernel:
            continue
        ratio = moe_layer_s(d, t["tokens"]) / (t["latency_ms"] * 1e-3)
        if t["tokens"] <= TOKEN_BINS[0][1] and t["system"] in FLOOR_SYSTEMS:
            without = moe_layer_s(d, t["tokens"]) - d.profile.moe_layer_overhead_s
            floor_gaps_us.append((t["latency_ms"] * 1e-3 - without) * 1e6)
        b = next(i for i, (lo, hi) in enumerate(TOKEN_BINS) if lo <= t["tokens"] <= hi)
        ratios[(SYSTEMS[t["system"]], t["dtype"])][b].append(ratio)
        models[model_id].add(t["dtype"])
    bins = "".join(f"{f'{lo}-{hi}' if hi < 10**9 else f'>{lo - 1}':>11s}" for lo, hi in TOKEN_BINS)
    eps = ", ".join(map(str, EP_SIZES))
    print(f"{args.engine}: model / NVIDIA, median per token bin (ep {eps}; points in brackets)")
    print(f"{'accelerator':14s} {'MoE kernel':18s}{bins}")
    errors: list[float] = []
    for (accel, dtype), by_bin in sorted(ratios.items()):
        cells = ""
        for b in range(len(TOKEN_BINS)):
            v = by_bin.get(b, [])
            errors += [abs(math.log(x)) for x in v]
            cells += f"{np.median(v):6.2f} ({len(v):2d})" if v else f"{'-':>11s}"
        print(f"{accel:14s} {dtype:18s}{cells}")
    if floor_gaps_us:
        q25, q50, q75 = np.percentile(floor_gaps_us, [25, 50, 75])
        print(f"measured − modelled without the MoE layer's fixed cost at {TOKEN_BINS[0][0]}-{TOKEN_BINS[0][1]} tokens "
              f"on {', '.join(SYSTEMS[s] for s in FLOOR_SYSTEMS)}: median {q50:.1f} us (interquartile {q25:.1f}-"
              f"{q75:.1f} us, {len(floor_gaps_us)} timings; the profile's moe_layer_overhead_s: "
              f"{profile.moe_layer_overhead_s * 1e6:.0f} us)")  # fmt: skip
    print("expert shapes: " + "; ".join(f"{m} ({', '.join(sorted(k))})" for m, k in sorted(models.items())))
    if not errors:
        raise SystemExit("error: no AIConfigurator MoE timing matched a catalogue model's expert shape")
    print(f"moe_layer_vs_aic_median_error: {(math.exp(float(np.median(errors))) - 1) * 100:.1f} %")


if __name__ == "__main__":
    main()
