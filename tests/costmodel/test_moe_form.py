"""MoE as it executes: grouped-GEMM efficiency vs tokens per expert and the router/permute cost (costmodel.perf)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tokenomy.calibrate.fit import PRIORS, prior_profile
from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import decode_step_seconds, experts_touched, prefill_seconds
from tokenomy.costmodel.profile import EngineProfile

OFF = {"moe_gemm_half_tokens": 0.0, "moe_permute_passes": 0.0}
ON = {"moe_gemm_half_tokens": 32.0, "moe_permute_passes": 4.0}


def dep(model: str, profile: EngineProfile, gpu: str = "H100-SXM", precision: str = "bf16") -> Deployment:
    return Deployment(load_model(model), load_accelerator(gpu), 1, 1, precision, "auto", profile)


def test_grouped_gemm_efficiency_rises_with_tokens_per_expert() -> None:
    """The expert compute's achieved rate, m / (m + m½) of the dense rate, rises monotonically with m."""
    prof = EngineProfile().with_values(**ON)
    d = dep("qwen3-30b-a3b", prof)
    n, cost = d.numbers(), d.step_cost()
    tokens = np.array([1, 2, 4, 16, 64, 256, 1024, 4096], dtype=float)
    touched = experts_touched(n, tokens)
    per_expert = tokens * n.experts_per_token / touched  # rows each touched expert computes
    ideal_s = tokens * n.experts_per_token * n.expert_flops_per_token / n.matmul_flops_per_s
    efficiency = ideal_s / (ideal_s + touched * cost.expert_pad_s)
    assert np.all(np.diff(per_expert) > 0)
    assert np.all(np.diff(efficiency) > 0)
    assert efficiency == pytest.approx(per_expert / (per_expert + prof.moe_gemm_half_tokens))
    assert efficiency[0] < 0.05 and efficiency[-1] > 0.8


@pytest.mark.parametrize("model", ["llama-3.1-8b", "mistral-7b"])
def test_the_moe_terms_leave_dense_models_unchanged(model: str) -> None:
    base = load_profile("tensorrt-llm")
    off = dep(model, base.with_values(**OFF))
    on = dep(model, base.with_values(moe_gemm_half_tokens=256.0, moe_permute_passes=16.0, moe_layer_overhead_s=1e-3))
    batch = np.array([1, 8, 64, 512], dtype=float)
    assert on.numbers().expert_flops_per_token == 0.0 and on.numbers().moe_dispatch_bytes_per_token == 0.0
    np.testing.assert_array_equal(decode_step_seconds(on, batch, 1024.0), decode_step_seconds(off, batch, 1024.0))
    np.testing.assert_array_equal(prefill_seconds(on, 4096.0, 4), prefill_seconds(off, 4096.0, 4))


def test_each_moe_layer_adds_its_fused_op_floor_to_a_step_whatever_its_tokens() -> None:
    """A step of Qwen3-30B-A3B (48 MoE layers) pays moe_layer_overhead_s once per MoE layer: 48 × 26 us = 1.25 ms at
    one token and at 4,096 alike; a share of a batch-one decode step (NVIDIA's MoE kernel timings at 1-16 tokens sit
    ~26 us above the roofline per layer) that fades at prefill sizes."""
    base = load_profile("tensorrt-llm")
    assert base.moe_layer_overhead_s == pytest.approx(26e-6)
    without = dep("qwen3-30b-a3b", base.with_values(moe_layer_overhead_s=0.0))
    with_floor = dep("qwen3-30b-a3b", base)
    layers = with_floor.model.n_moe_layers
    assert layers == 48
    for batch in (1.0, 4096.0):
        extra = float(decode_step_seconds(with_floor, batch, 512.0) - decode_step_seconds(without, batch, 512.0))
        assert extra == pytest.approx(layers * 26e-6, rel=1e-9)
    one = float(decode_step_seconds(without, 1.0, 512.0))
    big = float(decode_step_seconds(without, 4096.0, 512.0))
    assert layers * 26e-6 / one > 0.1 > layers * 26e-6 / big


