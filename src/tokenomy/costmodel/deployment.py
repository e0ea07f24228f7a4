"""A deployment (model × accelerator × parallelism × precision × engine) and its memory plan.

`Deployment.numbers()` reduces a deployment to the per-GPU constants every step-time formula
needs (bytes read per step, FLOPs per token, KV bytes per token, peak rates), so the step-time
math in `perf` is a few numpy expressions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

from tokenomy.catalog.accelerators import (
    MOE_KERNEL_RATES,
    MOE_TABLE_STAND_INS,
    Accelerator,
    moe_gemm_timing,
    moe_nearest_timing,
    moe_routing_imbalance,
    moe_split_stand_in,
    relative_achievable,
)
from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.models import ModelArch
from tokenomy.costmodel.params import ParamCounts, param_counts
from tokenomy.costmodel.profile import EngineProfile
from tokenomy.costmodel.quant import WeightFormat, canonical_precision, kv_bytes_per_value, weight_format

ACTIVATION_BYTES = 2  # activations and all-reduce payloads in 16-bit


@dataclass(frozen=True)
class Numbers:
    """Per-GPU constants of a deployment, in bytes, FLOPs and seconds."""

    dense_bytes: float  # weights read every step whatever the batch (attention, dense MLP, lm_head…)
    expert_bytes: float  # one routed expert across all MoE layers
    n_experts: int
    experts_per_token: int
    kv_full_bytes_per_token: float  # per token, layers with full attention
    kv_window_bytes_per_token: float  # per token, sliding-window layers (capped at the window)
    window_tokens: int
    matmul_flops_per_token: float  # 2 × matmul parameters, excluding lm_head
    lm_head_flops_per_seq: float
    attn_full_flops_per_pair: float  # per (query token, key token) pair over all full layers
    attn_window_flops_per_pair: float
    matmul_flops_per_s: float
    attn_flops_per_s: float
    bytes_per_s: float
    n_layers: int
    tp: int
    pp: int
    allreduce_bytes_per_token: float
    link_bytes_per_s: float
    # A step's matmul cost beyond its tokens' FLOPs at matmul_flops_per_s: (F_token + F_lm_head) × (1/r_matvec −
    # 1/r_dense), so that a one-token step runs at the accelerator's matvec rate and an M-token step tends to the
    # dense rate (a weight pass shared by its M tokens). 0 where the entry gives no matvec rate (every GPU).
    matmul_step_s: float = 0.0
    # MoE as it executes (0 for dense models): FLOPs one token costs in one routed expert over all MoE layers
    # (2 × one expert's parameters / tp), and the hidden-state bytes of one pass over a token's k routed copies
    # over all MoE layers (k × hidden × 2 bytes × MoE layers / tp: under expert parallelism, as TensorRT-LLM ran the
    # measured multi-GPU MoE rows, each rank permutes its own share of the tokens; under tensor-parallel MoE each
    # rank permutes every token, which this understates for tp > 1).
    expert_flops_per_token: float = 0.0
    moe_dispatch_bytes_per_token: float = 0.0
    # The fraction of expert_matmul_flops_per_s the MoE kernel's grouped GEMMs reach at large token counts for this
    # accelerator, MoE kernel type (Deployment.expert_kernel) and expert shape, sliced as Deployment.moe_tp says
    # (catalog moe_gemm_efficiency: NVIDIA's TensorRT-LLM MoE tables; an untimed shape the nearest timed set's,
    # Deployment.expert_timing; 1.0 without timings of the kernel type on the accelerator): small experts run far
    # below the dense rate (B200 NVFP4, Qwen3-30B-A3B's 2048 × 768 experts: 0.26; Mixtral's 4096 × 14336: 1.0, in
    # eighths on 8 GPUs 0.52); gpt-oss's MXFP4 experts 0.45 of the bf16 rate on an H200 (W4A16), 0.70 of the FP8
    # rate on a B200 (W4A8).
    expert_gemm_efficiency: float = 1.0
    # How much longer the routed experts' grouped GEMMs take on the busiest GPU under the profile's uneven routing
    # (EngineProfile.moe_routing_alpha) than under balanced routing: catalog moe_routing_imbalance for the model's
    # expert count over the GPUs holding whole experts (tp under expert parallelism or the attention-DP recipe, else
    # 1); 1.0 for balanced routing and dense models.
    expert_imbalance: float = 1.0
    # The GEMM rate that η is a fraction of: the dense matmuls' (matmul_flops_per_s), but the FP8 rate for W4A8
    # MXFP4 experts beside bf16 attention (where the kernel or its nearest timed set's stand-in was timed; a kernel
    # type never timed on the accelerator runs at the dense rate), FLOP/s.
    expert_matmul_flops_per_s: float = 0.0
    # Expert parallelism (Deployment.expert_parallel): the ranks the routed experts are spread over (1: tensor
    # parallel MoE), the MoE layers, and the expected remote ranks one token's k experts live on.
    ep: int = 1
    n_moe_layers: int = 0
    ep_remote_ranks_per_token: float = 0.0


def _efficiency(profile: EngineProfile, compute: str) -> float:
    """Achieved fraction of peak for a compute type: 8- and 4-bit tensor cores have their own."""
    return profile.low_precision_flops_efficiency if compute in ("fp8", "int8", "fp4") else profile.flops_efficiency


@dataclass(frozen=True)
class MemoryPlan:
    """Where each GPU's memory goes and what is left for the KV cache (bytes, per replica unless noted)."""

    capacity_bytes: float  # all GPUs of the replica
    usable_bytes: float  # capacity × gpu_memory_utilization
    weights_bytes: float
    activation_bytes: float
    runtime_overhead_bytes: float
    kv_bytes: float  # left for the KV cache (≤ 0 when the model does not fit)
    kv_bytes_per_token: float  # full-context figure, all layers, whole replica
    kv_capacity_tokens: int
    fits: bool

    @property
    def needed_bytes(self) -> float:
        """Memory needed for weights, activations and runtime before any KV cache."""
        return self.weights_bytes + self.activation_bytes + self.runtime_overhead_bytes


