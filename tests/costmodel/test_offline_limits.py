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
