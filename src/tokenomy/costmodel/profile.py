"""Engine profiles: the few free parameters of the cost model, fitted per serving engine."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Products that bundle an engine, by the engine_version prefix their rows carry ("nim-1.8.0"), with their first release
# whose default backend is the engine's Python executor: NIM for LLMs made TensorRT-LLM's PyTorch backend the default in
# 1.15.0 (its release notes: "TRT-LLM PyTorch backend is now stable and the default; legacy TRT-LLM backend moved to
# legacy"). Such rows ran the engine with settings their pages do not publish, so they validate, never fit (fit.py).
BUNDLE_PYTHON_EXECUTOR_SINCE = {"nim-": "1.15"}

# Parameters `tokenomy calibrate` fits; the rest are engine settings taken from the engine's docs.
FITTED = (
    "bw_efficiency",
    "flops_efficiency",
    "low_precision_flops_efficiency",
    "step_overhead_s",
    "seq_overhead_s",
    "overlap_k",
    "comm_efficiency",
    "moe_gemm_half_tokens",
    "moe_permute_passes",
)


KV_ADMISSIONS = ("on_demand", "full_length")  # EngineProfile.kv_admission


@dataclass(frozen=True)
class EngineProfile:
    """Efficiencies, overheads and scheduler limits of one serving engine."""

    name: str = "generic"
    # Efficiencies are fractions of the datasheet peak as on the reference accelerator (H100 SXM); on another the
    # cost model scales them by its achieved fraction relative to the reference's (catalog
    # accelerators.relative_achievable: the engine's kernel rates, else published microbenchmarks), so a profile
    # fitted on Hopper rows carries to MI300X, Blackwell, GDDR parts.
    bw_efficiency: float = 0.80  # achieved / peak memory bandwidth on weight and KV reads
    flops_efficiency: float = 0.60  # achieved / peak tensor-core rate on large 16-bit matmuls
    low_precision_flops_efficiency: float = 0.50  # the same for fp8 / int8 / fp4 matmuls
    step_overhead_s: float = 0.002  # fixed cost per forward step (scheduling, sampling, launch)
    seq_overhead_s: float = 5e-6  # cost per sequence per step (scheduling, sampling, detokenising)
    # An engine whose step loop runs in Python (TensorRT-LLM's PyTorch-backend PyExecutor) pays a measured host cost
    # per sequence per step, on the reference host CPU (a DGX H100's Xeon), instead of the fitted seq_overhead_s (0: it
    # does not); engine versions before `python_executor_since` ran a C++ executor and pay seq_overhead_s.
    python_executor_seq_overhead_s: float = 0.0
    python_executor_since: str = ""  # first engine version whose default executor is the Python one ("" = all)
    # MoE models on tp > 1 GPUs run attention data-parallel (TensorRT-LLM's published MoE recipe: each rank's
    # executor schedules and samples its own 1/tp of the sequences) with expert parallelism: the per-sequence host
    # cost splits over tp, each GPU's MoE kernel runs whole experts (Deployment.moe_tp = 1), each GPU holds the
    # non-expert weights whole and its own sequences' KV (Deployment.attention_dp_ranks: replicated_bytes, KV per
    # GPU), and each rank's scheduler takes max_num_seqs and max_num_batched_tokens for its own share
    # (Deployment.max_seqs, token_budget). Each GPU reads the attention, dense-MLP and shared-expert weights it holds
    # whole in full every step (Deployment.replicated_bytes, Numbers.dense_bytes), its FLOPs stay split tp-ways, and
    # it exchanges hidden states only around the MoE layers, an all-gather before and a reduce-scatter after each
    # (StepCost; an all-to-all form made NVLink rows too fast: README).
    moe_attention_dp: bool = False
    # Attention DP holds a new request's prompt back until every rank can take one in the same step (TensorRT-LLM's
    # attention_dp_config.enable_balance, off by default; NVIDIA's DeepSeek-R1 recipes set it): the ranks then compute
    # their prompt chunks side by side, and no step waits for one rank's chunk (costmodel/perf.py: StepCost).
    attention_dp_balance: bool = False
    # MXFP4 experts (gpt-oss) run with MXFP8 activations on accelerators with FP4 tensor cores (W4A8: TensorRT-LLM's
    # Blackwell kernels); otherwise with bf16 activations (Deployment.expert_kernel).
    mxfp4_moe_mxfp8_activations: bool = False
    # Llama 4's chunked local-attention layers (ModelArch.chunked_attention) hold only their current chunk's KV: the
    # engine frees past chunks' blocks (vLLM's hybrid KV cache manager, on for them by default since vllm#29627);
    # off, every layer keeps every token's KV (TensorRT-LLM; SGLang, whose hybrid pool for them is opt-in).
    frees_chunked_attention_kv: bool = False
    layer_overhead_s: float = 5e-6  # fixed cost per layer per step (kernel launches, norms)
    # Fixed cost of each MoE layer's fused MoE op per step, on top of layer_overhead_s (routing, permute/unpermute
    # set-up, the grouped-GEMM launches). The shipped GPU profiles hold 26 us, the median of what NVIDIA's timings of
    # TensorRT-LLM's MoE kernel at 1-16 tokens exceed the cost model's MoE layer without it by (1,530 timings: H100,
    # H200, B200, GB200, expert parallelism over 2, 4, 8 GPUs, every catalogue expert shape and kernel type they
    # cover; interquartile range 15-47 us; AIConfigurator 0.12's moe_perf tables, benchmarks/moe_layer_vs_aic.py): a
    # documented prior, not fitted. 0 here, like the other MoE terms, so a profile written before it predicts as it did.
    moe_layer_overhead_s: float = 0.0
    # Expert routing as uneven as a power law of this exponent (0: balanced, the form before it): with whole experts
    # over ep GPUs the busiest GPU's grouped GEMMs take longer and every GPU waits for it, by the ratio NVIDIA's
    # timings of TensorRT-LLM's MoE op under power-law over balanced routing give for the model's expert count and ep
    # (catalog moe_routing_imbalance; costmodel/perf.py StepCost). The shipped GPU profiles hold 1.2, the exponent
    # NVIDIA AIConfigurator estimates MoE models at (its sdk/models/moe.py; 1.01 for DeepSeek's): a documented prior.
    moe_routing_alpha: float = 0.0
    overlap_k: float = 2.0  # memory/compute overlap: step = (mem^k + comp^k)^(1/k); 1 additive, inf max
    allreduce_latency_s: float = 8e-6  # per tensor-parallel all-reduce
    comm_efficiency: float = 0.7  # achieved / peak interconnect bandwidth in all-reduce
    # MoE as it executes (0 = off, the form before these terms; calibrate/fit.py PRIORS holds the fit's priors):
    moe_gemm_half_tokens: float = 0.0  # tokens per expert at which grouped-GEMM runs at half the dense rate
    moe_permute_passes: float = 0.0  # hidden-state passes per routed copy of a token (router, permute, unpermute)
    gpu_memory_utilization: float = 0.90  # fraction of accelerator memory the engine may use
    kv_fraction_of_free: bool = False  # TensorRT-LLM: KV gets that fraction of what weights etc. leave free
    runtime_overhead_gb: float = 1.5  # per GPU: CUDA context, graphs, communication buffers
    max_num_seqs: int = 256  # concurrent sequences the scheduler admits (per attention-DP rank)
    max_num_batched_tokens: int = 8192  # tokens per forward step (prefill chunk budget; per attention-DP rank)
    kv_block_tokens: int = 16  # paged KV block size
    # When the scheduler admits a request on paged KV: "on_demand" when the blocks of its prompt (or first chunk) are
    # free, preempting the newest when decodes run short (vLLM, SGLang); "full_length" only when the blocks of its
    # whole prompt + max output fit beside what every running request may still grow to, so none is ever preempted
    # (TensorRT-LLM's default capacity scheduler policy, GUARANTEED_NO_EVICT).
    kv_admission: str = "on_demand"
    kv_fp8_with_fp8_weights: bool = False  # engine stores KV in fp8 when weights are fp8 (TensorRT-LLM)
    # How an offline benchmark of this engine sizes its scheduler for a request shape: "" keeps max_num_seqs and
    # max_num_batched_tokens; "trtllm-bench" derives both from the shape as trtllm-bench does (deployment.py:
    # trtllm_bench_limits), the rule behind TensorRT-LLM's published throughput tables.
    offline_limits_rule: str = ""
    idle_power_fraction: float = 0.30  # board power at idle as a fraction of TDP
    fitted_on: str = ""
    fit: dict[str, Any] = field(default_factory=dict, compare=False)
    borrows_from: str = ""  # engine whose fitted efficiencies and overheads this profile reuses ("" = its own)
    borrowed: list[str] = field(default_factory=list, compare=False)  # the fields taken from `borrows_from`
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # field -> where its value comes from
    notes: list[str] = field(default_factory=list, compare=False)  # what the profile models and what it does not

    def __post_init__(self) -> None:
        if self.kv_admission not in KV_ADMISSIONS:
            raise TypeError(f"kv_admission '{self.kv_admission}' is not one of {', '.join(KV_ADMISSIONS)}")

    def with_values(self, **values: Any) -> EngineProfile:
        return replace(self, **values)

    def for_engine_version(self, version: str) -> EngineProfile:
        """The profile as an engine version ran: one before `python_executor_since` had the C++ executor (no Python
        host cost, no attention DP); an unstated version or a later one runs as the profile says. A bundle's release
        ('nim-1.8.0') is judged by BUNDLE_PYTHON_EXECUTOR_SINCE."""
        if not self.python_executor_since or not version:
            return self
        since = self.python_executor_since
        bundle = bundle_prefix(version)
        if bundle:
            version, since = version.strip()[len(bundle) :], BUNDLE_PYTHON_EXECUTOR_SINCE[bundle]
        if not version_before(version, since):
            return self
        return replace(self, python_executor_seq_overhead_s=0.0, moe_attention_dp=False)

    def sequence_cost_s(self, host_overhead_factor: float = 1.0) -> float:
        """Host cost per sequence per step: the Python executor's where the engine runs one, on a host CPU
        `host_overhead_factor` times slower at Python/PyTorch work than the reference's
        (Accelerator.host_overhead_factor); else the fitted seq_overhead_s."""
        python = self.python_executor_seq_overhead_s
        return python * host_overhead_factor if python else self.seq_overhead_s

    def with_sequence_cost(self, seconds: float) -> EngineProfile:
        """This profile with `seconds` as its per-sequence host cost, whichever executor it runs (a live refit)."""
        return replace(self, seq_overhead_s=seconds, python_executor_seq_overhead_s=0.0)

    def host_seq_overhead_s(self, ranks: int, host_overhead_factor: float = 1.0) -> float:
        """Per-sequence host cost one step pays: sequence_cost_s split over the attention-DP ranks
        (Deployment.attention_dp_ranks: each rank's executor handles its own sequences, in parallel)."""
        return self.sequence_cost_s(host_overhead_factor) / max(ranks, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineProfile:
        """A profile from its JSON fields (unknown keys ignored); TypeError naming a field whose value has the wrong
        type (a number where a number belongs, a whole one for a count, true/false for a switch, a string for a
        name)."""
        known = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            default = known[key].default if key in known else None
            if isinstance(default, bool) and not isinstance(value, bool):
                raise TypeError(f"field '{key}': expected true or false, got {value!r}")
            if isinstance(default, str) and not isinstance(value, str):
                raise TypeError(f"field '{key}': expected a string, got {value!r}")
            if isinstance(default, int | float) and not isinstance(default, bool):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise TypeError(f"field '{key}': expected a number, got {value!r}")
                if isinstance(default, int) and not float(value).is_integer():
                    raise TypeError(f"field '{key}': expected a whole number, got {value!r}")
        alpha = data.get("moe_routing_alpha", 0)
        if alpha < 0:
            raise TypeError(f"field 'moe_routing_alpha': a power-law exponent, 0 (balanced) or more, got {alpha!r}")
        return cls(**{k: v for k, v in data.items() if k in known})


def bundle_prefix(version: str) -> str:
    """The BUNDLE_PYTHON_EXECUTOR_SINCE prefix an engine_version starts with ('nim-1.8.0' -> 'nim-'), or ''."""
    return next((p for p in BUNDLE_PYTHON_EXECUTOR_SINCE if version.strip().lower().startswith(p)), "")


def version_before(version: str, since: str) -> bool:
    """Whether release `version` ('v0.17', '0.19.0rc1') precedes `since`, by its leading dotted numbers."""

    def numbers(text: str) -> tuple[int, ...]:
        match = re.match(r"[vV]?(\d+(?:\.\d+)*)", text.strip())
        return tuple(int(n) for n in match.group(1).split(".")) if match else ()

    release = numbers(version)
    return bool(release) and release < numbers(since)  # an unreadable version runs as the profile says