@dataclass(frozen=True)
class Deployment:
    """One serving replica: a model on tp × pp accelerators at a precision, run by an engine profile."""

    model: ModelArch
    gpu: Accelerator
    tp: int = 1
    pp: int = 1
    precision: str = "bf16"
    kv_precision: str = "auto"
    profile: EngineProfile = EngineProfile()
    max_context_tokens: int = 0  # static reservation length; 0 → min(model maximum, 32768)
    # MoE only, tp > 1: routed experts spread whole over the tp GPUs (expert parallelism) and everything else
    # replicated and run data-parallel on each GPU's share of the sequences (attention DP), as TensorRT-LLM's
    # enable_attention_dp + moe_expert_parallel_size runs MoE models; False: tensor-parallel MoE.
    expert_parallel: bool = False

    def __post_init__(self) -> None:
        for name in ("tp", "pp"):
            if getattr(self, name) < 1:
                raise CatalogError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.max_context_tokens < 0:
            raise CatalogError(f"max-context must be positive, got {self.max_context_tokens}")
        _ = self.fmt  # validates the precision name ('native' = the checkpoint's format)
        kv_bytes_per_value(self.kv_dtype)

    @property
    def n_gpus(self) -> int:
        return self.tp * self.pp

    @property
    def ep(self) -> int:
        """Expert-parallel degree: tp with expert_parallel on a MoE model, else 1 (tensor-parallel MoE)."""
        return self.tp if self.expert_parallel and self.model.is_moe and self.tp > 1 else 1

    @property
    def moe_tp(self) -> int:
        """GPUs each routed expert is sliced over (its GEMMs run inter / moe_tp columns per GPU): tp for
        tensor-parallel MoE, 1 where every GPU holds whole experts (expert parallelism, or the attention-DP + EP
        recipe the profile says the engine runs MoE models with: EngineProfile.moe_attention_dp)."""
        whole = self.ep > 1 or self.profile.moe_attention_dp
        return 1 if whole or not self.model.is_moe else self.tp

    @property
    def whole_expert_gpus(self) -> int:
        """GPUs the routed experts are spread over whole, whose busiest one every MoE layer waits for: tp where each
        GPU holds whole experts (moe_tp 1: expert parallelism or the attention-DP recipe), else 1 (every GPU runs a
        slice of every expert)."""
        return self.tp if self.moe_tp == 1 else 1

    @property
    def attention_dp_ranks(self) -> int:
        """Attention data-parallel ranks (tp for a MoE model under expert parallelism or the profile's recipe, else 1):
        each holds the non-expert weights whole and its own sequences' KV, and schedules its own batch."""
        dp = self.ep > 1 or (self.profile.moe_attention_dp and self.model.is_moe)
        return self.tp if dp and self.tp > 1 else 1

    @property
    def max_seqs(self) -> int:
        """Sequences the replica's scheduler(s) run at once: the profile's max_num_seqs on each attention-DP rank."""
        return self.profile.max_num_seqs * self.attention_dp_ranks

    @property
    def token_budget(self) -> int:
        """Tokens one step (micro-batch, with pp) computes at most: max_num_batched_tokens on each attention-DP rank."""
        return self.profile.max_num_batched_tokens * self.attention_dp_ranks

    @property
    def matmul_compute(self) -> str:
        """The compute type the matmuls run at: the weight format's, or bf16 where the accelerator lacks it."""
        return self.fmt.compute if self.gpu.supports(self.fmt.compute) else "bf16"

    @property
    def expert_kernel(self) -> tuple[str, str]:
        """(MoE kernel type in kernel_rates.csv, compute type whose GEMM rate it counts at: MOE_KERNEL_RATES) of the
        routed experts: the matmuls' own, but block-scaled FP8 weights run the block-scale kernel, and MXFP4 experts
        as TensorRT-LLM runs gpt-oss (examples/models/core/gpt_oss): with bf16 activations where the accelerator has
        no FP4 tensor cores (W4A16: its Triton kernel on Hopper, timed), with MXFP8 ones where it has them and the
        engine does so (W4A8 on Blackwell: EngineProfile.mxfp4_moe_mxfp8_activations, timed). Another engine's MXFP4 ×
        bf16 kernel on FP4 tensor cores (vLLM: FlashInfer's on Blackwell) is not TensorRT-LLM's W4A16 fallback there,
        and untimed: `mxfp4-bf16`, the dense bf16 rate."""
        kernel = self.matmul_compute
        if self.fmt.name == "mxfp4-experts":
            if not self.gpu.supports("fp4"):
                kernel = "mxfp4-w4a16"
            else:
                kernel = "mxfp4-w4a8" if self.profile.mxfp4_moe_mxfp8_activations else "mxfp4-bf16"
        elif self.fmt.name == "fp8-block" and kernel == "fp8":
            kernel = "fp8-block"
        return kernel, MOE_KERNEL_RATES.get(kernel, kernel)

    @cached_property
    def expert_timing(self) -> tuple[float, int, str]:
        """The MoE kernel's large-M efficiency η for the routed experts, the slicing NVIDIA timed it at (0: not timed)
        and, where these experts were not timed on this accelerator but others were in the same kernel type, the
        nearest timed set's shape whose η stands in (catalog.moe_nearest_timing; slicing then 1); (1.0, 0, "") for a
        dense model or an accelerator without timings of the kernel type."""
        m = self.model
        if not m.is_moe:
            return 1.0, 0, ""
        shape = (m.hidden_size, m.expert_intermediate_size, m.experts_per_token, m.n_experts)
        kernel = self.expert_kernel[0]
        eta, timed = moe_gemm_timing(self.gpu.id, kernel, *shape, self.moe_tp)
        if timed:
            return eta, timed, ""
        nearest = moe_nearest_timing(self.gpu.id, kernel, *shape, self.moe_tp)
        return (nearest[0], 1, nearest[1]) if nearest else (1.0, 0, "")

    def moe_kernel_note(self) -> str:
        """One line on the measured MoE kernel efficiency the routed experts run at, and the routing imbalance they
        pay (plan and simulate print it); "" for a dense model."""
        m = self.model
        if not m.is_moe:
            return ""
        note = self._moe_efficiency_note()
        phi = self.numbers().expert_imbalance
        if phi == 1.0:
            return note
        gpus = self.whole_expert_gpus
        where = f"the busiest of {gpus} GPUs holding whole experts" if gpus > 1 else "each GPU's grouped GEMMs"
        return (
            f"{note}; expert loads a power law of exponent {self.profile.moe_routing_alpha:g} (moe_routing_alpha): "
            f"{where} take {phi:.2f}× the balanced time (NVIDIA's timings)"
        )

    def _moe_efficiency_note(self) -> str:
        """The kernel-efficiency part of moe_kernel_note."""
        m = self.model
        shape = (m.hidden_size, m.expert_intermediate_size, m.experts_per_token, m.n_experts)
        kernel, rate_compute = self.expert_kernel
        eta, timed, nearest = self.expert_timing
        split = "whole experts on each GPU" if self.moe_tp == 1 else f"each GPU runs 1/{self.moe_tp} of every expert"
        timed_on = MOE_TABLE_STAND_INS.get(self.gpu.id, self.gpu.id)
        where = f"{timed_on} in {kernel}" + (f", standing in for {self.gpu.id}" if timed_on != self.gpu.id else "")
        dense = "dense GEMM rate" if rate_compute == self.matmul_compute else f"{rate_compute} GEMM rate"
        if nearest:
            return (
                f"MoE kernel: routed experts run at {eta:.2f} of the {dense} ({split}; NVIDIA did not time these "
                f"experts so on {where}: {nearest} figure; docs/cost-model.md)"
            )
        if not timed:
            return (
                f"MoE kernel: no NVIDIA timing of these experts on {where} ({split}): they run at the dense GEMM rate"
            )
        stand_in = "whole" if timed == 1 else f"1/{timed}"
        untimed = "" if timed == self.moe_tp else f"; 1/{self.moe_tp} not timed, the {stand_in} figure"
        split_gpus = moe_split_stand_in(self.gpu.id, kernel, *shape) if timed == 1 else 1
        if split_gpus > 1:
            untimed += (
                f"; the whole set not timed on one GPU, or timed far slower than its split, its {split_gpus}-way "
                "expert-parallel split's figure"
            )
        return (
            f"MoE kernel: routed experts run at {eta:.2f} of the {dense} ({split}; NVIDIA's TensorRT-LLM "
            f"MoE timings on {where}{untimed}; docs/cost-model.md)"
        )

    @cached_property
    def replicated_bytes(self) -> float:
        """Weights every GPU holds whole under attention data parallelism (attention, dense MLPs, shared experts,
        norms and router; embedding and lm_head stay split); 0 without it (attention_dp_ranks)."""
        if self.attention_dp_ranks == 1:
            return 0.0
        p = self.params
        return (p.attention + p.dense_mlp + p.shared_experts) * self._linear_bits("attention") / 8 + (
            p.norms + p.router
        ) * 2

    @property
    def fmt(self) -> WeightFormat:
        name = self.model.native_precision if self.precision == "native" else self.precision
        return weight_format(name)

    @property
    def kv_dtype(self) -> str:
        """KV-cache precision: as asked, or the engine's default for this weight precision."""
        if self.kv_precision != "auto":
            return self.kv_precision
        fp8_checkpoint = self.precision != "native" and canonical_precision(self.precision) == "fp8"
        if self.profile.kv_fp8_with_fp8_weights and fp8_checkpoint and self.gpu.supports("fp8"):
            return "fp8"
        return "bf16"

    @property
    def static_context_tokens(self) -> int:
        return self.max_context_tokens or min(self.model.max_context_tokens, 32768)

    @cached_property
    def params(self) -> ParamCounts:
        return param_counts(self.model)

    def _weights_by_bits(self) -> list[tuple[int, float]]:
        """(parameters, bits per weight) by part: quantised layers at the format's bits, embeddings at its embed bits,
        the rest at 16."""
        p, f = self.params, self.fmt
        if f.experts_only:
            return [(p.routed_experts, f.bits_per_weight), (p.total - p.routed_experts, 16.0)]
        linear = p.attention + p.dense_mlp + p.routed_experts + p.shared_experts
        embed, small = p.embedding + p.lm_head, p.norms + p.router + p.extra
        return [(linear, f.bits_per_weight), (embed, f.embed_bits), (small, 16.0)]

    @cached_property
    def weight_bytes(self) -> float:
        """Bytes of all weights (_weights_by_bits)."""
        return sum(n * bits for n, bits in self._weights_by_bits()) / 8

    @cached_property
    def checkpoint_elements(self) -> float:
        """Tensor elements of a safetensors checkpoint (trtllm-bench's parameter count): one per weight of 8 bits or
        more, one per byte of NVFP4/MXFP4 (two 4-bit values to a uint8, 8-bit scales: 9/16 and 17/32 per weight)."""
        return sum(n * min(bits, 8.0) / 8 for n, bits in self._weights_by_bits())

    def _linear_bits(self, part: str) -> float:
        f = self.fmt
        if f.experts_only and part != "experts":
            return 16.0
        return f.bits_per_weight

    def kv_bytes_per_layer_token(self) -> float:
        """KV bytes one token adds in one layer (whole replica): 2·kv_heads·head_dim, or MLA latent + rope key."""
        m, b = self.model, kv_bytes_per_value(self.kv_dtype)
        if m.uses_mla:
            return (m.kv_lora_rank + m.qk_rope_head_dim) * b
        return 2 * m.n_kv_heads * m.head_dim * b

    def kv_bytes_per_gpu_layer_token(self) -> float:
        """Per GPU: KV heads are split over tp but replicated when tp exceeds them; MLA latents are replicated.
        Attention data parallelism: each GPU holds whole tokens of its own sequences, 1/tp of the total."""
        m, b = self.model, kv_bytes_per_value(self.kv_dtype)
        if self.attention_dp_ranks > 1:
            return self.kv_bytes_per_layer_token() / self.tp
        if m.uses_mla:
            return (m.kv_lora_rank + m.qk_rope_head_dim) * b
        heads_per_gpu = math.ceil(m.n_kv_heads / self.tp)
        return 2 * heads_per_gpu * m.head_dim * b

    @property
    def windows_drop_kv(self) -> bool:
        """Whether the model's windowed layers keep only their window's KV: sliding-window layers do; Llama 4's
        chunked ones only where the engine frees past chunks (EngineProfile.frees_chunked_attention_kv)."""
        m = self.model
        return bool(m.n_sliding_layers) and (not m.chunked_attention or self.profile.frees_chunked_attention_kv)

    def kv_bytes_per_token(self, context_tokens: float | None = None) -> float:
        """Average KV bytes per token of a sequence of `context_tokens` (windowed layers that drop KV hold a window)."""
        m = self.model
        per_layer = self.kv_bytes_per_layer_token()
        if not self.windows_drop_kv or context_tokens is None:
            return per_layer * m.n_layers
        window_share = min(1.0, m.sliding_window / max(context_tokens, 1))
        return per_layer * (m.n_full_layers + m.n_sliding_layers * window_share)

    def activation_bytes_per_gpu(self) -> float:
        """Peak activation memory of one forward step at the token budget: a rank's hidden states, the larger of a
        dense MLP's gate and up outputs and the MoE layer's buffers (moe_workspace_bytes), and the logits."""
        m, prof = self.model, self.profile
        rank_tokens = prof.max_num_batched_tokens
        has_dense_mlp = not m.is_moe or m.n_moe_layers < m.n_layers
        mlp_tp = 1 if self.attention_dp_ranks > 1 else self.tp  # attention DP: dense MLPs run whole on each rank
        dense_mlp_bytes = rank_tokens * ACTIVATION_BYTES * 2 * m.intermediate_size / mlp_tp if has_dense_mlp else 0.0
        hidden_bytes = rank_tokens * ACTIVATION_BYTES * 4 * m.hidden_size
        logits_bytes = prof.max_num_seqs * m.vocab_size * 4 / self.tp
        return hidden_bytes + max(dense_mlp_bytes, self.moe_workspace_bytes()) + logits_bytes

    # A MoE layer's buffers, as TensorRT-LLM's MoE runner sizes its workspace (cpp/tensorrt_llm/kernels/
    # mixtureOfExperts/moe_kernels.cu, getWorkspaceDeviceBufferSizes): for each of the k routed copies of a token, one
    # buffer shared by the permuted input, the FC1 result and the FC2 output (max(hidden, inter) values) and one shared
    # by the gated FC1 output and the FC2 output (max(2·inter, hidden) values), inter the expert's intermediate columns
    # on this GPU, in 16 bits; under attention DP a layer takes every rank's tokens at once (moe_max_num_tokens
    # defaults to max_num_tokens × dp_size: no chunking) and holds their gathered inputs and combined outputs. vLLM's
    # fused MoE keeps separate buffers, k·(hidden + 3·inter) values per token (fused_moe.py's intermediate caches);
    # the one formula stands for both.
    def moe_workspace_bytes(self) -> float:
        """Per GPU, a MoE layer's buffers at the token budget as TensorRT-LLM's MoE runner sizes them (comment
        above); 0 for a dense model."""
        m = self.model
        if not m.is_moe:
            return 0.0
        seen_tokens = self.token_budget  # every attention-DP rank's: moe_max_num_tokens = max_num_tokens × dp_size
        h, inter_per_gpu = m.hidden_size, m.expert_intermediate_size / self.moe_tp
        per_copy = max(h, inter_per_gpu) + max(2 * inter_per_gpu, h)  # input-side and output-side overlapped buffers
        gathered = 2 * h if self.attention_dp_ranks > 1 else 0  # the all-gathered inputs and the combined outputs
        return ACTIVATION_BYTES * seen_tokens * (m.experts_per_token * per_copy + gathered)

    @cached_property
    def memory(self) -> MemoryPlan:
        """Weights, activations, runtime overhead and the KV cache that fits in what is left."""
        n = self.n_gpus
        capacity = self.gpu.memory_bytes * n
        usable = capacity * self.profile.gpu_memory_utilization
        activations = self.activation_bytes_per_gpu() * n
        overhead = self.profile.runtime_overhead_gb * 1e9 * n
        weights = self.weight_bytes + (self.tp - 1) * self.replicated_bytes  # attention DP: copies on every GPU
        if self.profile.kv_fraction_of_free:
            usable = capacity - (1 - self.profile.gpu_memory_utilization) * max(
                capacity - weights - activations - overhead, 0.0
            )
        kv = usable - weights - activations - overhead
        # Capacity in tokens: the per-GPU KV share bounds it (replicated heads cost each GPU the same).
        per_gpu_token = self.kv_bytes_per_gpu_layer_token() * self.model.n_layers / self.pp
        tokens = int(max(kv, 0) / n / per_gpu_token) if kv > 0 else 0
        return MemoryPlan(
            capacity_bytes=capacity,
            usable_bytes=usable,
            weights_bytes=weights,
            activation_bytes=activations,
            runtime_overhead_bytes=overhead,
            kv_bytes=kv,
            kv_bytes_per_token=self.kv_bytes_per_token(),
            kv_capacity_tokens=tokens,
            fits=kv > 0 and tokens >= self.profile.kv_block_tokens,
        )

    def kv_capacity_tokens_at(self, context_tokens: float) -> int:
        """KV capacity in tokens for sequences of a given length (more where windowed layers drop KV)."""
        full = self.kv_bytes_per_token()
        return int(self.memory.kv_capacity_tokens * full / self.kv_bytes_per_token(context_tokens))

    def max_concurrency(self, prompt_tokens: int, output_tokens: int) -> dict[str, int]:
        """Sequences that fit at once: paged blocks of the actual length vs static max-length reservation."""
        block = self.profile.kv_block_tokens
        length = prompt_tokens + output_tokens
        paged_len = math.ceil(length / block) * block
        capacity = self.kv_capacity_tokens_at(length)
        static_capacity = self.kv_capacity_tokens_at(self.static_context_tokens)
        fits_reservation = length <= self.static_context_tokens
        return {
            "paged": capacity // paged_len,
            "static": static_capacity // self.static_context_tokens if fits_reservation else 0,
        }

    @cached_property
    def _numbers(self) -> Numbers:
        m, p, gpu, prof = self.model, self.params, self.gpu, self.profile
        tp = self.tp
        fmt = self.fmt
        compute = self.matmul_compute
        attn_compute = "fp8" if self.kv_dtype == "fp8" and gpu.supports("fp8") and compute == "fp8" else "bf16"
        attn_bits = self._linear_bits("attention")
        dense_bytes = (
            (p.attention + p.dense_mlp + p.shared_experts) * attn_bits / 8
            + p.lm_head * fmt.embed_bits / 8
            + (p.norms + p.router) * 2
        )
        if m.tied_embeddings:  # the tied embedding doubles as lm_head and is read every step
            dense_bytes += p.embedding * fmt.embed_bits / 8
        expert_bytes = (p.routed_experts / m.n_experts) * self._linear_bits("experts") / 8 if m.is_moe else 0.0
        lm_head_params = m.vocab_size * m.hidden_size
        matmul = p.matmul_active - (0 if m.tied_embeddings else p.lm_head)
        kv_layer = self.kv_bytes_per_gpu_layer_token()
        if m.uses_mla:  # absorbed form used for decode: scores over latent + rope key, values over the latent
            attn_pair = 2 * m.n_heads * (2 * m.kv_lora_rank + m.qk_rope_head_dim)
        else:
            attn_pair = 4 * m.n_heads * m.head_dim
        # The engine's efficiencies are fractions of peak as on the reference accelerator; this one's achieved
        # fractions scale them (catalog relative_achievable: kernel rates, else microbenchmarks; MI300X FP8 GEMMs
        # reach 0.63× the H100's share of peak, B200 NVFP4 GEMMs 0.66× its FP8 share).
        bw_scale, flops_scale = relative_achievable(gpu, compute)
        _, attn_scale = relative_achievable(gpu, attn_compute)
        matmul_flops_per_s = gpu.flops_per_s(compute) * flops_scale * _efficiency(prof, compute)
        expert_kernel, expert_compute = self.expert_kernel
        eta, timed, _ = self.expert_timing
        expert_flops_per_s = (  # the kernel's own type's rate where it differs and NVIDIA timed it (or a nearest set)
            gpu.flops_per_s(expert_compute)
            * relative_achievable(gpu, expert_compute)[1]
            * _efficiency(prof, expert_compute)
            if expert_compute != compute and timed
            else matmul_flops_per_s
        )
        matvec = gpu.matvec_flops_per_s(compute)
        step_flops = 2 * (matmul + lm_head_params) / tp
        matmul_step_s = (
            step_flops * (1 / (matvec * flops_scale * _efficiency(prof, compute)) - 1 / matmul_flops_per_s)
            if matvec
            else 0.0
        )
        ep = self.ep
        # under attention DP (with or without explicit expert parallelism) every GPU holds the replicated weights whole
        # and so reads them in full every step (replicated_bytes, 0 without it); the rest split over tp
        dense_per_gpu = self.replicated_bytes + (dense_bytes - self.replicated_bytes) / tp
        # expected distinct ranks among ep that a token's k experts sit on (experts spread evenly), less its own
        remote = (ep - 1) * (1 - (1 - 1 / ep) ** m.experts_per_token) if ep > 1 else 0.0
        return Numbers(
            dense_bytes=dense_per_gpu,
            expert_bytes=expert_bytes / tp,
            n_experts=m.n_experts,
            experts_per_token=m.experts_per_token,
            kv_full_bytes_per_token=kv_layer * m.n_full_layers,
            kv_window_bytes_per_token=kv_layer * m.n_sliding_layers,
            window_tokens=m.sliding_window,
            matmul_flops_per_token=2 * matmul / tp,
            lm_head_flops_per_seq=2 * lm_head_params / tp,
            attn_full_flops_per_pair=attn_pair * m.n_full_layers / tp,
            attn_window_flops_per_pair=attn_pair * m.n_sliding_layers / tp,
            matmul_flops_per_s=matmul_flops_per_s,
            attn_flops_per_s=gpu.flops_per_s(attn_compute) * attn_scale * _efficiency(prof, attn_compute),
            bytes_per_s=gpu.bandwidth_bytes_per_s * bw_scale * prof.bw_efficiency,
            n_layers=m.n_layers,
            tp=tp,
            pp=self.pp,
            allreduce_bytes_per_token=m.hidden_size * ACTIVATION_BYTES,
            link_bytes_per_s=gpu.interconnect_bytes_per_s * prof.comm_efficiency,
            matmul_step_s=matmul_step_s,
            expert_flops_per_token=2 * p.routed_experts / m.n_experts / tp if m.is_moe else 0.0,
            expert_gemm_efficiency=eta,
            expert_imbalance=(
                moe_routing_imbalance(prof.moe_routing_alpha, m.n_experts, self.whole_expert_gpus) if m.is_moe else 1.0
            ),
            expert_matmul_flops_per_s=expert_flops_per_s,
            moe_dispatch_bytes_per_token=(
                m.n_moe_layers * m.experts_per_token * m.hidden_size * ACTIVATION_BYTES / tp if m.is_moe else 0.0
            ),
            ep=ep,
            n_moe_layers=m.n_moe_layers,
            ep_remote_ranks_per_token=remote,
        )

    def numbers(self) -> Numbers:
        return self._numbers

    @cached_property
    def _step_cost(self):  # noqa: ANN202
        from tokenomy.costmodel.perf import StepCost  # perf builds on Deployment

        return StepCost(self)

    def step_cost(self):  # noqa: ANN201
        """The step-time formula of costmodel.perf with this deployment's constants (cached)."""
        return self._step_cost