def test_a_batch_one_decode_of_a_128_expert_top_8_model_costs_more_than_the_old_form() -> None:
    off, on = EngineProfile().with_values(**OFF), EngineProfile().with_values(**ON)
    model = load_model("qwen3-30b-a3b")
    assert (model.n_experts, model.experts_per_token) == (128, 8)
    old = float(decode_step_seconds(dep("qwen3-30b-a3b", off), 1, 1024.0))
    new = float(decode_step_seconds(dep("qwen3-30b-a3b", on), 1, 1024.0))
    assert new > old * 1.001


def test_the_permute_cost_grows_with_the_tokens_of_a_step_and_the_padding_with_the_experts_touched() -> None:
    """At many tokens every expert is touched: the padding term is flat and the permute term linear in tokens
    (memory and compute times added, overlap_k = 1, so each term shows on its own)."""
    base = EngineProfile().with_values(overlap_k=1.0)
    d_off = dep("qwen3-30b-a3b", base.with_values(**OFF))
    d_pad = dep("qwen3-30b-a3b", base.with_values(moe_gemm_half_tokens=32.0))
    d_perm = dep("qwen3-30b-a3b", base.with_values(moe_permute_passes=4.0))
    big = np.array([4096.0, 8192.0])
    pad = prefill_seconds(d_pad, big) - prefill_seconds(d_off, big)
    perm = prefill_seconds(d_perm, big) - prefill_seconds(d_off, big)
    assert pad[0] > 0 and pad[1] == pytest.approx(pad[0], rel=0.02)
    assert perm[0] > 0 and perm[1] == pytest.approx(2 * perm[0], rel=0.02)


def test_a_fit_starts_the_moe_terms_from_their_documented_priors() -> None:
    prior = prior_profile(load_profile("tensorrt-llm"))
    assert {k: getattr(prior, k) for k in PRIORS} == PRIORS
    # a profile that does not name the fill and permute terms or the MoE layer's fixed cost leaves them off (a
    # profile file written before them predicts as it did); the shipped GPU profiles name the fixed cost
    assert EngineProfile().moe_gemm_half_tokens == 0.0 and EngineProfile().moe_permute_passes == 0.0
    assert EngineProfile().moe_layer_overhead_s == 0.0
    assert EngineProfile.from_dict({"name": "old"}).moe_layer_overhead_s == 0.0
    assert prior.moe_layer_overhead_s == load_profile("tensorrt-llm").moe_layer_overhead_s == pytest.approx(26e-6)


def ep_dep(model: str, tp: int, expert_parallel: bool, gpu: str = "H200-SXM") -> Deployment:
    """Tensor-parallel MoE (no attention-DP recipe) or explicit expert parallelism, under the tensorrt-llm profile."""
    prof = load_profile("tensorrt-llm").with_values(moe_attention_dp=False)
    return Deployment(load_model(model), load_accelerator(gpu), tp, 1, "fp8", "auto", prof, 0, expert_parallel)


def test_expert_parallel_changes_nothing_for_dense_models_or_one_gpu() -> None:
    for model, tp in (("llama-3.1-8b", 8), ("qwen3-30b-a3b", 1)):
        a, b = ep_dep(model, tp, False), ep_dep(model, tp, True)
        assert b.ep == 1 and a.numbers() == b.numbers() and a.memory == b.memory


def test_a_top_1_token_is_remote_with_probability_one_less_one_over_ep() -> None:
    d = ep_dep("llama-4-maverick-17b-128e", 8, True)
    assert d.model.experts_per_token == 1 and d.ep == 8
    assert d.numbers().ep_remote_ranks_per_token == pytest.approx(7 / 8)
    # top-8 over 8 ranks: fewer distinct remote ranks than copies (several experts share a rank)
    q = ep_dep("qwen3-30b-a3b", 8, True).numbers().ep_remote_ranks_per_token
    assert 4.0 < q < 7.0


