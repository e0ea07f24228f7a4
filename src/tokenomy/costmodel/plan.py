"""The closed-form plan of one deployment: memory, concurrency, latency, throughput, $ and energy.

`plan()` is pure: it takes a Deployment, a workload shape and prices, and returns a dict with
the stable keys of docs/design.md (times in s, sizes in bytes, money in USD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenomy.catalog.prices import ApiPrice
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.economics import (
    SECONDS_PER_DAY,
    board_power_w,
    break_even_tokens_per_day,
    joules_per_token,
    usd_per_mtok,
)
from tokenomy.costmodel.intervals import figure_intervals, interval_notes
from tokenomy.costmodel.perf import (
    decode_step_seconds,
    max_batch,
    roofline_utilisation,
    steady_state,
)


@dataclass(frozen=True)
class Workload:
    prompt_tokens: int = 1024
    output_tokens: int = 256
    utilisation: float = 0.7  # mean load as a fraction of the replica's maximum throughput


def batch_grid(max_b: int) -> np.ndarray:
    """Batch sizes for curves: powers of two up to the maximum, and the maximum itself."""
    grid = [b for b in (2**i for i in range(0, 16)) if b < max_b] + [max_b]
    return np.array(sorted(set(grid)), dtype=float)


def plan(
    d: Deployment,
    workload: Workload,
    n_gpus: int,
    usd_per_gpu_hour: float | None,
    apis: list[ApiPrice] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Everything `tokenomy plan` reports for one deployment, as a JSON-ready dict."""
    isl, osl = workload.prompt_tokens, workload.output_tokens
    p, mem = d.params, d.memory
    replicas = max(n_gpus // d.n_gpus, 1)
    out: dict[str, Any] = {
        "model": d.model.id,
        "gpu": d.gpu.id,
        "gpus": n_gpus,
        "tp": d.tp,
        "pp": d.pp,
        "replicas": replicas,
        "precision": d.precision,
        "kv_precision": d.kv_dtype,
        "engine": d.profile.name,
        "isl": isl,
        "osl": osl,
        "params": {"total": p.total, "active": p.active},
        "memory": {
            "capacity_bytes": mem.capacity_bytes,
            "usable_bytes": mem.usable_bytes,
            "weights_bytes": mem.weights_bytes,
            "activation_bytes": mem.activation_bytes,
            "runtime_overhead_bytes": mem.runtime_overhead_bytes,
            "needed_bytes": mem.needed_bytes,
            "kv_bytes": max(mem.kv_bytes, 0.0),
            "kv_bytes_per_token": d.kv_bytes_per_token(isl + osl),
            "kv_capacity_tokens": d.kv_capacity_tokens_at(isl + osl) if mem.fits else 0,
        },
        "fits": mem.fits,
        "warnings": warnings(d, workload),
        "max_concurrency": d.max_concurrency(isl, osl) if mem.fits else {"paged": 0, "static": 0},
    }
    one_request_bytes = d.kv_bytes_per_token(isl + osl) * (isl + osl)
    if mem.fits and max_batch(d, isl, osl) < 1:
        out["fits"] = False
        out["max_concurrency"] = {"paged": 0, "static": 0}
        out["why_not"] = (
            f"one request of {isl + osl:,} tokens needs {one_request_bytes / 2**30:.2f} GiB of KV cache; "
            f"{max(mem.kv_bytes, 0) / 2**30:.2f} GiB is left after weights, activations and runtime"
        )
    elif not mem.fits:
        out["why_not"] = (
            f"needs {mem.needed_bytes / 2**30:.1f} GiB per replica for weights, activations and runtime "
            f"before any KV cache; {d.n_gpus} × {d.gpu.id} give {mem.usable_bytes / 2**30:.1f} GiB usable "
            f"({d.profile.gpu_memory_utilization:.0%} of {mem.capacity_bytes / 2**30:.0f} GiB)"
        )
    if not out["fits"]:
        out.update(
            {
                "ttft_s": None,
                "itl_s": None,
                "max_output_tokens_per_s": 0.0,
                "usd_per_mtok": {"input": None, "output": None},
            }
        )
        return out

    b_max = max_batch(d, isl, osl)
    # what the engine runs at once: the KV cache's paged count, capped by the scheduler (llama.cpp's server: 1)
    out["max_concurrency"]["engine"] = min(out["max_concurrency"]["paged"], d.max_seqs)
    out["max_num_seqs"] = d.profile.max_num_seqs  # the engine setting: per attention-DP rank
    grid = batch_grid(b_max)
    curve = steady_state(d, isl, osl, grid)
    ttft, itl = float(curve.ttft_s[0]), float(curve.tpot_s[0])  # single stream = the curve at batch 1
    best = steady_state(d, isl, osl, b_max)
    replica_tps = float(best.output_tokens_per_s[()])
    mbu, mfu = roofline_utilisation(d, b_max, isl + osl / 2)
    activity = float(np.maximum(mbu, mfu))
    power = float(board_power_w(d.gpu.tdp_w or 0.0, d.n_gpus, activity, d.profile.idle_power_fraction))
    out.update(
        {
            "ttft_s": ttft,
            "itl_s": itl,
            "max_batch": b_max,
            "max_output_tokens_per_s": replica_tps * replicas,
            "max_requests_per_s": float(best.requests_per_s[()]) * replicas,
            "itl_at_max_batch_s": float(best.step_seconds[()]),
            "mbu_at_max_batch": float(mbu),
            "mfu_at_max_batch": float(mfu),
            "single_stream_tokens_per_s": float(curve.output_tokens_per_s[0]),
            "curve": {
                "batch": grid.tolist(),
                "output_tokens_per_s": (curve.output_tokens_per_s * replicas).tolist(),
                "itl_s": curve.step_seconds.tolist(),
                "decode_itl_s": decode_step_seconds(d, grid, isl + osl / 2).tolist(),
            },
        }
    )
    if d.gpu.tdp_w:
        out["power_w"] = power * replicas
        out["energy_j_per_output_token"] = float(joules_per_token(power, replica_tps))
    if usd_per_gpu_hour is None:
        out["usd_per_mtok"] = {"input": None, "output": None}
        return out
    replica_usd_per_hour = usd_per_gpu_hour * d.n_gpus
    prices = usd_per_mtok(
        replica_usd_per_hour, replica_tps, isl, osl, float(best.prefill_share[()]), workload.utilisation
    )
    # Capacity a day at the planned utilisation, in tokens of both kinds.
    replica_tokens_per_day = replica_tps * (isl + osl) / osl * SECONDS_PER_DAY * workload.utilisation
    out.update(
        {
            "usd_per_gpu_hour": usd_per_gpu_hour,
            "usd_per_hour": replica_usd_per_hour * replicas,
            "utilisation": workload.utilisation,
            "usd_per_mtok": {"input": prices.input, "output": prices.output, "blended": prices.blended(isl, osl)},
            "replica_tokens_per_day": replica_tokens_per_day,
            "break_even": [
                {
                    "api": api.name,
                    "api_usd_per_mtok_input": api.usd_per_mtok_input,
                    "api_usd_per_mtok_output": api.usd_per_mtok_output,
                    "api_usd_per_mtok_blended": api.blended_usd_per_mtok(isl, osl),
                    "price_date": api.price_date,
                    "tokens_per_day": _finite_or_none(
                        break_even_tokens_per_day(
                            replica_usd_per_hour, replica_tokens_per_day, api.blended_usd_per_mtok(isl, osl)
                        )
                    ),
                }
                for api in apis
            ],
        }
    )
    return out


def with_intervals(result: dict[str, Any]) -> dict[str, Any]:
    """The plan with `intervals_80`: an 80 % interval for each predicted figure (throughput per replica and
    deployment, TTFT, ITL, $/Mtok — inversely with throughput — energy per token), from cross-validated residuals
    of its accelerator family × model family × metric (costmodel/intervals.py); a thin pool's stand-in is noted."""
    out = dict(result)
    out["intervals_80"] = figure_intervals(result, result["gpu"], result["model"])
    out["notes"] = [*result.get("notes", []), *interval_notes(out["intervals_80"])]
    return out


def warnings(d: Deployment, workload: Workload) -> list[str]:
    """Things a user should know before trusting the plan."""
    out = []
    length = workload.prompt_tokens + workload.output_tokens
    if length > d.model.max_context_tokens:
        out.append(
            f"isl + osl = {length:,} tokens exceeds {d.model.id}'s context of {d.model.max_context_tokens:,} tokens"
        )
    if d.tp > 1 and d.model.n_kv_heads % d.tp and not d.model.uses_mla:
        out.append(f"tp={d.tp} does not divide {d.model.n_kv_heads} KV heads: KV heads are replicated")
    compute = d.fmt.compute
    if compute in ("fp8", "int8", "fp4") and d.matmul_compute != compute:
        out.append(
            f"{d.gpu.id} has no {compute} matrix units: {d.fmt.name} weights are dequantised and run "
            f"{d.matmul_compute} matmuls (weight-only; memory as {d.fmt.name}, compute as {d.matmul_compute})"
        )
    if d.fmt.name == "nvfp4" and d.gpu.vendor != "NVIDIA" and d.gpu.supports("fp4"):
        out.append(
            f"nvfp4 is NVIDIA's FP4 format; {d.gpu.id} runs MX formats on its FP4 units, so the figures are FP4 "
            "matmuls at its FP4 rate: --precision mxfp4 names what it runs"
        )
    return out


def _finite_or_none(x: float) -> float | None:
    return None if math.isinf(x) else x