def auto_tensor_parallel(
    base: Deployment, max_gpus: int, prompt_tokens: int, output_tokens: int, min_sequences: int = 64
) -> Deployment:
    """Smallest power-of-two tp (≤ max_gpus) holding `min_sequences` requests in KV, else the smallest that fits."""
    candidates = [t for t in (1, 2, 4, 8, 16, 32, 64) if t * base.pp <= max(max_gpus, 1)] or [1]
    fitting = None
    for tp in candidates:
        d = replace(base, tp=tp)
        if d.memory.fits:
            fitting = fitting or d
            if d.max_concurrency(prompt_tokens, output_tokens)["paged"] >= min_sequences:
                return d
    return fitting or replace(base, tp=candidates[-1])


def serving_constraints(d: Deployment, prompt_tokens: int, output_tokens: int) -> list[str]:
    """Why an engine would refuse this deployment or request, in words (empty: none).

    vLLM and SGLang shard attention heads across tp ranks: tp must divide the query heads, and the KV heads must
    divide evenly (tp a multiple of them when replicated); pp cannot exceed the layers; a request must fit the
    model's context window (isl + osl ≤ max_position_embeddings).
    """
    m, out = d.model, []
    if m.n_heads % d.tp:
        out.append(f"tp={d.tp} does not divide {m.id}'s {m.n_heads} attention heads (engines shard heads evenly)")
    elif not m.uses_mla and (m.n_kv_heads % d.tp if d.tp <= m.n_kv_heads else d.tp % m.n_kv_heads):
        out.append(f"tp={d.tp} cannot split or replicate {m.id}'s {m.n_kv_heads} KV heads evenly")
    if d.pp > m.n_layers:
        out.append(f"pp={d.pp} exceeds {m.id}'s {m.n_layers} layers")
    length = prompt_tokens + output_tokens
    if length > m.max_context_tokens:
        out.append(f"isl + osl = {length:,} tokens exceeds {m.id}'s context window of {m.max_context_tokens:,} tokens")
    return out