def test_expert_parallel_trades_all_reduces_for_a_smaller_all_to_all_and_replicates_attention() -> None:
    tp_, ep_ = ep_dep("qwen3-30b-a3b", 8, False), ep_dep("qwen3-30b-a3b", 8, True)
    assert ep_.step_cost().comm_s_per_token < tp_.step_cost().comm_s_per_token
    # latencies: 2 per MoE layer instead of 2 per layer (Llama 4 Maverick: every other layer is MoE)
    mav_tp, mav_ep = ep_dep("llama-4-maverick-17b-128e", 8, False), ep_dep("llama-4-maverick-17b-128e", 8, True)
    assert mav_ep.model.n_moe_layers == mav_ep.model.n_layers // 2
    assert mav_ep.step_cost().comm_fixed_s == pytest.approx(mav_tp.step_cost().comm_fixed_s / 2)
    # attention and the other non-expert weights sit whole on every GPU: more weight memory, more bytes per step
    assert ep_.memory.weights_bytes == pytest.approx(tp_.memory.weights_bytes + 7 * ep_.replicated_bytes)
    assert ep_.numbers().dense_bytes > tp_.numbers().dense_bytes
    # the expert weights a step reads and the FLOPs per token are the same split either way
    assert ep_.numbers().expert_bytes == tp_.numbers().expert_bytes
    assert ep_.numbers().matmul_flops_per_token == tp_.numbers().matmul_flops_per_token
    # 4 KV heads over 8 GPUs: tensor parallelism stores each twice, attention DP once
    assert ep_.kv_bytes_per_gpu_layer_token() == pytest.approx(tp_.kv_bytes_per_gpu_layer_token() / 2)


def test_the_moe_layers_buffers_hold_k_routed_copies_of_every_token_the_layer_sees() -> None:
    """TensorRT-LLM's MoE runner sizes its workspace for the k routed copies of each token, each with an input-side
    buffer of max(hidden, inter) and an output-side one of max(2·inter, hidden) 16-bit values, and under attention DP
    a layer sees every rank's tokens (moe_max_num_tokens = max_num_tokens x dp_size): the activation memory set aside
    before the KV cache grows with top-k and ranks, and the KV cache shrinks by as much. Qwen3-30B-A3B: hidden 2048,
    8 of 128 experts of width 768; 8,192 tokens per rank."""
    tp_ = ep_dep("qwen3-30b-a3b", 8, False)
    recipe = replace(tp_, profile=tp_.profile.with_values(moe_attention_dp=True))
    one = ep_dep("qwen3-30b-a3b", 1, False)
    assert tp_.profile.max_num_batched_tokens == 8192
    # one GPU: 8,192 x 8 routed copies of max(2048, 768) + max(1536, 2048) values
    assert one.moe_workspace_bytes() == 8192 * 8 * (2048 + 2048) * 2
    # attention DP: 8 ranks' tokens, whole experts (inter 768 on each GPU), and each token's gathered input and
    # combined output; 8x the tensor-parallel replica's buffers and more
    assert recipe.moe_workspace_bytes() == 8 * 8192 * (8 * 4096 + 2 * 2048) * 2
    assert recipe.moe_workspace_bytes() > 8 * tp_.moe_workspace_bytes()
    # the KV cache gets what they leave: a smaller token budget leaves more of it
    smaller_budget = replace(recipe, profile=recipe.profile.with_values(max_num_batched_tokens=1024))
    freed = recipe.moe_workspace_bytes() - smaller_budget.moe_workspace_bytes()
    assert smaller_budget.memory.kv_bytes - recipe.memory.kv_bytes >= 8 * freed * recipe.profile.gpu_memory_utilization
    # an expert wider than twice the hidden size: the output-side buffer is the gated FC1 output (Maverick: hidden
    # 5120, experts of width 8192, one per token, on one of 8 attention-DP ranks)
    mav = replace(ep_dep("llama-4-maverick-17b-128e", 8, True), profile=load_profile("tensorrt-llm"))
    assert mav.attention_dp_ranks == 8 and mav.moe_tp == 1
    assert mav.moe_workspace_bytes() == mav.token_budget * (1 * (8192 + 16384) + 2 * 5120) * 2


def test_a_dense_models_activation_memory_is_its_hidden_states_mlp_and_logits() -> None:
    """A dense model has no MoE buffers; its step's peak is the rank's hidden states (4 x hidden), the MLP's gate and
    up outputs split tp-ways and the logits (Llama 3.1 8B: hidden 4096, MLP 14336, vocabulary 128256)."""
    for tp in (1, 2, 8):
        d = ep_dep("llama-3.1-8b", tp, False)
        tokens, seqs = d.profile.max_num_batched_tokens, d.profile.max_num_seqs
        assert d.moe_workspace_bytes() == 0.0
        expected = tokens * 2 * (4 * 4096 + 2 * 14336 / tp) + seqs * 128256 * 4 / tp
        assert d.activation_bytes_per_gpu() == pytest.approx(expected)


