"""What a measured run costs and how close it came to the hardware: $/Mtok, MBU/MFU, the cost model's prediction.

Deployment time: an endpoint that runs K× faster than the deployment it stands for (a twin started
with --speedup K) is measured in wall-clock time; every figure here is converted to the deployment's
time (durations × K, rates ÷ K) before it is priced or set against the accelerator's peaks.

$/Mtok split: the run's GPU cost (price × GPUs × duration) is charged to input and output tokens by
the share of request time spent before the first token (queue + prefill, from the actual send) vs
after it (decode): prefill share = Σ (first token − sent) / Σ (last token − sent) over finished
requests. Queueing is charged to input tokens — the split is exact only for an unloaded server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenomy.bench.metrics import RunArrays
from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.errors import CatalogError
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import attention_flops, experts_touched, kv_read_bytes, roofline_utilisation
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload

TIME_STATS = ("ttft_s", "itl_s", "tpot_s", "e2e_s")


@dataclass(frozen=True)
class Price:
    """What the measured endpoint costs per hour, all GPUs together, and where the figure comes from."""

    usd_per_hour: float
    source: str


def endpoint_price(
    gpu: str | None,
    gpus: int,
    usd_per_hour: float | None,
    pricing: str = "on_demand",
    accelerators_file: str | None = None,
) -> Price | None:
    """--usd-per-hour X (the whole endpoint) wins; else the catalogue's $/GPU-hour of --gpu × --gpus; else None."""
    if usd_per_hour is not None:
        return Price(usd_per_hour, "--usd-per-hour")
    if gpu is None:
        return None
    acc = load_accelerator(gpu, accelerators_file)
    per_gpu = acc.usd_per_gpu_hour(pricing)
    if per_gpu is None:
        raise CatalogError(f"no {pricing} price for {acc.id} in the catalogue; give --usd-per-hour")
    return Price(per_gpu * gpus, f"catalogue {acc.id} {pricing} ${per_gpu:g}/GPU-h × {gpus}")


def prefill_share(a: RunArrays) -> float:
    """Share of request time before the first token (from the actual send), over finished requests."""
    ok = a.ok
    before = np.clip(a.first_token_s[ok] - a.sent_s[ok], 0.0, None).sum()
    total = np.clip(a.end_s[ok] - a.sent_s[ok], 0.0, None).sum()
    return float(before / total) if total > 0 else 0.0


def usd_per_mtok(
    price: Price, duration_s: float, input_tokens: int, output_tokens: int, share: float
) -> dict[str, Any]:
    """$ per million input and output tokens of a run lasting `duration_s` (deployment time)."""
    usd = price.usd_per_hour * duration_s / 3600.0
    return {
        "input": usd * share / input_tokens * 1e6 if input_tokens else 0.0,
        "output": usd * (1 - share) / output_tokens * 1e6 if output_tokens else math.inf,
        "blended": usd / (input_tokens + output_tokens) * 1e6 if input_tokens + output_tokens else math.inf,
        "usd": usd,
        "usd_per_hour": price.usd_per_hour,
        "prefill_share": share,
        "price_source": price.source,
    }


def decode_step_bytes(d: Deployment, batch: float, context_tokens: float) -> float:
    """Bytes one GPU reads in a decode step of `batch` sequences: its weight shard, experts touched, their KV."""
    n = d.numbers()
    return float(n.dense_bytes + experts_touched(n, batch) * n.expert_bytes + kv_read_bytes(n, batch, context_tokens))