# trtllm-bench's sizing of max_batch_size / max_num_tokens for a request shape (NVIDIA/TensorRT-LLM
# tensorrt_llm/bench/build/tuning.py: calc_engine_setting and finetune_setting; unchanged from v0.17 to v1.0, the
# versions of the shipped TensorRT-LLM tables): a rough KV estimate from the checkpoint's parameter count at its
# quantisation's bytes per element and the KV heads padded to one per tp rank, batch capped at 4096, tokens at 32768.
# The parameter count is the checkpoint's safetensors element count (dataclasses.py: get_param_count), so a packed
# NVFP4 checkpoint counts about half its weights (Deployment.checkpoint_elements). Only these quantisations are sized
# so (build.py: TUNED_QUANTS, with BYTES_PER_ELEM: FP8 per-tensor or block scales 1, NVFP4 0.5, none 2); any other
# (MXFP4, INT8, INT4) runs the defaults max_batch_size 2048 and max_num_tokens 8192.
TRTLLM_BENCH_BYTES_PER_ELEMENT = {"fp8": 1.0, "fp8-block": 1.0, "nvfp4": 0.5, "bf16": 2.0, "fp16": 2.0, "fp32": 2.0}
TRTLLM_BENCH_DEFAULT_LIMITS = (2048, 8192)  # BuildConfig max_batch_size, max_num_tokens
TRTLLM_BENCH_KV_FRACTION = 0.90  # trtllm-bench --kv_cache_free_gpu_mem_fraction default
TRTLLM_BENCH_MAX_BATCH = 4096
TRTLLM_BENCH_MAX_TOKENS = 32768


