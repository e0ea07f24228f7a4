"""Step times on a roofline: how long one forward step of a serving engine takes.

A step reads the weights it touches plus the KV cache of its sequences (memory time) and does
2·N FLOPs per token plus attention (compute time). The two overlap imperfectly:
t = (t_mem^k + t_comp^k)^(1/k) with k fitted per engine (k=1 adds them, k→∞ is the classic
roofline max), plus fixed per-step and per-layer overheads and tensor-parallel all-reduces
(ring all-reduce: 2·(tp−1)/tp · bytes / link bandwidth + latency, two per layer, Megatron-LM),
and fixed costs per step, per sequence (scheduling, sampling) and per layer.
MoE layers read only the experts a step touches: E·(1 − (1 − k/E)^tokens) of E.
Every function broadcasts over numpy arrays of batch sizes and context lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from tokenomy.costmodel.deployment import Deployment, Numbers

Array = np.ndarray


def experts_touched(n: Numbers, tokens: ArrayLike) -> Array:
    """Expected distinct experts per MoE layer that `tokens` routed tokens hit (uniform top-k routing)."""
    tokens = np.asarray(tokens, dtype=float)
    if not n.n_experts:
        return np.zeros_like(tokens)
    miss = (1.0 - n.experts_per_token / n.n_experts) ** tokens
    return n.n_experts * (1.0 - miss)


def kv_read_bytes(n: Numbers, seqs: ArrayLike, context_tokens: ArrayLike) -> Array:
    """KV bytes a step reads for `seqs` sequences of `context_tokens` each (sliding layers capped at the window)."""
    ctx = np.asarray(context_tokens, dtype=float)
    window = np.minimum(ctx, n.window_tokens) if n.window_tokens else 0.0
    return np.asarray(seqs, dtype=float) * (n.kv_full_bytes_per_token * ctx + n.kv_window_bytes_per_token * window)


def attention_flops(n: Numbers, new_tokens: ArrayLike, keys_per_token: ArrayLike) -> Array:
    """Attention FLOPs for `new_tokens` queries each attending to `keys_per_token` keys (QKᵀ and PV)."""
    keys = np.asarray(keys_per_token, dtype=float)
    window = np.minimum(keys, n.window_tokens) if n.window_tokens else 0.0
    return np.asarray(new_tokens, dtype=float) * (
        n.attn_full_flops_per_pair * keys + n.attn_window_flops_per_pair * window
    )


class StepCost:
    """One deployment's step-time formula with its constants unpacked.

    `seconds` uses only arithmetic, so it takes plain floats (the simulator calls it millions of
    times) as well as numpy arrays (the planner's curves).
    """

    def __init__(self, d: Deployment):
        n, prof = d.numbers(), d.profile
        self.dense_s = n.dense_bytes / n.bytes_per_s
        self.expert_s = n.expert_bytes / n.bytes_per_s
        self.n_experts = float(n.n_experts)
        self.expert_miss = 1.0 - n.experts_per_token / n.n_experts if n.n_experts else 1.0
        self.kv_full_s_per_token = n.kv_full_bytes_per_token / n.bytes_per_s
        self.kv_window_s_per_token = n.kv_window_bytes_per_token / n.bytes_per_s
        self.window_tokens = float(n.window_tokens)
        self.matmul_s_per_token = n.matmul_flops_per_token / n.matmul_flops_per_s
        self.lm_head_s_per_seq = n.lm_head_flops_per_seq / n.matmul_flops_per_s
        self.attn_full_s_per_pair = n.attn_full_flops_per_pair / n.attn_flops_per_s
        self.attn_window_s_per_pair = n.attn_window_flops_per_pair / n.attn_flops_per_s
        self.k = 1.0 if abs(prof.overlap_k - 1.0) < 1e-9 else prof.overlap_k  # a fitted 1.0000000000000002 adds
        self.step_overhead_s = prof.step_overhead_s  # scheduling and sampling, once per engine step
        self.fixed_s = prof.step_overhead_s + n.n_layers * prof.layer_overhead_s
        self.seq_s = prof.seq_overhead_s
        self.comm_fixed_s = 0.0
        self.comm_s_per_token = 0.0
        if n.tp > 1:
            self.comm_fixed_s += 2 * n.n_layers * prof.allreduce_latency_s
            self.comm_s_per_token += (
                2 * n.n_layers * 2 * (n.tp - 1) / n.tp * n.allreduce_bytes_per_token / n.link_bytes_per_s
            )
        if n.pp > 1:
            self.comm_fixed_s += (n.pp - 1) * prof.allreduce_latency_s
            self.comm_s_per_token += (n.pp - 1) * n.allreduce_bytes_per_token / n.link_bytes_per_s

    def decode_line(self, seqs: int) -> tuple[float, float] | None:
        """A decode step of `seqs` sequences as intercept + slope · summed context (seconds, seconds per
        token), or None where the step time is not linear in the context (k ≠ 1 or sliding windows)."""
        if self.k != 1.0 or self.window_tokens:
            return None
        slope_s = self.kv_full_s_per_token + self.attn_full_s_per_pair
        return float(self.seconds(seqs, seqs, 0.0, 0.0)), slope_s

    def seconds(self, new_tokens, seqs, kv_tokens, attn_pairs):  # noqa: ANN001, ANN201 (float or array)
        """Time of one step computing `new_tokens` tokens of `seqs` sequences.

        kv_tokens: cached tokens the step reads, summed over its sequences; attn_pairs: (query,
        key) pairs its attention computes. Sliding-window layers cap both at the window.
        """
        t_mem = self.dense_s + self.kv_full_s_per_token * kv_tokens
        t_comp = self.matmul_s_per_token * new_tokens + self.lm_head_s_per_seq * seqs
        t_comp = t_comp + self.attn_full_s_per_pair * attn_pairs
        if self.n_experts:
            t_mem = t_mem + self.n_experts * (1.0 - self.expert_miss**new_tokens) * self.expert_s
        if self.window_tokens:
            t_mem = t_mem + self.kv_window_s_per_token * np.minimum(kv_tokens, seqs * self.window_tokens)
            t_comp = t_comp + self.attn_window_s_per_pair * np.minimum(attn_pairs, new_tokens * self.window_tokens)
        k = self.k
        t_roof = t_mem + t_comp if k == 1.0 else (t_mem**k + t_comp**k) ** (1.0 / k)
        t_comm = self.comm_fixed_s + self.comm_s_per_token * new_tokens if self.comm_s_per_token else 0.0
        return self.fixed_s + self.seq_s * seqs + t_roof + t_comm


def step_seconds(
    d: Deployment,
    new_tokens: ArrayLike,
    seqs: ArrayLike,
    kv_context_tokens: ArrayLike,
    keys_per_token: ArrayLike,
) -> Array:
    """Time of one forward step computing `new_tokens` tokens for `seqs` sequences.

    kv_context_tokens: mean cached context each sequence reads; keys_per_token: mean keys each
    new token attends to (decode: its context; a prefill chunk from scratch: half its length).
    """
    tokens = np.asarray(new_tokens, dtype=float)
    seqs = np.asarray(seqs, dtype=float)
    kv_tokens = seqs * np.asarray(kv_context_tokens, dtype=float)
    pairs = tokens * np.asarray(keys_per_token, dtype=float)
    return np.asarray(d.step_cost().seconds(tokens, seqs, kv_tokens, pairs))


def draft_step_seconds(draft: Deployment, batch: ArrayLike, context_tokens: ArrayLike) -> Array:
    """One draft-model decode step inside a speculative round: its forward pass without the engine's
    per-step scheduling overhead, which the round pays once (in the verify step)."""
    return decode_step_seconds(draft, batch, context_tokens) - draft.profile.step_overhead_s


def decode_step_seconds(d: Deployment, batch: ArrayLike, context_tokens: ArrayLike) -> Array:
    """One decode step for `batch` sequences with `context_tokens` of context each (= ITL at that batch)."""
    batch = np.asarray(batch, dtype=float)
    return step_seconds(d, batch, batch, context_tokens, context_tokens)


def prefill_seconds(d: Deployment, prompt_tokens: ArrayLike, batch: ArrayLike = 1) -> Array:
    """Prefill of `batch` prompts of `prompt_tokens` each, in chunks of the engine's token budget."""
    prompt = np.asarray(prompt_tokens, dtype=float)
    total = prompt * np.asarray(batch, dtype=float)
    budget = float(d.profile.max_num_batched_tokens)
    chunks = np.maximum(np.ceil(total / budget), 1.0)
    chunk = total / chunks
    # Each chunk's tokens attend on average to half their own prompt; it samples one token per prompt.
    seqs_per_chunk = np.maximum(chunk / np.maximum(prompt, 1.0), 1.0)
    t = step_seconds(d, chunk, seqs_per_chunk, 0.0, prompt / 2)
    return chunks * t


@dataclass(frozen=True)
class SteadyState:
    """Continuous batching of fixed-length requests, at a given concurrency (arrays over batch)."""

    batch: Array  # concurrent sequences
    step_seconds: Array  # one mixed step (decode tokens + the prefill chunks that keep the batch full)
    output_tokens_per_s: Array
    requests_per_s: Array
    prefill_share: Array  # fraction of GPU time attributable to prefill (for input vs output pricing)


def steady_state(d: Deployment, prompt_tokens: int, output_tokens: int, batch: ArrayLike) -> SteadyState:
    """Throughput of continuous batching at `batch` concurrent requests of fixed lengths.

    Over one request lifetime the engine runs `output_tokens` steps; each step decodes the batch
    and prefills batch·isl/osl prompt tokens to replace finished requests (chunked/mixed
    batching). When the token budget per step cannot hold both, more steps are needed.
    """
    b = np.asarray(batch, dtype=float)
    isl, osl = float(prompt_tokens), float(max(output_tokens, 1))
    budget = float(d.profile.max_num_batched_tokens)
    steps = np.maximum(osl, np.ceil(b * (isl + osl) / budget))
    tokens = b * (isl + osl) / steps
    decode_seqs = b * osl / steps
    ctx = isl + osl / 2
    # Keys per new token: decode tokens see ~ctx; prefill tokens see half their prompt.
    keys = (decode_seqs * ctx + (tokens - decode_seqs) * isl / 2) / tokens
    # Pipeline parallelism keeps pp micro-batches in flight: each step's wall time is that of one
    # micro-batch (batch / pp) passing through the whole model.
    pp = d.pp
    t = step_seconds(d, tokens / pp, decode_seqs / pp, ctx, keys)
    cycle = steps * t
    out_tps = b * osl / cycle
    # Split time between prefill and decode by what each would cost alone.
    t_pf = prefill_seconds(d, isl, b)
    t_dec = osl * decode_step_seconds(d, b, ctx)
    share = t_pf / (t_pf + t_dec)
    return SteadyState(b, t, out_tps, out_tps / osl, share)


def max_batch(d: Deployment, prompt_tokens: int, output_tokens: int) -> int:
    """Largest concurrency the KV cache and scheduler allow when each request reserves its full length."""
    length = prompt_tokens + output_tokens
    by_kv = d.kv_capacity_tokens_at(length) // max(length, 1)
    return int(max(0, min(by_kv, d.profile.max_num_seqs)))


def offline_throughput(d: Deployment, prompt_tokens: int, output_tokens: int) -> SteadyState:
    """Throughput of an offline run (all requests queued): steady state at the largest batch that fits."""
    return steady_state(d, prompt_tokens, output_tokens, max(max_batch(d, prompt_tokens, output_tokens), 1))


def batch_latency_seconds(d: Deployment, prompt_tokens: int, output_tokens: int, batch: int) -> float:
    """A static batch run to completion: prefill all prompts, then decode until every request is done."""
    ctx = prompt_tokens + np.arange(output_tokens - 1) + 1
    decode = decode_step_seconds(d, batch, ctx).sum() if output_tokens > 1 else 0.0
    return float(prefill_seconds(d, prompt_tokens, batch) + decode)


def single_stream(d: Deployment, prompt_tokens: int, output_tokens: int) -> tuple[float, float]:
    """(TTFT, ITL) of one request alone on the replica, in seconds."""
    ttft = float(prefill_seconds(d, prompt_tokens))
    itl = float(decode_step_seconds(d, 1, prompt_tokens + output_tokens / 2))
    return ttft, itl


def roofline_utilisation(d: Deployment, batch: ArrayLike, context_tokens: ArrayLike) -> tuple[Array, Array]:
    """(MBU, MFU) of a decode step: bytes/s and FLOP/s achieved against the accelerator's peaks."""
    n = d.numbers()
    b = np.asarray(batch, dtype=float)
    t = decode_step_seconds(d, b, context_tokens)
    bytes_read = n.dense_bytes + experts_touched(n, b) * n.expert_bytes + kv_read_bytes(n, b, context_tokens)
    flops = b * n.matmul_flops_per_token + b * n.lm_head_flops_per_seq + attention_flops(n, b, context_tokens)
    peak_bytes = d.gpu.bandwidth_bytes_per_s
    fmt_compute = d.fmt.compute if d.gpu.supports(d.fmt.compute) else "bf16"
    peak_flops = d.gpu.flops_per_s(fmt_compute)
    return bytes_read / t / peak_bytes, flops / t / peak_flops


def queued_ttft_s(
    cost: StepCost, budget_tokens: int, running_seqs: int, running_context_tokens: float, queued_prompt_tokens: int
) -> float:
    """TTFT of a new request behind `queued_prompt_tokens` of prompts (its own included), computed in chunked
    steps of `budget_tokens` alongside `running_seqs` decoding sequences holding `running_context_tokens` of KV."""
    b = running_seqs
    per_step = max(budget_tokens - b, 1)
    chunk = min(queued_prompt_tokens, per_step)
    ctx = running_context_tokens
    step = cost.seconds(chunk + b, b + 1, ctx, ctx + chunk * chunk / 2)
    return math.ceil(queued_prompt_tokens / per_step) * step
