"""Offline benchmark scheduler limits: trtllm-bench's max batch and token budget per request shape (deployment.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.costmodel.deployment import Deployment, offline_deployment, trtllm_bench_limits
from tokenomy.costmodel.perf import max_batch, offline_throughput, steady_state
from tokenomy.costmodel.profile import EngineProfile

TRT = EngineProfile(name="tensorrt-llm", max_num_seqs=2048, max_num_batched_tokens=8192)


def dep(model: str, gpu: str, tp: int = 1, pp: int = 1, precision: str = "fp8", rule: str = "trtllm-bench"):
    prof = TRT.with_values(offline_limits_rule=rule)
    return Deployment(load_model(model), load_accelerator(gpu), tp, pp, precision, "auto", prof)


def test_short_requests_on_a_roomy_gpu_hit_the_batch_cap() -> None:
    """A small model with room for thousands of short requests: batch capped at 4096, tokens at 2 × 4096."""
    seqs, tokens = trtllm_bench_limits(dep("llama-3.1-8b", "H200-SXM"), 128, 128)
    assert seqs == 4096
    assert tokens == 8192


def test_long_prompts_get_a_larger_token_budget_up_to_its_cap() -> None:
    """max_num_tokens follows batch × (1 + isl/osl): a 2048/128 shape gets more than a 128/2048 one, at most 32768."""
    d = dep("llama-3.1-8b", "H100-SXM")
    _, prompt_heavy = trtllm_bench_limits(d, 2048, 128)
    _, decode_heavy = trtllm_bench_limits(d, 128, 2048)
    assert prompt_heavy > decode_heavy
    assert prompt_heavy <= 32768 and decode_heavy >= 2048


def test_less_memory_left_gives_a_smaller_batch() -> None:
    """The same shape on a smaller GPU, or a larger model on the same GPU, gets fewer sequences."""
    small_gpu, _ = trtllm_bench_limits(dep("llama-3.3-70b", "H100-SXM", tp=2), 1000, 1000)
    big_gpu, _ = trtllm_bench_limits(dep("llama-3.3-70b", "H200-SXM", tp=2), 1000, 1000)
    assert small_gpu < big_gpu
    small_model, _ = trtllm_bench_limits(dep("llama-3.1-8b", "H100-SXM"), 2048, 2048)
    large_model, _ = trtllm_bench_limits(dep("llama-3.3-70b", "H100-SXM", tp=2), 2048, 2048)
    assert large_model < small_model


def test_without_a_rule_the_offline_deployment_is_the_deployment() -> None:
    """A profile that sets no rule (every engine but TensorRT-LLM) predicts exactly as before."""
    d = dep("llama-3.1-8b", "H100-SXM", rule="")
    assert offline_deployment(d, 128, 2048) is d
    b = max(max_batch(d, 128, 2048), 1)
    assert float(offline_throughput(d, 128, 2048).output_tokens_per_s[()]) == pytest.approx(
        float(steady_state(d, 128, 2048, b).output_tokens_per_s[()])
    )


def test_the_rule_sets_the_scheduler_limits_of_an_offline_run() -> None:
    """With the rule, the offline run uses trtllm-bench's limits: the batch cap and token budget it sizes."""
    d = dep("llama-3.1-8b", "H200-SXM")
    tuned = offline_deployment(d, 2048, 128)
    seqs, tokens = trtllm_bench_limits(d, 2048, 128)
    assert (tuned.profile.max_num_seqs, tuned.profile.max_num_batched_tokens) == (seqs, tokens)
    plain = replace(d, profile=d.profile.with_values(offline_limits_rule=""))
    limits = (plain.profile.max_num_seqs, plain.profile.max_num_batched_tokens)
    assert (seqs, tokens) != limits  # the shape sets other limits than the profile's, so another prediction
    assert float(offline_throughput(d, 2048, 128).output_tokens_per_s[()]) != pytest.approx(
        float(offline_throughput(plain, 2048, 128).output_tokens_per_s[()])
    )


def test_pipeline_stages_share_the_batch() -> None:
    """finetune_setting divides the batch over pp stages before rounding: a pp=2 replica gets ≤ 2 × its share."""
    seqs_pp1, _ = trtllm_bench_limits(dep("llama-3.3-70b", "RTX-PRO-6000", precision="nvfp4"), 1000, 1000)
    seqs_pp2, _ = trtllm_bench_limits(dep("llama-3.3-70b", "RTX-PRO-6000", pp=2, precision="nvfp4"), 1000, 1000)
    assert seqs_pp2 > seqs_pp1  # twice the memory for the KV cache
    assert seqs_pp2 % 2 == 0


def test_a_checkpoint_counts_packed_4_bit_weights_by_the_byte() -> None:
    """trtllm-bench's parameter count sums safetensors tensor shapes: a 4-bit format is stored two values to a uint8
    plus 8-bit scales, so MXFP4 experts count 17/32 of their weights (16 value bytes and 1 scale per 32), NVFP4
    layers 9/16 (8 value bytes and 1 scale per 16), FP8 and 16-bit weights one each."""
    oss = dep("gpt-oss-120b", "GB200", precision="mxfp4-experts")
    p = oss.params
    assert oss.checkpoint_elements == pytest.approx(p.routed_experts * 17 / 32 + (p.total - p.routed_experts))
    llama = dep("llama-3.3-70b", "B200", precision="nvfp4")
    q = llama.params
    unquantised = q.embedding + q.lm_head + q.norms + q.router + q.extra
    assert llama.checkpoint_elements == pytest.approx((q.total - unquantised) * 9 / 16 + unquantised)
    assert dep("llama-3.3-70b", "H100-SXM", tp=2).checkpoint_elements == pytest.approx(q.total)