def _trtllm_round(raw: float, floor: int, steps: tuple[tuple[int, int], ...], last_step: int) -> int:
    """finetune_setting's rounding: up to the step of the first (below, step) whose bound `raw` is under, else to
    `last_step`; at least `floor`."""
    step = next((st for below, st in steps if raw < below), last_step)
    return max(floor, step * math.ceil(raw / step))


def _trtllm_round_batch(raw: float) -> int:
    """finetune_setting's optimistic batch: at least 64, rounded up to 32 below 256, 128 below 1024, else 256."""
    return _trtllm_round(raw, 64, ((256, 32), (1024, 128)), 256)


def _trtllm_round_tokens(raw: float) -> int:
    """finetune_setting's token budget: at least 2048, rounded up to 256 below 4096, 512 below 8192, else 1024."""
    return _trtllm_round(raw, 2048, ((4096, 256), (8192, 512)), 1024)


def trtllm_bench_limits(d: Deployment, prompt_tokens: int, output_tokens: int) -> tuple[int, int]:
    """(max sequences, max tokens per step) trtllm-bench configures for this deployment and request shape."""
    m, gib = d.model, 2.0**30
    bytes_per_elem = TRTLLM_BENCH_BYTES_PER_ELEMENT.get(d.fmt.name)
    if bytes_per_elem is None:  # not a quantisation trtllm-bench sizes: its defaults
        return TRTLLM_BENCH_DEFAULT_LIMITS[0] * d.pp, TRTLLM_BENCH_DEFAULT_LIMITS[1]
    kv_bytes = 1.0 if d.kv_dtype == "fp8" else 2.0
    per_token_gib = 2 * m.n_layers * max(d.tp, m.n_kv_heads) * m.head_dim * kv_bytes / gib
    available_gib = d.gpu.memory_bytes * d.n_gpus / gib - d.checkpoint_elements * bytes_per_elem / gib
    requests = max(available_gib, 0.0) * TRTLLM_BENCH_KV_FRACTION / (per_token_gib * (prompt_tokens + output_tokens))
    raw_batch = min(requests, TRTLLM_BENCH_MAX_BATCH) / d.pp
    raw_tokens = min(raw_batch * (1 + prompt_tokens / max(output_tokens, 1)), TRTLLM_BENCH_MAX_TOKENS)
    return _trtllm_round_batch(raw_batch) * d.pp, _trtllm_round_tokens(raw_tokens)


def offline_deployment(d: Deployment, prompt_tokens: int, output_tokens: int) -> Deployment:
    """The deployment as its engine's offline benchmark configures it for a request shape (profile
    `offline_limits_rule`): trtllm-bench's max sequences and token budget; unchanged without a rule."""
    if d.profile.offline_limits_rule != "trtllm-bench":
        return d
    seqs, tokens = trtllm_bench_limits(d, prompt_tokens, output_tokens)
    return replace(d, profile=d.profile.with_values(max_num_seqs=seqs, max_num_batched_tokens=tokens))
