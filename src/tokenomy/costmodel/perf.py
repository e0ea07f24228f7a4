"""Step times on a roofline: how long one forward step of a serving engine takes.

A step reads the weights it touches plus the KV cache of its sequences (memory time) and does
2·N FLOPs per token plus attention (compute time). The two overlap imperfectly:
t = (t_mem^k + t_comp^k)^(1/k) with k fitted per engine (k=1 adds them, k→∞ is the classic
roofline max), plus fixed per-step and per-layer overheads and tensor-parallel all-reduces
(ring all-reduce: 2·(tp−1)/tp · bytes / link bandwidth + latency, two per layer, Megatron-LM),
and fixed costs per step, per sequence (scheduling, sampling), per layer and per MoE layer (below).
MoE layers read only the experts a step touches: E·(1 − (1 − k/E)^tokens) of E. As MoE executes (grouped
GEMM over the touched experts, CUTLASS/TensorRT-LLM/vLLM fused-MoE style), three further terms and a fixed cost,
all 0 for dense models (the first and third, and the fixed cost, also for a profile that leaves them at 0; the second
applies under every profile):
  - grouped-GEMM efficiency falls when each touched expert gets few tokens: with m = tokens·k / E_touched rows
    per expert, an expert's GEMMs run at m / (m + m½) of the dense rate (m½: profile `moe_gemm_half_tokens`,
    a saturating tile-fill form), so expert compute tokens·k·F_e / (R·eff) = tokens·k·F_e / R
    + E_touched · m½ · F_e / R: each touched expert costs m½ padded rows of compute on top (F_e: one token's
    FLOPs in one expert, R: the dense GEMM rate);
  - at large token counts the MoE kernel's grouped GEMMs reach only η of their rate R_e, by accelerator, MoE
    kernel type (Deployment.expert_kernel: the weights' compute type, block-scaled FP8, gpt-oss's MXFP4 as W4A16 on
    Hopper or W4A8 on Blackwell, R_e the rate of its activations' type: the FP8 rate for W4A8 beside bf16 attention,
    else the dense rate R) and expert shape as NVIDIA timed TensorRT-LLM's MoE kernel (Numbers.expert_gemm_efficiency,
    catalog kernel_rates.csv; small experts far below it: B200 NVFP4 runs Qwen3-30B-A3B's 2048 × 768 experts at
    0.26), and under tensor-parallel MoE at the slice each GPU runs (Deployment.moe_tp: Mixtral 8x7B's experts in
    eighths on H100 FP8 at 0.68, whole at 0.96): each routed copy's F_e costs F_e·(1/(η·R_e) − 1/R) more compute
    than at the dense rate, a saving where η·R_e > R (the measured slope is the whole fused op's, so at large token
    counts it holds the permute passes below too, which are then counted twice); under uneven routing (profile
    `moe_routing_alpha`: expert loads a power law of that exponent, as NVIDIA AIConfigurator assumes) the busiest GPU's
    grouped GEMMs take φ times as long and every GPU waits for it, so that compute is φ·F_e/(η·R_e) (φ: NVIDIA's
    timings of the op under power-law over balanced routing at large token counts for the model's expert count and the
    GPUs holding whole experts, catalog moe_routing_imbalance; Qwen3 MoE's 128 experts over 8 GPUs at α = 1.2: 1.77,
    over 1: 1.10);
  - router, permute and unpermute move each token's k routed hidden-state copies: `moe_permute_passes`
    passes of k × hidden × 2 bytes per MoE layer per token, at the memory rate, shared by the tp ranks (with
    expert parallelism each rank permutes its own share of the tokens).
  And each MoE layer's fused op costs a fixed `moe_layer_overhead_s` per step on top of the per-layer overhead (its
  routing, permute set-up and grouped-GEMM launches: NVIDIA's timings of TensorRT-LLM's MoE kernel at 1-16 tokens
  sit a median 26 us above the terms above; benchmarks/moe_layer_vs_aic.py).
Expert parallelism (Deployment.expert_parallel, ep = tp GPUs; TensorRT-LLM's attention DP + EP): each GPU
runs attention and the other non-expert layers on its own share of the sequences with those weights whole, holds
1/ep of the experts whole, and exchanges tokens twice per MoE layer (dispatch and combine all-to-all): per token,
c = (ep − 1)·(1 − (1 − 1/ep)^k) remote ranks (distinct ranks its k experts sit on, less its own) × hidden × 2
bytes each way at the link rate, and no tensor-parallel all-reduce.
Under attention DP a prompt chunk runs its attention and non-expert layers on its own sequence's rank alone, and every
rank waits for the busiest one at the next MoE layer's exchange: a step's K chunks sit whole on the R ranks, at least
⌈K/R⌉ on the busiest (as evenly as whole chunks allow), so the step pays that rank's chunk compute less the even 1/R
share the roofline already counts (`StepCost.rank_excess_s`; decodes spread evenly; a full step, every rank at its own
budget, is even; requests arriving independently bring K ~ Poisson(k) chunks a step, `poisson_rank_excess_s`; an
offline run's cohort of b requests prefills on every rank at once, the busiest holding ⌈b/R⌉ of them, `steady_state`).
TensorRT-LLM does not hold prompts back to balance them over the ranks unless attention_dp_config.enable_balance is
set (default off; EngineProfile.attention_dp_balance: then no excess once the replica holds a sequence per rank; a
lone prompt still runs on its own rank, and the wait for the others is not modelled). Load imbalance of the routed
experts between ranks is the routing term above (moe_routing_alpha); the weight reads at decode sizes assume every
touched expert is read, as under balanced routing.
A profile's attention-DP recipe (EngineProfile.moe_attention_dp) takes the memory layout and per-rank scheduler
limits of attention DP (Deployment.attention_dp_ranks: weights held, KV per GPU) and whole experts per GPU; each GPU
reads the attention, dense-MLP and shared-expert weights it holds whole (Deployment.replicated_bytes) in full every
step, as under expert parallelism, and the experts and lm_head (and a tied embedding) split tp-ways, while its
FLOPs stay split tp-ways (whole layers over 1/tp of the sequences); each MoE layer gathers every rank's hidden states
before the experts and scatters the sums back after them (an all-gather and a reduce-scatter: 2 × (tp − 1)/tp ×
hidden × 2 bytes per token per MoE layer at the link rate, two latencies; TensorRT-LLM gathers FP8 and NVFP4 inputs
already quantized, which refitted worse: README), and the attention and dense MLP layers, whole on each rank,
exchange nothing (the all-to-all form made NVLink MoE rows too fast; split reads and two all-reduces on every layer,
the form before, left cross-validated offline throughput 10.2–10.6% median against 8.8–9.1%: README,
cross-validated accuracy).
Every function broadcasts over numpy arrays of batch sizes and context lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike

from tokenomy.costmodel.deployment import Deployment, Numbers, offline_deployment

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


@dataclass(frozen=True, slots=True)
class DecodeCurve:
    """A decode step of a fixed batch as a function of the batch's summed context x (tokens), StepCost.seconds
    with the batch held: rest_s + ((mem_s + mem_s_per_token·x)^k + (comp_s + comp_s_per_token·x)^k)^(1/k),
    the memory part reading x cached tokens and the compute part attending over them."""

    rest_s: float  # fixed, per-sequence and communication time: not growing with the context
    mem_s: float
    mem_s_per_token: float
    comp_s: float
    comp_s_per_token: float
    k: float

    @property
    def linear(self) -> bool:
        """Whether the step grows linearly with the context (k = 1): intercept_s + slope_s_per_token · x."""
        return self.k == 1.0

    @property
    def intercept_s(self) -> float:
        """The step time at no context, the line's intercept when linear."""
        return self.rest_s + self.mem_s + self.comp_s

    @property
    def slope_s_per_token(self) -> float:
        """Seconds each summed context token adds, the line's slope when linear."""
        return self.mem_s_per_token + self.comp_s_per_token

    def seconds(self, context_tokens: float) -> float:
        """The step time at a summed context of `context_tokens`."""
        t_mem = self.mem_s + self.mem_s_per_token * context_tokens
        t_comp = self.comp_s + self.comp_s_per_token * context_tokens
        k = self.k  # as StepCost.seconds overlaps them
        return self.rest_s + (t_mem + t_comp if k == 1.0 else (t_mem**k + t_comp**k) ** (1.0 / k))

    def pipelined(self, pp: int, host_s: float) -> DecodeCurve:
        """The round of pp alike micro-batches, each this curve at 1/pp of the round's context, plus (pp − 1)
        of their host parts host_s (pipeline_round_s)."""
        return DecodeCurve(
            self.rest_s + (pp - 1) * host_s,
            self.mem_s,
            self.mem_s_per_token / pp,
            self.comp_s,
            self.comp_s_per_token / pp,
            self.k,
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
        # grouped-GEMM padding per touched expert and hidden-state dispatch per token (module docstring)
        expert_rate = n.expert_matmul_flops_per_s or n.matmul_flops_per_s
        self.expert_pad_s = prof.moe_gemm_half_tokens * n.expert_flops_per_token / expert_rate
        self.dispatch_s_per_token = prof.moe_permute_passes * n.moe_dispatch_bytes_per_token / n.bytes_per_s
        # the routed experts' FLOPs, counted at the dense rate in matmul_s_per_token, run at η of their kernel's rate:
        # the difference on top (negative where that rate beats the dense one: W4A8 experts beside bf16 attention)
        # and, under uneven routing, the busiest GPU's share of them takes n.expert_imbalance times as long
        self.expert_gemm_s_per_token = (
            d.model.experts_per_token
            * n.expert_flops_per_token
            * (n.expert_imbalance / (n.expert_gemm_efficiency * expert_rate) - 1.0 / n.matmul_flops_per_s)
            if n.n_experts
            else 0.0
        )
        self.kv_full_s_per_token = n.kv_full_bytes_per_token / n.bytes_per_s
        self.kv_window_s_per_token = n.kv_window_bytes_per_token / n.bytes_per_s
        self.window_tokens = float(n.window_tokens)
        self.matmul_s_per_token = n.matmul_flops_per_token / n.matmul_flops_per_s
        self.lm_head_s_per_seq = n.lm_head_flops_per_seq / n.matmul_flops_per_s
        self.matmul_step_s = n.matmul_step_s  # one-token kernels slower than batched ones (CPU hosts); else 0
        self.attn_full_s_per_pair = n.attn_full_flops_per_pair / n.attn_flops_per_s
        self.attn_window_s_per_pair = n.attn_window_flops_per_pair / n.attn_flops_per_s
        self.k = 1.0 if abs(prof.overlap_k - 1.0) < 1e-9 else prof.overlap_k  # a fitted 1.0000000000000002 adds
        self.step_overhead_s = prof.step_overhead_s  # scheduling and sampling, once per engine step
        self.fixed_s = prof.step_overhead_s + n.n_layers * prof.layer_overhead_s
        self.fixed_s += n.n_moe_layers * prof.moe_layer_overhead_s
        self.seq_s = prof.host_seq_overhead_s(d.attention_dp_ranks, d.gpu.host_overhead_factor)
        # attention DP: one rank's compute per prompt token and attention pair (its non-expert layers whole), 0 without
        self.ranks = d.attention_dp_ranks
        self.balanced = prof.attention_dp_balance  # prompts held back until every rank has one (module docstring)
        whole = float(self.ranks) if self.ranks > 1 else 0.0
        non_expert_flops = n.matmul_flops_per_token - n.experts_per_token * n.expert_flops_per_token
        self.rank_s_per_token = whole * non_expert_flops / n.matmul_flops_per_s
        self.rank_full_s_per_pair = whole * self.attn_full_s_per_pair
        self.rank_window_s_per_pair = whole * self.attn_window_s_per_pair
        self.comm_fixed_s = 0.0
        self.comm_s_per_token = 0.0
        if n.ep > 1:  # dispatch + combine all-to-all per MoE layer, each rank sending its own tokens' copies
            self.comm_fixed_s += 2 * n.n_moe_layers * prof.allreduce_latency_s
            copies = n.ep_remote_ranks_per_token / n.ep  # per token of the replica's step, per GPU
            self.comm_s_per_token += 2 * n.n_moe_layers * copies * n.allreduce_bytes_per_token / n.link_bytes_per_s
        elif n.tp > 1 and d.attention_dp_ranks > 1:  # attention DP: an all-gather and a reduce-scatter per MoE layer
            self.comm_fixed_s += 2 * n.n_moe_layers * prof.allreduce_latency_s
            self.comm_s_per_token += (
                2 * n.n_moe_layers * (n.tp - 1) / n.tp * n.allreduce_bytes_per_token / n.link_bytes_per_s
            )
        elif n.tp > 1:
            self.comm_fixed_s += 2 * n.n_layers * prof.allreduce_latency_s
            self.comm_s_per_token += (
                2 * n.n_layers * 2 * (n.tp - 1) / n.tp * n.allreduce_bytes_per_token / n.link_bytes_per_s
            )
        if n.pp > 1:
            self.comm_fixed_s += (n.pp - 1) * prof.allreduce_latency_s
            self.comm_s_per_token += (n.pp - 1) * n.allreduce_bytes_per_token / n.link_bytes_per_s

    def host_seconds(self, seqs):  # noqa: ANN001, ANN201 (float or array)
        """The host part of a step of `seqs` sequences: scheduling, input preparation and bookkeeping
        (step_overhead_s + the per-sequence cost), which with pp > 1 every pipeline rank pays for every
        micro-batch (`pipeline_round_s`)."""
        return self.step_overhead_s + self.seq_s * seqs

    def decode_curve(self, seqs: int) -> DecodeCurve | None:
        """A decode step of `seqs` sequences as a function of their summed context (DecodeCurve), or None with
        sliding-window layers (their KV read and attention stop growing at the window)."""
        if self.window_tokens:
            return None
        t_mem, t_comp = self.roof_terms(seqs, seqs, 0.0, 0.0)
        rest_s = float(self.rest_seconds(seqs, seqs))
        return DecodeCurve(rest_s, t_mem, self.kv_full_s_per_token, t_comp, self.attn_full_s_per_pair, self.k)

    def rest_seconds(self, new_tokens, seqs):  # noqa: ANN001, ANN201 (float or array)
        """The part of a step outside the memory/compute overlap: fixed and per-sequence costs and communication."""
        t_comm = self.comm_fixed_s + self.comm_s_per_token * new_tokens if self.comm_s_per_token else 0.0
        return self.fixed_s + self.seq_s * seqs + t_comm

    def roof_terms(self, new_tokens, seqs, kv_tokens, attn_pairs):  # noqa: ANN001, ANN201 (float or array)
        """The memory time and the compute time of a step, the two parts `seconds` overlaps with exponent k."""
        t_mem = self.dense_s + self.kv_full_s_per_token * kv_tokens
        t_comp = self.matmul_s_per_token * new_tokens + self.lm_head_s_per_seq * seqs
        t_comp = t_comp + self.attn_full_s_per_pair * attn_pairs
        if self.matmul_step_s:
            t_comp = t_comp + self.matmul_step_s
        if self.n_experts:
            moe_mem, moe_comp = self.moe_terms(new_tokens)
            t_mem, t_comp = t_mem + moe_mem, t_comp + moe_comp
        if self.window_tokens:
            t_mem = t_mem + self.kv_window_s_per_token * np.minimum(kv_tokens, seqs * self.window_tokens)
            t_comp = t_comp + self.attn_window_s_per_pair * np.minimum(attn_pairs, new_tokens * self.window_tokens)
        return t_mem, t_comp

    def moe_terms(self, new_tokens):  # noqa: ANN001, ANN201 (float or array)
        """The MoE terms a step of `new_tokens` tokens adds to the memory and compute times, over every MoE layer
        (module docstring): the touched experts' weights and the permute passes; the grouped-GEMM padding and the
        experts' kernel-rate difference (their FLOPs at the dense rate are in matmul_s_per_token)."""
        touched = self.n_experts * (1.0 - self.expert_miss**new_tokens)
        t_mem = touched * self.expert_s + self.dispatch_s_per_token * new_tokens
        return t_mem, touched * self.expert_pad_s + self.expert_gemm_s_per_token * new_tokens

    def rank_compute_s(self, prompt_tokens, prompt_pairs):  # noqa: ANN001, ANN201 (float or array)
        """Attention DP: one rank's compute for prompt chunks of `prompt_tokens` tokens and `prompt_pairs` attention
        pairs computed on that rank alone (non-expert matmuls and attention; sliding layers capped at the window)."""
        t = self.rank_s_per_token * prompt_tokens + self.rank_full_s_per_pair * prompt_pairs
        if self.window_tokens:
            t = t + self.rank_window_s_per_pair * np.minimum(prompt_pairs, prompt_tokens * self.window_tokens)
        return t

    def rank_excess_s(self, busiest_tokens, busiest_pairs, prompt_tokens, prompt_pairs, seqs):  # noqa: ANN001, ANN201
        """Attention DP: what the busiest rank's prompt chunks (busiest_tokens, busiest_pairs) add to a step of `seqs`
        sequences over the even 1/R split of all its chunks (prompt_tokens, prompt_pairs) that `seconds` counts (module
        docstring); 0 without attention DP, and 0 where the engine balances prompts and holds a sequence per rank."""
        if not self.rank_s_per_token:
            return 0.0
        busiest = self.rank_compute_s(busiest_tokens, busiest_pairs)
        excess = np.maximum(busiest - self.rank_compute_s(prompt_tokens, prompt_pairs) / self.ranks, 0.0)
        return np.where(np.asarray(seqs) >= self.ranks, 0.0, excess) if self.balanced else excess

    def seconds(self, new_tokens, seqs, kv_tokens, attn_pairs, rank_excess_s=0.0):  # noqa: ANN001, ANN201
        """Time of one step computing `new_tokens` tokens of `seqs` sequences (float or array).

        kv_tokens: cached tokens the step reads, summed over its sequences; attn_pairs: (query,
        key) pairs its attention computes. Sliding-window layers cap both at the window. rank_excess_s: the busiest
        attention-DP rank's compute beyond an even split (`rank_excess_s`), part of the compute time.
        """
        t_mem, t_comp = self.roof_terms(new_tokens, seqs, kv_tokens, attn_pairs)
        t_comp = t_comp + rank_excess_s
        k = self.k
        t_roof = t_mem + t_comp if k == 1.0 else (t_mem**k + t_comp**k) ** (1.0 / k)
        return self.rest_seconds(new_tokens, seqs) + t_roof


def expected_tokens(acceptance: ArrayLike, draft_tokens: int) -> Array:
    """Mean tokens emitted per verify step: (1 − α^(γ+1)) / (1 − α); γ+1 when α = 1 (Leviathan et al., 2023)."""
    a = np.asarray(acceptance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (1.0 - a ** (draft_tokens + 1)) / (1.0 - a)
    return np.where(np.isclose(a, 1.0), draft_tokens + 1.0, out)


def pipeline_round_s(micro_batch_s: list[float], pp: int, host_s: list[float] | None = None) -> float:
    """A round of pipeline parallelism (vLLM virtual engines, TensorRT-LLM's PP executor loop; GPipe-style 1F):
    micro-batch j takes t_j through the whole model, h_j of it host work (StepCost.host_seconds). Its GPU work
    splits over the pp stages, but every rank's executor schedules and prepares every micro-batch, so each stage
    pays h_j in full: in a cycle every stage serves every micro-batch once (≥ Σ h_j + Σ (t_j − h_j) / pp), and
    each micro-batch crosses all stages before its next step (≥ max t_j), the larger bound holding."""
    hosts = host_s or [0.0] * len(micro_batch_s)
    per_stage = sum(h + (t - h) / pp for t, h in zip(micro_batch_s, hosts, strict=True) if t > 0)
    return max(max(micro_batch_s, default=0.0), per_stage)


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


def prompt_room(d: Deployment, budget: ArrayLike, rows: ArrayLike) -> Array:
    """Tokens one prompt's chunk may take in a step of `budget` tokens beside `rows` decoding tokens: its own
    attention-DP rank's part of what the decodes leave (the whole of it without attention DP)."""
    return (np.asarray(budget, dtype=float) - rows) / d.attention_dp_ranks


def prefill_seconds(d: Deployment, prompt_tokens: ArrayLike, batch: ArrayLike = 1) -> Array:
    """Prefill of `batch` prompts of `prompt_tokens` each, in chunks of the engine's token budget (the attention-DP
    ranks the prompts occupy: one prompt takes its own rank's part)."""
    prompt = np.asarray(prompt_tokens, dtype=float)
    total = prompt * np.asarray(batch, dtype=float)
    ranks = np.minimum(np.maximum(np.asarray(batch, dtype=float), 1.0), d.attention_dp_ranks)
    budget = d.profile.max_num_batched_tokens * ranks
    chunks = np.maximum(np.ceil(total / budget), 1.0)
    chunk = total / chunks
    # Each chunk's tokens attend on average to half their own prompt; it samples one token per prompt. Under
    # attention DP the prompts sit whole on the ranks, ⌈batch/R⌉ on the busiest, each rank computing its own alone
    # (StepCost.rank_excess_s).
    seqs_per_chunk = np.maximum(chunk / np.maximum(prompt, 1.0), 1.0)
    cost = d.step_cost()
    pairs = chunk * prompt / 2
    b = np.maximum(np.asarray(batch, dtype=float), 1.0)
    busiest = np.ceil(b / d.attention_dp_ranks - 1e-9) / b  # the busiest rank's share of the prompts
    excess = cost.rank_excess_s(chunk * busiest, pairs * busiest, chunk, pairs, b)
    t = cost.seconds(chunk, seqs_per_chunk, 0.0, pairs, excess)
    return chunks * t


class SpecLike(Protocol):
    """Draft-model speculative decoding as the scheduler sees it (sim.replica.SpecDecoding has this shape)."""

    draft: Deployment
    draft_tokens: int
    acceptance: float


@dataclass(frozen=True)
class Scheduling:
    """The scheduler rules shared by the simulator and the closed forms (sim.replica follows the same)."""

    scheduler: str = "chunked"  # static | continuous (prefill-first rounds) | chunked (decodes, then chunks)
    budget_tokens: int | None = None  # tokens per micro-batch step (default: the engine profile's)
    spec: SpecLike | None = None

    def budget(self, d: Deployment) -> float:
        return float(self.budget_tokens or d.token_budget)


CHUNKED = Scheduling()


@dataclass(frozen=True)
class SteadyState:
    """A replica holding `batch` requests of fixed lengths, every finished one replaced at once (arrays over batch)."""

    batch: Array  # requests in the engine
    step_seconds: Array  # mean step (pp > 1: round of pp micro-batches), prompt chunks included
    output_tokens_per_s: Array
    requests_per_s: Array
    prefill_share: Array  # fraction of GPU time attributable to prefill (for input vs output pricing)
    tpot_s: Array  # mean time per output token after the first
    ttft_s: Array  # prompt service: the steps (rounds) carrying its chunks, no queueing
    decode_seconds: Array  # a step (round) of the decoding rows alone
    residual_s: Array  # mean rest of the step in flight an arrival finds: E[T²] / (2·E[T])


def chunks_rank_excess_s(
    cost: StepCost, chunks: ArrayLike, chunk: ArrayLike, done: ArrayLike, seqs: ArrayLike, together: bool = False
) -> Array:
    """Attention DP: what the busiest rank adds to a step of `seqs` sequences with `chunks` prompt chunks of `chunk`
    tokens each following `done` computed ones, ⌈chunks/R⌉ of them on it (StepCost.rank_excess_s; 0 without).
    `together`: the chunks are a cohort's, every request prefilling in the same steps on its own rank, so the busiest
    rank holds ⌈b/R⌉ of the b = seqs requests and that share of the chunks (as `prefill_seconds` counts a batch): none
    beyond the even split when b is a multiple of R."""
    if not cost.rank_s_per_token:
        return np.zeros_like(np.asarray(chunks, dtype=float))
    c = np.asarray(chunks, dtype=float)
    if together:
        b = np.maximum(np.asarray(seqs, dtype=float), 1.0)
        on_busiest = c * np.ceil(b / cost.ranks - 1e-9) / b
    else:
        on_busiest = np.ceil(c / cost.ranks - 1e-9)
    pairs_each = np.asarray(chunk, dtype=float) * (np.asarray(done, dtype=float) + np.asarray(chunk, dtype=float) / 2)
    return cost.rank_excess_s(on_busiest * chunk, on_busiest * pairs_each, c * chunk, c * pairs_each, seqs)


def poisson_rank_excess_s(cost: StepCost, k: ArrayLike, chunk: ArrayLike, done: ArrayLike, held: ArrayLike) -> Array:
    """Attention DP: the mean busiest-rank excess of a step whose prompt chunks arrive independently, K ~ Poisson(k)
    of `chunk` tokens after `done`: E[⌈K/R⌉ − K/R] of one rank's chunk compute (StepCost.rank_excess_s; K = R·j
    wait for nobody). Independent arrivals put two chunks in one step as often as a Poisson count does, where the
    ⌊k⌋ / ⌈k⌉ mixture of the closed form would give every chunk a step of its own."""
    if not cost.rank_s_per_token:
        return np.zeros_like(np.asarray(k, dtype=float))
    mean = np.asarray(k, dtype=float)
    top = int(np.max(mean) + 10 * np.sqrt(np.max(mean)) + 20)
    ks = np.arange(top + 1, dtype=float)
    log_p = ks[:, None] * np.log(np.maximum(mean, 1e-300)) - mean - np.array([math.lgamma(x + 1) for x in ks])[:, None]
    spread = (np.ceil(ks / cost.ranks - 1e-9) - ks / cost.ranks)[:, None]
    share = np.sum(np.exp(log_p) * spread, axis=0).reshape(mean.shape)
    pairs = np.asarray(chunk, dtype=float) * (np.asarray(done, dtype=float) + np.asarray(chunk, dtype=float) / 2)
    return cost.rank_excess_s(share * chunk, share * pairs, 0.0 * chunk, 0.0 * pairs, held)


def _micro_batch_s(
    d: Deployment,
    rules: Scheduling,
    rows: Array,
    ctx: float,
    chunks: Array,
    chunk: Array,
    done: Array,
    even_ranks: bool = False,
    held: ArrayLike = 0.0,
    together: bool = False,
) -> Array:
    """One micro-batch through the whole model: `rows` decoding sequences of `ctx` context (γ+1 verify
    tokens each with a draft) plus `chunks` prompt chunks of `chunk` tokens following `done` computed ones, on the
    attention-DP ranks as evenly as whole chunks allow (`even_ranks`: evenly, as when every rank fills its budget; an
    engine that balances prompts over the ranks does so once the replica holds `held` ≥ R requests; prompts admitted
    `together` as a cohort of `held` requests sit as those requests do, ⌈held/R⌉ on the busiest rank)."""
    cost = d.step_cost()
    spec = rules.spec
    per_seq = spec.draft_tokens + 1 if spec else 1
    new = rows * per_seq + chunks * chunk
    seqs = rows + chunks
    kv = rows * ctx + chunks * done
    pairs = rows * per_seq * ctx + chunks * chunk * (done + chunk / 2)
    excess = 0.0 if even_ranks else chunks_rank_excess_s(cost, chunks, chunk, done, held, together)
    t = np.where(seqs > 0, cost.seconds(new, np.maximum(seqs, 1e-9), kv, pairs, excess), 0.0)
    if spec is not None:
        draft = spec.draft.step_cost()
        t = t + np.where(rows > 0, spec.draft_tokens * (draft.seconds(rows, rows, kv, kv) - draft.step_overhead_s), 0)
    return t


def _round_s(d: Deployment, pp: float, parts: list[tuple[Array, Array, Array]]) -> Array:
    """`pipeline_round_s` over kinds of micro-batch (time through the model, sequences, how many of the round's
    are of that kind): max(max t, Σ n·(h + (t − h)/pp)), h the host part of a micro-batch of those sequences."""
    cost = d.step_cost()
    slowest = np.max([np.where(n > 0, t, 0.0) for t, _, n in parts], axis=0)
    if pp <= 1:
        return slowest
    per_stage = 0.0
    for t, seqs, n in parts:
        host = cost.host_seconds(seqs)
        per_stage = per_stage + np.where((n > 0) & (t > 0), n * (host + (t - host) / pp), 0.0)
    return np.maximum(slowest, per_stage)


def _chunk_round_s(
    d: Deployment,
    rules: Scheduling,
    pp: float,
    b: Array,
    c: Array,
    ctx: float,
    chunk: Array,
    done: Array,
    even_ranks: bool = False,
    together: bool = False,
) -> Array:
    """A round of `b` requests, `c` of them prompt chunks: ⌈c/pp⌉ chunks ride each of min(c, pp) micro-batches
    beside their share of the b − c decodes (`_largest_micro_batch`), the other micro-batches decode only
    (`together`: a cohort's prompts, `_micro_batch_s`)."""
    zero = np.zeros_like(b)
    rows = _largest_micro_batch(np.maximum(b - c, 0), pp)
    per_mb = np.ceil(c / pp)
    with_chunks = _micro_batch_s(d, rules, rows, ctx, per_mb, chunk, done, even_ranks, held=b, together=together)
    decode_only = _micro_batch_s(d, rules, rows, ctx, zero, zero, zero)
    n_chunked = np.minimum(c, pp)
    n_decode = np.maximum(_micro_batches(np.maximum(b - c, 0), pp) - n_chunked, 0)
    return _round_s(d, pp, [(with_chunks, rows + per_mb, n_chunked), (decode_only, rows, n_decode)])


def _micro_batches(rows: Array, pp: float) -> Array:
    """Micro-batches a round of `rows` decoding sequences fills: pp, or one per sequence when fewer (at least one)."""
    return np.clip(rows, 1.0, pp)


def _largest_micro_batch(rows: Array, pp: float) -> Array:
    """Rows of the largest of pp micro-batches sharing `rows` evenly (at least one while any row decodes)."""
    return np.where(rows >= pp, rows / pp, np.minimum(rows, 1.0))


def _mixture(k: Array) -> tuple[Array, Array, Array]:
    """A mean count k as the two integers around it and the weight of the upper one."""
    lo = np.floor(k)
    return lo, lo + 1, k - lo


def steady_state(
    d: Deployment,
    prompt_tokens: int,
    output_tokens: int,
    batch: ArrayLike,
    rules: Scheduling = CHUNKED,
    cohorts: bool = False,
) -> SteadyState:
    """Throughput and latency at `batch` requests in the engine under the simulator's scheduler rules.

    Prompts are discrete chunks, not smeared over decode steps: a request spends n_c steps (rounds)
    prefilling and n_d = (osl − 1)/E decoding (E: tokens per verify step), so r = b/(n_c + n_d)
    finish per step, b_d = r·n_d decode, and k = r·n_c prompt chunks ride a step: the steps carry
    ⌊k⌋ or ⌈k⌉ chunks (mean k), each micro-batch's budget holding its decodes first (chunked). With
    pp micro-batches a round lasts as long as its slowest or as a stage's load, every micro-batch's host work and
    its share of their GPU work, whichever is longer (`pipeline_round_s`); the chunks ride ⌈k/pp⌉ to a
    micro-batch; `cohorts` (fixed-length requests admitted together, as an offline run's are) spreads them over
    all the micro-batches instead, ⌊k/pp⌋ or ⌈k/pp⌉ each, and over the attention-DP ranks as the cohort's requests sit
    (every rank prefills its own share of the cohort in the same steps, ⌈b/R⌉ requests' on the busiest, as the
    simulator runs it; even when b is a multiple of R). When the budget
    cannot hold r·isl prompt tokens a step, every step is full and r = pp·B / (n_d·(γ+1) + isl).
    continuous: prompts run in prefill-only steps between decode steps; static: a batch prefills,
    then decodes until its last request ends (fixed lengths: all end together).
    """
    b = np.asarray(batch, dtype=float)
    isl, osl = float(max(prompt_tokens, 1)), float(max(output_tokens, 1))
    pp, budget, spec = float(d.pp), rules.budget(d), rules.spec
    per_seq = spec.draft_tokens + 1 if spec else 1
    e_tok = float(expected_tokens(spec.acceptance, spec.draft_tokens)) if spec else 1.0
    n_d = (osl - 1) / e_tok
    ctx = isl + osl / 2
    zero = np.zeros_like(b)
    if rules.scheduler == "static":
        rounds = np.maximum(np.ceil(b * isl / (pp * budget)), 1.0)
        per_mb = b * isl / (rounds * pp)
        prompts_mb = np.maximum(per_mb / isl, np.minimum(b / pp, 1.0))
        # fewer requests than stages: one whole prompt in each of b micro-batches
        per_mb, prompts_mb = np.where(b < pp, isl, per_mb), np.where(b < pp, 1.0, prompts_mb)
        m = _micro_batches(b, pp)
        t_pf_mb = _micro_batch_s(d, rules, zero, ctx, prompts_mb, per_mb / prompts_mb, zero, held=b)
        t_pf = rounds * _round_s(d, pp, [(t_pf_mb, prompts_mb, m)])
        rows = _largest_micro_batch(b, pp)
        t_dec = _round_s(d, pp, [(_micro_batch_s(d, rules, rows, ctx, zero, zero, zero), rows, m)])
        cycle = t_pf + n_d * t_dec
        r_s = b / cycle
        residual = cycle / 2  # a new request waits for the batch in flight
        # after its first token (the end of its prompt's round) a request waits for the rounds left
        tpot = (t_pf * (rounds - 1) / (2 * rounds) + n_d * t_dec) / max(osl - 1, 1)
        return SteadyState(b, cycle / (n_d + rounds), r_s * osl, r_s, t_pf / cycle, tpot, t_pf, t_dec, residual)
    if rules.scheduler == "continuous":
        r = b / max(n_d, 1e-9)  # finishing per decode round
        fit = max(math.floor(budget / isl), 1) * pp
        prompts = np.minimum(np.maximum(r, 1.0), fit)  # per prefill round
        per_mb = np.ceil(prompts / pp)
        t_pf_mb = _micro_batch_s(d, rules, zero, ctx, per_mb, zero + isl, zero, held=b)
        t_pf = _round_s(d, pp, [(t_pf_mb, per_mb, np.ceil(prompts / per_mb))])
        rows = _largest_micro_batch(b, pp)
        t_dec = _round_s(d, pp, [(_micro_batch_s(d, rules, rows, ctx, zero, zero, zero), rows, _micro_batches(b, pp))])
        per_round = t_dec + r / prompts * t_pf
        r_s = r / per_round
        share = r / prompts * t_pf / per_round
        residual = (t_dec**2 + r / prompts * t_pf**2) / (2 * per_round)
        # a decoding request sits through the prefill rounds of the other requests' prompts
        tpot = (t_dec + r / prompts * t_pf * np.maximum(b - prompts, 0) / b) / e_tok
        return SteadyState(b, per_round, r_s * osl, r_s, share, tpot, t_pf, t_dec, residual)
    # chunked: one prompt's chunk fits in its own attention-DP rank's part of the room its decodes leave
    n_c = np.maximum(np.ceil(isl / np.maximum(prompt_room(d, budget, b / pp * per_seq), 1.0)), 1.0)
    for _ in range(3):  # fixed point: the room a step leaves prompts depends on how many rows decode
        r = b / (n_c + n_d)
        rows = r * n_d / pp
        n_c = np.maximum(np.ceil(isl / np.maximum(prompt_room(d, budget, rows * per_seq), 1.0)), 1.0)
    r = b / (n_c + n_d)
    r_full = pp * budget / (n_d * per_seq + isl)
    full = r > r_full
    r = np.minimum(r, r_full)
    rows = _largest_micro_batch(r * n_d, pp)  # decoding rows in the largest micro-batch
    chunk = isl / n_c
    done = chunk * (n_c - 1) / 2  # mean tokens a chunk follows
    k = r * n_c  # chunks per round; a step with K of them decodes the other b − K requests
    spread = cohorts and pp > 1 and bool(np.all(b >= pp))  # fewer requests than stages: some micro-batches idle
    m = _micro_batches(b, pp)
    if spread:
        # chunks spread over the micro-batches: each carries ⌊k/pp⌋ or ⌈k/pp⌉ beside its share of the decodes
        lo, hi, w = _mixture(np.where(full, 0.0, k / pp))
        rows_lo, rows_hi = np.maximum(b / pp - lo, 0), np.maximum(b / pp - hi, 0)
        t_lo, t_hi = (
            _round_s(d, pp, [(_micro_batch_s(d, rules, rws, ctx, c, chunk, done, held=b, together=True), rws + c, m)])
            for rws, c in ((rows_lo, lo), (rows_hi, hi))
        )
        lo, hi = lo * pp, hi * pp  # as chunks per round, for the decode weights below
    else:
        # ⌈c/pp⌉ chunks in each of min(c, pp) micro-batches, the others decoding only (`_chunk_round_s`)
        lo, hi, w = _mixture(np.where(full, 0.0, k))
        t_lo, t_hi = (_chunk_round_s(d, rules, pp, b, c, ctx, chunk, done, together=cohorts) for c in (lo, hi))
    t_chunk = np.where(full, 0.0, t_hi)  # a prompt's chunk shares its step with ⌈k⌉ − 1 others, on its own rank
    if not cohorts and pp == 1 and not spread and d.step_cost().rank_s_per_token:
        # requests arriving independently: the steps' mean attention-DP excess is a Poisson count's
        # (`poisson_rank_excess_s`), not the mixture's, which gives every chunk a step of its own; the chunk steps
        # keep their share of it
        even_lo, even_hi = (_chunk_round_s(d, rules, pp, b, c, ctx, chunk, done, even_ranks=True) for c in (lo, hi))
        mixed = (1 - w) * (t_lo - even_lo) + w * (t_hi - even_hi)
        poisson = poisson_rank_excess_s(d.step_cost(), np.where(full, 0.0, k), chunk, done, b)
        scale = np.where(mixed > 0, poisson / np.maximum(mixed, 1e-300), 1.0)
        extra = np.where(mixed > 0, 0.0, poisson)  # no chunk step in the mixture carries it: every step does
        t_lo = even_lo + scale * (t_lo - even_lo) + extra
        t_hi = even_hi + scale * (t_hi - even_hi) + extra
    m_dec = _micro_batches(r * n_d, pp)
    t_dec = _round_s(d, pp, [(_micro_batch_s(d, rules, rows, ctx, zero, zero, zero), rows, m_dec)])
    # a full step: decodes plus prompt tokens to the budget, in chunks of at most the room
    room = np.maximum(budget - rows * per_seq, 1.0)
    full_chunks = np.maximum(room / np.minimum(chunk, room), 1.0)
    t_full_mb = _micro_batch_s(d, rules, rows, ctx, full_chunks, room / full_chunks, done, even_ranks=True)
    t_full = _round_s(d, pp, [(t_full_mb, rows + full_chunks, zero + pp)])  # every micro-batch fills its budget
    step = np.where(full, t_full, (1 - w) * t_lo + w * t_hi)
    residual = np.where(full, t_full, (1 - w) * t_lo**2 + w * t_hi**2) / (2 * step)
    t_chunk = np.where(full, t_full, t_chunk)
    r_s = r / step
    share = np.clip((step - t_dec) / step, 0.0, 1.0)
    # TPOT: the steps a decoding request is in, weighted by how many decode in each (not its own prompt's)
    dec_lo, dec_hi = (1 - w) * np.maximum(b - lo, 0), w * np.maximum(b - hi, 0)
    seen = np.where(dec_lo + dec_hi > 0, (dec_lo * t_lo + dec_hi * t_hi) / np.maximum(dec_lo + dec_hi, 1e-12), t_dec)
    tpot = np.where(full, t_full, step if spread else seen) / e_tok  # spread: every round is alike
    return SteadyState(b, step, r_s * osl, r_s, share, tpot, n_c * t_chunk, t_dec, residual)


def max_batch(d: Deployment, prompt_tokens: int, output_tokens: int) -> int:
    """Largest concurrency the KV cache and scheduler allow when each request reserves its full length."""
    length = prompt_tokens + output_tokens
    by_kv = d.kv_capacity_tokens_at(length) // max(length, 1)
    return int(max(0, min(by_kv, d.max_seqs)))


def replica_slots(
    d: Deployment,
    prompt_tokens: int,
    output_tokens: int,
    kv: str = "paged",
    max_num_seqs: int | None = None,
    block_tokens: int | None = None,
) -> int:
    """Requests a replica runs at once: the scheduler's max_num_seqs, and the KV cache holding each at full
    length (paged) or at the static reservation (contiguous, `Deployment.static_context_tokens`)."""
    seqs = max_num_seqs or d.max_seqs
    if not d.memory.fits:
        return 0
    if kv == "contiguous":
        block = block_tokens or d.profile.kv_block_tokens
        blocks = d.memory.kv_capacity_tokens // block
        return int(min(seqs, blocks // math.ceil(d.static_context_tokens / block)))
    return int(min(seqs, max_batch(d, prompt_tokens, output_tokens)))


@dataclass(frozen=True)
class LoadPoint:
    """One replica under Poisson arrivals of fixed-length requests (closed form)."""

    rate_rps: float
    occupancy: float  # mean requests in the engine
    tpot_s: float  # mean TPOT
    ttft_s: float  # mean TTFT (inf at or above capacity)
    capacity_rps: float  # completions per second with every slot busy
    saturated: bool


def _occupancy_weights(mean: float, top: int, beta: float = 0.0) -> Array:
    """P(N = j), j = 0…top−1 (the tail lumped into the last), for the other requests in the engine: Poisson
    of the given mean (M/G/∞), over-dispersed to variance mean / (1 − β) where a fuller engine serves each
    request more slowly (β = d ln S / d ln n: a birth-death process linearised, Ornstein-Uhlenbeck),
    as a negative binomial of that mean and variance."""
    j = np.arange(top, dtype=float)
    mean = max(mean, 1e-12)
    lgam = np.array([math.lgamma(x + 1) for x in j])
    if beta < 1e-3:
        logp = j * math.log(mean) - mean - lgam
    else:
        var = mean / (1.0 - beta)
        p, r = mean / var, mean * mean / (var - mean)
        logp = np.array([math.lgamma(x + r) for x in j]) - math.lgamma(r) - lgam + r * math.log(p) + j * math.log(1 - p)
    w = np.exp(logp)
    w[-1] += max(0.0, 1.0 - w.sum())
    return w / w.sum()


def load_point(
    d: Deployment, prompt_tokens: int, output_tokens: int, rate_rps: float, slots: int, rules: Scheduling = CHUNKED
) -> LoadPoint:
    """Mean occupancy, TPOT and TTFT at `rate_rps`, from `steady_state` under the same scheduler rules.

    continuous / chunked: a request shares the engine with N others, N of mean n (Poisson as in
    M/G/∞, over-dispersed where a fuller engine is slower: `_occupancy_weights`; capped at the
    slots), so its TPOT and prompt steps are those of `steady_state` at 1 + N, averaged; n = λ·S
    with S = TTFT + (osl − 1)·TPOT (Little) is the fixed point. TTFT adds the rest of the step in
    flight, E[T²]/(2·E[T]), when it finds the engine busy (P(N > 0)). static: a batch is 1 + N,
    N what arrived during the previous cycle C (mean λ·C); an arrival waits for the cycle in flight
    (C/2 when busy) and then, on average, half its batch's prefill. At or above capacity (every
    slot busy) TTFT grows without bound: inf.
    """
    isl, osl = prompt_tokens, output_tokens
    slots = max(slots, 1)
    ms = np.arange(1, slots + 1, dtype=float)
    ss = steady_state(d, isl, osl, ms, rules)
    cap = float(ss.requests_per_s[-1])
    if rate_rps >= cap:
        return LoadPoint(rate_rps, float(slots), float(ss.tpot_s[-1]), math.inf, cap, True)
    static = rules.scheduler == "static"
    period = ms / ss.requests_per_s  # the batch cycle (static)

    def tpot_life(w: Array) -> tuple[float, float]:
        # a request's TPOT and life at the occupancy it lives through, averaged over that occupancy
        tpot = float(w @ ss.tpot_s)
        return tpot, float(w @ period) if static else float(w @ ss.ttft_s) + (osl - 1) * tpot

    life = ss.ttft_s + (osl - 1) * ss.tpot_s
    slope = np.gradient(np.log(life), np.log(ms)) if slots > 1 else np.zeros(1)

    def weights(n: float) -> Array:
        beta = float(np.clip(np.interp(1.0 + n, ms, slope), 0.0, 0.9))
        return _occupancy_weights(n, slots, beta)

    n, w = 0.0, weights(0.0)
    for _ in range(100):
        w = weights(n)
        n_next = rate_rps * tpot_life(w)[1]
        if abs(n_next - n) < 1e-6 * max(n, 1e-3):
            break
        n = 0.5 * (n + n_next)
    tpot = tpot_life(w)[0]
    busy = 1.0 - float(w[0])
    if static:
        cycle = float(w @ period)
        ttft = min(1.0, rate_rps * cycle) * cycle / 2 + float(w @ (ss.ttft_s * (ms + 1) / (2 * ms)))
        return LoadPoint(rate_rps, 1.0 + n, tpot, ttft, cap, False)
    ttft = float(w @ ss.ttft_s) + busy * float(w @ ss.residual_s)
    return LoadPoint(rate_rps, 1.0 + n, tpot, ttft, cap, False)


def offline_throughput(d: Deployment, prompt_tokens: int, output_tokens: int) -> SteadyState:
    """Throughput of an endless offline run (all requests queued, fixed lengths): steady state at the largest batch
    that fits, with the scheduler limits the engine's offline benchmark sets for the request shape
    (`offline_deployment`). Fixed-length requests finish, and are replaced, in cohorts, so the prompts of a cohort
    fill every pipeline micro-batch (`steady_state(cohorts=True)`)."""
    d = offline_deployment(d, prompt_tokens, output_tokens)
    batch = max(max_batch(d, prompt_tokens, output_tokens), 1)
    return steady_state(d, prompt_tokens, output_tokens, batch, cohorts=True)


def offline_run_tokens_per_s(d: Deployment, prompt_tokens: int, output_tokens: int, requests: int | None) -> float:
    """Output tokens/s of an offline run of `requests` fixed-length requests queued at once, as a benchmark times it
    (all output over first request to last answer); None: an endless run (`offline_throughput`).

    The requests run in cohorts of the largest batch B (they start and end together): ⌊N/B⌋ full cohorts, then
    one of the N mod B left, at the steady-state rate of its own size, so a run of a few cohorts pays for its
    thin last one. That is how the simulator runs them under full-length KV admission (TensorRT-LLM's, whose
    tables give N: benchmarks/offline_run_vs_sim.py); under on-demand admission more than B run at once and the
    cohorts blur over many batches, towards the staggered steady state."""
    if requests is not None and requests < 1:
        raise ValueError(f"an offline run needs at least one request, got {requests}")
    whole = offline_throughput(d, prompt_tokens, output_tokens)
    rate = float(whole.output_tokens_per_s[()])
    if requests is None or rate <= 0:
        return rate
    batch = int(whole.batch[()])
    full, rest = divmod(int(requests), batch)
    seconds = full * batch * output_tokens / rate
    if rest:
        d = offline_deployment(d, prompt_tokens, output_tokens)
        last = steady_state(d, prompt_tokens, output_tokens, rest, cohorts=True)
        seconds += rest * output_tokens / float(last.output_tokens_per_s[()])
    return int(requests) * output_tokens / seconds


def batch_latency_seconds(d: Deployment, prompt_tokens: int, output_tokens: int, batch: int) -> float:
    """A static batch run to completion: prefill all prompts, then decode until every request is done."""
    ctx = prompt_tokens + np.arange(output_tokens - 1) + 1
    decode = decode_step_seconds(d, batch, ctx).sum() if output_tokens > 1 else 0.0
    return float(prefill_seconds(d, prompt_tokens, batch) + decode)


def single_stream(
    d: Deployment, prompt_tokens: int, output_tokens: int, rules: Scheduling = CHUNKED
) -> tuple[float, float]:
    """(TTFT, TPOT) of one request alone on the replica, in seconds: the steady state at batch 1."""
    ss = steady_state(d, prompt_tokens, output_tokens, 1, rules)
    return float(ss.ttft_s[()]), float(ss.tpot_s[()])


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
    cost: StepCost,
    budget_tokens: int,
    running_seqs: int,
    running_context_tokens: float,
    queued_prompt_tokens: int,
    pp: int = 1,
    tokens_per_seq: int = 1,
) -> float:
    """TTFT of a new request behind `queued_prompt_tokens` of prompts (its own included), computed in chunks
    beside `running_seqs` decoding sequences holding `running_context_tokens` of KV, by the simulator's
    chunked rules: each of pp micro-batches takes its decodes (`tokens_per_seq` each: γ+1 with a draft)
    first and prompt tokens up to `budget_tokens`; a round lasts as long as its largest micro-batch."""
    rows = running_seqs / pp if running_seqs >= pp else min(running_seqs, 1)
    room = max(budget_tokens - rows * tokens_per_seq, 1)
    chunk = min(queued_prompt_tokens, room)
    ctx = running_context_tokens * rows / running_seqs if running_seqs else 0.0
    # attention DP: the queued prompts fill one rank's part of the room before the next (a lone prompt: its own rank)
    busiest = max(min(chunk, room / cost.ranks), chunk / cost.ranks)
    excess = cost.rank_excess_s(busiest, busiest * busiest / 2, chunk, chunk * chunk / 2, running_seqs + 1)
    step = cost.seconds(chunk + rows * tokens_per_seq, rows + 1, ctx, ctx * tokens_per_seq + chunk * chunk / 2, excess)
    return math.ceil(queued_prompt_tokens / (pp * room)) * step