def test_the_attention_dp_recipe_takes_attention_dps_memory_reads_and_exchanges_with_tensor_parallel_flops() -> None:
    """Under the profile's attention-DP recipe a MoE replica holds what attention DP holds (the non-expert weights on
    every GPU, each GPU only its own sequences' KV: Qwen3-30B-A3B's 4 KV heads over 8 GPUs stored once, not twice),
    schedules per rank and reads the attention and other replicated weights in full, as explicit expert parallelism
    does; its FLOPs split as tensor parallelism's, and it communicates as attention DP does: an all-gather before each
    MoE layer and a reduce-scatter after it (half an all-reduce's volume each), nothing around the attention layers,
    which are whole on every rank."""
    tp_ = ep_dep("qwen3-30b-a3b", 8, False)
    recipe = replace(tp_, profile=tp_.profile.with_values(moe_attention_dp=True))
    ep_ = ep_dep("qwen3-30b-a3b", 8, True)
    assert recipe.attention_dp_ranks == ep_.attention_dp_ranks == 8 and tp_.attention_dp_ranks == 1
    assert recipe.memory.weights_bytes == pytest.approx(ep_.memory.weights_bytes)
    assert recipe.kv_bytes_per_gpu_layer_token() == pytest.approx(tp_.kv_bytes_per_gpu_layer_token() / 2)
    assert recipe.max_seqs == 8 * tp_.max_seqs and recipe.token_budget == 8 * tp_.token_budget
    a, b = recipe.numbers(), tp_.numbers()
    assert a.dense_bytes == pytest.approx(ep_.numbers().dense_bytes) and a.dense_bytes > b.dense_bytes
    assert a.dense_bytes == pytest.approx(b.dense_bytes + 7 / 8 * recipe.replicated_bytes)
    assert (a.expert_bytes, a.matmul_flops_per_token) == (b.expert_bytes, b.matmul_flops_per_token)
    assert (a.allreduce_bytes_per_token, a.ep) == (b.allreduce_bytes_per_token, 1)
    # every Qwen3 layer is MoE: two half-volume exchanges per layer against two all-reduces, the same latencies
    assert recipe.step_cost().comm_s_per_token == pytest.approx(tp_.step_cost().comm_s_per_token / 2)
    assert recipe.step_cost().comm_fixed_s == pytest.approx(tp_.step_cost().comm_fixed_s)
    # Maverick's MoE layers are every other one: a quarter of the volume, half the latencies
    mav_tp = ep_dep("llama-4-maverick-17b-128e", 8, False)
    mav = replace(mav_tp, profile=mav_tp.profile.with_values(moe_attention_dp=True))
    assert mav.attention_dp_ranks == 8
    assert mav.step_cost().comm_s_per_token == pytest.approx(mav_tp.step_cost().comm_s_per_token / 4)
    assert mav.step_cost().comm_fixed_s == pytest.approx(mav_tp.step_cost().comm_fixed_s / 2)


def test_the_attention_dp_exchanges_count_moe_layers_only_and_leave_dense_models_tensor_parallel() -> None:
    """A dense model has no attention-DP ranks, so the recipe leaves its two all-reduces per layer as they were; a
    model whose first layers are dense (DeepSeek-V3: 3 of 61) exchanges around its MoE layers only."""
    for model in ("llama-3.1-70b", "deepseek-v3"):
        plain = ep_dep(model, 8, False)
        recipe = replace(plain, profile=plain.profile.with_values(moe_attention_dp=True))
        a, b = plain.step_cost(), recipe.step_cost()
        n = plain.model
        if not n.is_moe:
            assert recipe.attention_dp_ranks == 1 and b.comm_fixed_s == a.comm_fixed_s > 0
            assert b.comm_s_per_token == a.comm_s_per_token > 0
            continue
        assert (n.n_layers, n.n_moe_layers) == (61, 58) and recipe.attention_dp_ranks == 8
        assert b.comm_fixed_s == pytest.approx(a.comm_fixed_s * 58 / 61)
        assert b.comm_s_per_token == pytest.approx(a.comm_s_per_token / 2 * 58 / 61)