def served_flops(d: Deployment, prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> float:
    """FLOPs one GPU of a replica did for these requests: 2·params per token (plus lm_head per output token) and
    attention — prompt tokens attend to half their prompt on average, output tokens to prompt + half the output."""
    n = d.numbers()
    p = np.asarray(prompt_tokens, dtype=float)
    o = np.asarray(output_tokens, dtype=float)
    matmul = (p + o).sum() * n.matmul_flops_per_token + o.sum() * n.lm_head_flops_per_seq
    attn = attention_flops(n, p, p / 2).sum() + attention_flops(n, o, p + o / 2).sum()
    return float(matmul + attn)


def achieved_utilisation(
    d: Deployment, a: RunArrays, duration_s: float, speedup: float, replicas: int
) -> dict[str, Any]:
    """Measured MBU and MFU of a run, and the cost model's MBU/MFU at the same decode batch, per GPU.

    MBU = bytes a decode step reads (weights + KV at the measured mean decode batch and context) ÷ the
    measured mean ITL ÷ peak bandwidth. Mean decode batch by Little's law: Σ decode time ÷ duration ÷
    replicas. MFU = FLOPs of every prompt and output token served ÷ duration ÷ peak FLOP/s.
    """
    ok = a.ok
    if not ok.any() or duration_s <= 0:
        return {}
    decode_s = np.clip(a.end_s[ok] - a.first_token_s[ok], 0.0, None) * speedup
    batch = max(float(decode_s.sum() / duration_s / replicas), 1e-9)
    context = float(np.mean(a.prompt_tokens[ok] + a.output_tokens[ok] / 2))
    itl_s = float(np.mean(a.itl_s)) * speedup if a.itl_s.size else math.nan
    fmt = d.fmt.compute if d.gpu.supports(d.fmt.compute) else "bf16"
    peak_flops = d.gpu.flops_per_s(fmt)
    mbu = decode_step_bytes(d, batch, context) / itl_s / d.gpu.bandwidth_bytes_per_s if itl_s > 0 else math.nan
    flops = served_flops(d, a.prompt_tokens[ok], a.output_tokens[ok]) / replicas
    pred_mbu, pred_mfu = roofline_utilisation(d, max(batch, 1.0), context)
    return {
        "mbu": mbu,
        "mfu": flops / duration_s / peak_flops,
        "mean_decode_batch": batch,
        "mean_context_tokens": context,
        "predicted_decode_mbu": float(pred_mbu),
        "predicted_decode_mfu": float(pred_mfu),
        "peak_bandwidth_bytes_per_s": d.gpu.bandwidth_bytes_per_s,
        "peak_flops_per_s": peak_flops,
    }


def deployment_workload(workload: Workload, speedup: float, replicas: int) -> Workload:
    """The workload one replica of the deployment sees: arrivals in deployment time, every R-th request
    (round robin) when the endpoint has R replicas; a closed loop keeps C / R in flight."""
    idx = np.arange(len(workload))[:: max(replicas, 1)]
    w = workload.subset(idx)
    w.arrival_s = w.arrival_s * speedup
    if w.think_s is not None:
        w.think_s = w.think_s * speedup
    if workload.concurrency:
        w.concurrency = max(workload.concurrency // max(replicas, 1), 1)
    return w


def predicted_summary(
    d: Deployment, workload: Workload, speedup: float = 1.0, replicas: int = 1, seed: int = 0
) -> dict[str, Any]:
    """The simulator's summary of the same workload, in the endpoint's wall-clock time (times ÷ K, rates × K)."""
    w = deployment_workload(workload, speedup, replicas)
    s = simulate(d, w, ReplicaConfig(), seed=seed).summary()
    out: dict[str, Any] = {k: {q: v / speedup for q, v in s[k].items()} for k in TIME_STATS}
    out["throughput"] = {k: v * speedup * replicas for k, v in s["throughput"].items()}
    out["duration_s"] = s["duration_s"] / speedup
    out["requests"] = s["requests"]
    out["mean_decode_batch"] = s["mean_decode_batch"]
    return out


def comparison(measured: dict[str, Any], predicted: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of measured vs predicted (ratio = measured / predicted) for throughput and the latency statistics."""
    rows = []
    for key in ("output_tokens_per_s", "requests_per_s"):
        rows.append(_row(f"throughput.{key}", measured["throughput"][key], predicted["throughput"][key]))
    for metric in TIME_STATS:
        for stat in ("mean", "p50", "p99"):
            rows.append(_row(f"{metric}.{stat}", measured[metric][stat], predicted[metric][stat]))
    return rows


def _row(name: str, measured: float, predicted: float) -> dict[str, Any]:
    ok = predicted and math.isfinite(predicted) and math.isfinite(measured)
    return {"metric": name, "measured": measured, "predicted": predicted, "ratio": measured / predicted if ok else None}