def test_trtllm_bench_sizes_nvfp4_from_its_element_count_and_leaves_mxfp4_at_its_defaults() -> None:
    """calc_engine_setting by hand for Llama 3.3 70B in NVFP4 on one B200 (180 GiB) at 2000/2000 with an FP8 KV
    cache: 40.61e9 elements × 0.5 B = 18.9 GiB, 161.1 GiB left, × 0.9 / (2 × 80 layers × 8 KV heads × 128 × 1 B ×
    4000 tokens) = 237.5 requests, rounded up to 256 (all 70.55e9 parameters would leave 147.1 GiB: 216.9, 224); its
    token budget 237.5 × 2 = 475, at least 2048. gpt-oss's MXFP4 is not among the quantisations trtllm-bench sizes
    (build.py TUNED_QUANTS): its defaults, 2048 sequences and 8192 tokens."""
    llama = replace(dep("llama-3.3-70b", "B200", precision="nvfp4"), kv_precision="fp8")
    assert llama.checkpoint_elements == pytest.approx(40.61e9, rel=1e-3)
    assert trtllm_bench_limits(llama, 2000, 2000) == (256, 2048)
    oss = replace(dep("gpt-oss-120b", "GB200", precision="mxfp4-experts"), kv_precision="fp8")
    assert trtllm_bench_limits(oss, 1000, 1000) == (2048, 8192)


def test_attention_dp_ranks_each_take_the_tuned_limits() -> None:
    """Under the attention-DP recipe every rank schedules its own batch up to max_batch_size and max_num_tokens
    (TensorRT-LLM's DeepSeek-R1 guide: '--max_batch_size: Max batch size in each rank', run at 8 × that
    concurrency), so a MoE replica on tp GPUs gets tp times one rank's limits; a dense model on the same GPUs, or a
    profile without the recipe, one rank's."""
    moe = dep("qwen3-235b-a22b", "B200", tp=4, precision="nvfp4")
    recipe = replace(moe, profile=moe.profile.with_values(moe_attention_dp=True))
    assert (recipe.attention_dp_ranks, moe.attention_dp_ranks) == (4, 1)
    seqs, tokens = trtllm_bench_limits(recipe, 128, 128)
    tuned, plain = offline_deployment(recipe, 128, 128), offline_deployment(moe, 128, 128)
    assert (tuned.max_seqs, tuned.token_budget) == (4 * seqs, 4 * tokens)
    assert (plain.max_seqs, plain.token_budget) == (seqs, tokens)
    # short requests: the KV cache holds more than one rank's batch
    assert max_batch(tuned, 128, 128) > max_batch(plain, 128, 128)
    dense = dep("llama-3.3-70b", "B200", tp=4, precision="nvfp4")
    dense_recipe = replace(dense, profile=dense.profile.with_values(moe_attention_dp=True))
    assert dense_recipe.attention_dp_ranks == 1 and dense_recipe.max_seqs == dense.profile.max_num_seqs


def test_one_prompt_prefills_in_its_own_ranks_chunks_in_the_simulator_and_the_closed_forms() -> None:
    """Under attention DP a prompt lives on one rank: a 30,000-token prompt on 8 B200 (Qwen3-30B-A3B, 8,192 tokens
    per rank, 65,536 per step over the ranks) prefills in 4 chunks in the simulator, `prefill_seconds` and the
    steady state alike, so all three give one TTFT."""
    from tokenomy.catalog.profiles import load_profile
    from tokenomy.costmodel.perf import prefill_seconds
    from tokenomy.sim.run import simulate
    from tokenomy.sim.workload import WorkloadSpec, build_workload

    prof = load_profile("tensorrt-llm")
    d = Deployment(load_model("qwen3-30b-a3b"), load_accelerator("B200"), 8, 1, "nvfp4", "auto", prof)
    assert (d.attention_dp_ranks, d.token_budget) == (8, 8 * prof.max_num_batched_tokens)
    one = build_workload(WorkloadSpec(isl="30000", osl="2", num_requests=1, seed=0))
    simulated = simulate(d, one).summary()["ttft_s"]["mean"]
    closed = float(prefill_seconds(d, 30000, 1))
    steady = float(steady_state(d, 30000, 2, 1).ttft_s[()])
    assert simulated == pytest.approx(closed, rel=0.02) and steady == pytest.approx(closed, rel=0.02)


def test_trtllm_bench_sizes_block_scaled_fp8_as_fp8() -> None:
    """deepseek-ai's DeepSeek-V3/R1 checkpoint is FP8 with 128 × 128 block scales (FP8_BLOCK_SCALES, in build.py's
    TUNED_QUANTS at 1 byte per element): sized by the KV estimate like per-tensor FP8, not left at the defaults."""
    block = replace(dep("deepseek-v3", "H200-SXM", tp=8, precision="native"), kv_precision="fp8")
    per_tensor = replace(dep("deepseek-v3", "H200-SXM", tp=8, precision="fp8"), kv_precision="fp8")
    assert block.fmt.name == "fp8-block"
    for shape in ((1000, 1000), (1024, 8192)):
        assert trtllm_bench_limits(block, *shape) == trtllm_bench_limits(per_tensor, *shape) != (2048, 8192)