def test_uneven_routing_slows_the_busiest_gpus_experts_more_the_more_gpus_hold_them() -> None:
    """Under power-law routing (moe_routing_alpha 1.2) NVIDIA's timings put the busiest GPU's grouped GEMMs at 1.10×
    the balanced time for 128 whole experts on one GPU and 1.77× over eight: an 8,192-token step of Qwen3-235B-A22B on
    8 H200s (the attention-DP recipe: whole experts) grows by k·F_e·(φ − 1)/(η·R_e) per token, a one-sequence decode
    step (weight reads) by under 1%, and balanced routing (the default) or a dense model is unchanged."""
    from tokenomy.catalog.accelerators import moe_routing_imbalance

    assert moe_routing_imbalance(0.0, 128, 8) == 1.0 and EngineProfile().moe_routing_alpha == 0.0
    assert (
        1.0
        < moe_routing_imbalance(1.2, 128, 1)
        < moe_routing_imbalance(1.2, 128, 4)
        < moe_routing_imbalance(1.2, 128, 8)
    )
    base = load_profile("tensorrt-llm").with_values(overlap_k=1.0)
    assert base.moe_routing_alpha == 1.2

    def on(model: str, gpus: int, alpha: float) -> Deployment:
        prof = base.with_values(moe_routing_alpha=alpha)
        return Deployment(load_model(model), load_accelerator("H200-SXM"), gpus, 1, "fp8", "fp8", prof)

    uneven, even = on("qwen3-235b-a22b", 8, 1.2), on("qwen3-235b-a22b", 8, 0.0)
    n = uneven.numbers()
    assert n.expert_imbalance == pytest.approx(1.769) and even.numbers().expert_imbalance == 1.0
    rate = n.expert_matmul_flops_per_s or n.matmul_flops_per_s
    per_token = (
        n.experts_per_token * n.expert_flops_per_token * (n.expert_imbalance - 1) / (n.expert_gemm_efficiency * rate)
    )
    tokens = 8192.0
    extra = uneven.step_cost().seconds(tokens, 1.0, 0.0, 0.0) - even.step_cost().seconds(tokens, 1.0, 0.0, 0.0)
    assert extra == pytest.approx(per_token * tokens, rel=1e-9) and extra > 0
    decode = float(decode_step_seconds(uneven, 1, 1024.0)) / float(decode_step_seconds(even, 1, 1024.0))
    assert 1.0 < decode < 1.01
    assert on("qwen3-235b-a22b", 1, 1.2).numbers().expert_imbalance == pytest.approx(1.10)
    dense = [float(decode_step_seconds(on("llama-3.1-70b", 8, a), 64, 1024.0)) for a in (0.0, 1.2)]
    assert dense[0] == dense[1]


def test_the_gpus_holding_whole_experts_set_the_imbalance_and_an_untimed_exponent_interpolates() -> None:
    """The ratio follows the GPUs that hold whole experts: eight under the attention-DP recipe or explicit expert
    parallelism (1.77 for 128 experts), one where every GPU runs a slice of every expert (vLLM's tensor-parallel MoE:
    the one-GPU 1.10); an exponent between balanced (0) and the timed ones lies between their ratios."""
    from tokenomy.catalog.accelerators import moe_routing_imbalance

    gpu, model = load_accelerator("H200-SXM"), load_model("qwen3-235b-a22b")
    vllm = load_profile("vllm")
    sliced = Deployment(model, gpu, 8, 1, "fp8", "fp8", vllm)
    whole = Deployment(model, gpu, 8, 1, "fp8", "fp8", vllm, expert_parallel=True)
    assert sliced.moe_tp == 8 and sliced.numbers().expert_imbalance == pytest.approx(1.10)
    assert whole.moe_tp == 1 and whole.numbers().expert_imbalance == pytest.approx(1.769)
    ratios = [moe_routing_imbalance(a, 128, 8) for a in (0.0, 0.5, 1.01, 1.1, 1.2, 3.0)]
    assert ratios[0] == 1.0 and all(b >= a for a, b in zip(ratios, ratios[1:], strict=False))
    assert ratios[1] < ratios[2] < ratios[3] < ratios[4] == ratios[5]
