"""The MoE kernel's measured grouped-GEMM efficiency (kernel_rates.csv `moe_gemm_efficiency`) in the step time."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import tokenomy.costmodel.deployment as deployment
from tokenomy.catalog.accelerators import kernel_rates, load_accelerator, moe_gemm_efficiency
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.cli.main import app
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import decode_step_seconds, prefill_seconds

QWEN3_30B = (2048, 768, 8, 128)  # hidden, expert inter, top-k, experts
MIXTRAL_8X7B = (4096, 14336, 2, 8)


def dep(model: str, gpu: str, precision: str) -> Deployment:
    return Deployment(load_model(model), load_accelerator(gpu), 1, 1, precision, "fp8", load_profile("tensorrt-llm"))


def test_the_shipped_tables_put_small_experts_far_below_the_dense_rate_and_large_ones_near_it() -> None:
    """NVIDIA's B200 NVFP4 timing: Qwen3-30B-A3B's small experts reach a quarter of the dense GEMM rate, Mixtral's
    large ones nearly all of it; the faster the tensor cores, the lower the small experts' share."""
    small_fp4 = moe_gemm_efficiency("B200", "fp4", *QWEN3_30B)
    assert 0.15 < small_fp4 < 0.4
    assert moe_gemm_efficiency("B200", "fp4", *MIXTRAL_8X7B) > 0.9
    assert (
        small_fp4
        < moe_gemm_efficiency("H100-SXM", "fp8", *QWEN3_30B)
        < moe_gemm_efficiency("H100-SXM", "bf16", *QWEN3_30B)
    )
    every = [
        v for rates in kernel_rates().values() for by_tp in rates.moe_gemm_efficiency.values() for v in by_tp.values()
    ]
    assert len(every) > 100 and all(0.0 < v <= 1.0 for v in every)


def test_unmeasured_accelerators_compute_types_and_shapes_run_at_the_dense_rate() -> None:
    assert moe_gemm_efficiency("MI300X", "fp8", *QWEN3_30B) == 1.0  # no NVIDIA table
    assert moe_gemm_efficiency("B200", "fp4", 2048, 777, 8, 128) == 1.0  # a shape NVIDIA did not time
    assert moe_gemm_efficiency("A100-SXM-80GB", "bf16", *MIXTRAL_8X7B) == 1.0  # its table has no balanced runs
    # fp16 runs on the bf16 tensor cores, int8 on the fp8 ones
    assert moe_gemm_efficiency("H100-SXM", "fp16", *QWEN3_30B) == moe_gemm_efficiency("H100-SXM", "bf16", *QWEN3_30B)
    assert moe_gemm_efficiency("H100-SXM", "int8", *QWEN3_30B) == moe_gemm_efficiency("H100-SXM", "fp8", *QWEN3_30B)


def test_dense_models_take_no_part() -> None:
    d = dep("llama-3.1-8b", "B200", "nvfp4")
    assert d.numbers().expert_gemm_efficiency == 1.0 and d.step_cost().expert_gemm_s_per_token == 0.0


def test_it_slows_compute_bound_prefill_of_small_experts_not_memory_bound_decode(monkeypatch) -> None:  # noqa: ANN001
    """Qwen3-30B-A3B in NVFP4 on a B200: an 8,192-token prefill chunk takes markedly longer with the measured
    efficiency than at the dense rate, a one-sequence decode step (weight reads) barely changes."""
    measured = dep("qwen3-30b-a3b", "B200", "nvfp4")
    eta = measured.numbers().expert_gemm_efficiency  # computed (and cached) before the table is switched off
    monkeypatch.setattr(deployment, "moe_gemm_timing", lambda *args: (1.0, 0))
    monkeypatch.setattr(deployment, "moe_nearest_timing", lambda *args: None)
    dense_rate = dep("qwen3-30b-a3b", "B200", "nvfp4")
    assert dense_rate.numbers().expert_gemm_efficiency == 1.0 and eta < 0.4
    prefill = float(prefill_seconds(measured, 8192.0)) / float(prefill_seconds(dense_rate, 8192.0))
    decode = float(decode_step_seconds(measured, 1, 1024.0)) / float(decode_step_seconds(dense_rate, 1, 1024.0))
    assert prefill > 1.2
    assert decode == pytest.approx(1.0, abs=0.01)


def test_each_routed_copy_pays_the_same_extra_compute(monkeypatch) -> None:  # noqa: ANN001
    """Against the dense-rate step, the measured efficiency adds k·F_e·φ·(1/η − 1)/R per token (φ: the routing
    imbalance both steps pay, 1.10 for 128 experts on one GPU): the same at 4,096 and 8,192 tokens, so the extra time
    doubles with the tokens (memory and compute times added: overlap_k = 1)."""
    prof = load_profile("tensorrt-llm").with_values(overlap_k=1.0)
    measured = Deployment(load_model("qwen3-30b-a3b"), load_accelerator("B200"), 1, 1, "nvfp4", "fp8", prof)
    n = measured.numbers()
    monkeypatch.setattr(deployment, "moe_gemm_timing", lambda *args: (1.0, 0))
    monkeypatch.setattr(deployment, "moe_nearest_timing", lambda *args: None)
    dense_rate = Deployment(load_model("qwen3-30b-a3b"), load_accelerator("B200"), 1, 1, "nvfp4", "fp8", prof)
    tokens = np.array([4096.0, 8192.0])
    extra = measured.step_cost().seconds(tokens, 1.0, 0.0, 0.0) - dense_rate.step_cost().seconds(tokens, 1.0, 0.0, 0.0)
    per_token = (
        n.experts_per_token
        * n.expert_flops_per_token
        * n.expert_imbalance
        * (1 / n.expert_gemm_efficiency - 1)
        / n.matmul_flops_per_s
    )
    assert per_token > 0 and n.expert_imbalance == pytest.approx(1.10)
    np.testing.assert_allclose(extra, per_token * tokens, rtol=1e-9)


def test_a_format_the_accelerator_cannot_run_takes_the_efficiency_of_the_rate_it_runs_at() -> None:
    """NVFP4 on an H100 computes in bf16 (no FP4 tensor cores): its experts take bf16's measured efficiency."""
    d = dep("qwen3-30b-a3b", "H100-SXM", "nvfp4")
    assert d.numbers().expert_gemm_efficiency == moe_gemm_efficiency("H100-SXM", "bf16", *QWEN3_30B) < 1.0


def test_a_chip_measured_under_another_id_takes_its_tables() -> None:
    """GH200 and H100 PCIe carry the H100's GH100 chip: NVIDIA's H100 SXM MoE tables stand in for them."""
    for gpu in ("GH200", "H100-PCIe"):
        assert moe_gemm_efficiency(gpu, "fp8", *QWEN3_30B) == moe_gemm_efficiency("H100-SXM", "fp8", *QWEN3_30B) < 1


def test_a_kernel_rates_row_it_cannot_read_names_its_line_and_shape(tmp_path) -> None:  # noqa: ANN001
    """A moe_gemm_efficiency row without its expert count: an error naming the file line and the shape, no
    traceback of a KeyError."""
    from tokenomy.catalog.accelerators import read_kernel_rates
    from tokenomy.catalog.errors import CatalogError

    bad = tmp_path / "kernel_rates.csv"
    bad.write_text(
        "accelerator,quantity,compute,tp,value,unit,shape,table,device,source,read_on\n"
        "B200,gemm_rate,fp4,,4545.9,TFLOP/s,m=1 n=2 k=3,t.parquet,NVIDIA B200,src,2026-12-06\n"
        "B200,moe_gemm_efficiency,fp4,,0.255,of the dense GEMM rate,hidden=2048 inter=768 topk=8,t.parquet,"
        "NVIDIA B200,src,2026-12-06\n"
    )
    with pytest.raises(CatalogError) as err:
        read_kernel_rates(bad)
    text = str(err.value)
    assert f"{bad}:3:" in text and "'experts'" in text and "hidden=2048 inter=768 topk=8" in text


def test_tensor_parallel_slices_of_the_experts_run_at_their_own_measured_efficiency() -> None:
    """NVIDIA's H100 FP8 timings of Mixtral 8x7B's experts sliced over 8 GPUs (each GPU runs 14,336 / 8 columns):
    well below the whole experts' efficiency; a slicing NVIDIA did not time takes the nearest wider timed one's."""
    by_tp = [moe_gemm_efficiency("H100-SXM", "fp8", *MIXTRAL_8X7B, moe_tp=tp) for tp in (1, 2, 4, 8)]
    assert by_tp[3] < 0.85 * by_tp[0]
    assert by_tp == sorted(by_tp, reverse=True)
    assert moe_gemm_efficiency("H100-SXM", "fp8", *MIXTRAL_8X7B, moe_tp=3) == by_tp[1]
    assert moe_gemm_efficiency("H100-SXM", "fp8", *MIXTRAL_8X7B, moe_tp=16) == by_tp[3]


def test_an_untimed_thin_slicing_is_not_priced_as_the_whole_experts() -> None:
    """Qwen3-30B-A3B's experts in NVFP4 on a B200: timed whole, in halves and in quarters, each thinner slicing
    slower; eighths (96 columns) were not timed and take the quarters' figure, not the whole experts' 3× higher one."""
    by_tp = [moe_gemm_efficiency("B200", "fp4", *QWEN3_30B, moe_tp=tp) for tp in (1, 2, 4, 8)]
    assert by_tp[0] > by_tp[1] > by_tp[2] == by_tp[3]


def test_experts_are_sliced_only_where_the_engine_runs_moe_tensor_parallel() -> None:
    """TensorRT-LLM's C++-executor releases (v0.17) and vLLM run Mixtral's experts tensor-parallel: 8 slices on 8
    GPUs, at the sliced efficiency; the attention-DP + expert-parallel recipe of its PyTorch releases, and expert
    parallelism, keep each expert whole on one GPU; dense models have none."""
    mixtral, h100 = load_model("mixtral-8x7b"), load_accelerator("H100-SXM")
    trt = load_profile("tensorrt-llm")
    sliced = moe_gemm_efficiency("H100-SXM", "fp8", *MIXTRAL_8X7B, moe_tp=8)
    for profile in (trt.for_engine_version("v0.17"), load_profile("vllm")):
        d = Deployment(mixtral, h100, 8, 1, "fp8", "fp8", profile)
        assert d.moe_tp == 8 and d.numbers().expert_gemm_efficiency == sliced
    assert trt.moe_attention_dp and Deployment(mixtral, h100, 8, 1, "fp8", "fp8", trt).moe_tp == 1
    v017 = trt.for_engine_version("v0.17")
    assert Deployment(mixtral, h100, 8, 1, "fp8", "fp8", v017, expert_parallel=True).moe_tp == 1
    assert Deployment(load_model("llama-3.1-70b"), h100, 8, 1, "fp8", "fp8", v017).moe_tp == 1


def test_plan_and_simulate_say_which_measured_efficiency_the_experts_run_at() -> None:
    """A MoE plan's notes name the efficiency, the slicing and where it came from (an untimed slicing names the one
    that stood in; no timing at all says so); a dense model's have no such line; simulate prints the same line."""

    def notes(*args: str) -> list[str]:
        result = CliRunner().invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return [n for n in json.loads(result.stdout)["notes"] if n.startswith("MoE kernel")]

    qwen = ["--model", "qwen3-30b-a3b", "--gpu", "B200", "--precision", "nvfp4", "--engine", "vllm"]
    (sliced,) = notes("plan", *qwen, "--tp", "8", "--gpus", "8")
    quarters = moe_gemm_efficiency("B200", "fp4", *QWEN3_30B, moe_tp=4)
    assert f"run at {quarters:.2f} of the dense GEMM rate" in sliced
    assert "each GPU runs 1/8 of every expert" in sliced and "1/8 not timed, the 1/4 figure" in sliced
    mixtral = ["--model", "mixtral-8x7b", "--gpu", "H100-SXM", "--precision", "fp8", "--engine", "tensorrt-llm"]
    (whole,) = notes("plan", *mixtral, "--tp", "2", "--gpus", "2")
    assert "whole experts on each GPU" in whole and "not timed" not in whole
    (untimed,) = notes("plan", "--model", "mixtral-8x7b", "--gpu", "MI300X", "--precision", "fp8")
    assert "no NVIDIA timing" in untimed and "dense GEMM rate" in untimed
    assert notes("plan", "--model", "llama-3.1-8b", "--gpu", "H100-SXM") == []
    assert notes("simulate", *qwen, "--tp", "8", "--num-requests", "20", "--rate", "5") == [sliced]


def test_a_kernel_rates_row_with_an_unreadable_slicing_names_its_line(tmp_path) -> None:  # noqa: ANN001
    """A moe_gemm_efficiency row whose tp= is not a number: an error naming the file line and the shape."""
    from tokenomy.catalog.accelerators import read_kernel_rates
    from tokenomy.catalog.errors import CatalogError

    bad = tmp_path / "kernel_rates.csv"
    bad.write_text(
        "accelerator,quantity,compute,tp,value,unit,shape,table,device,source,read_on\n"
        "B200,moe_gemm_efficiency,fp4,,0.081,of the dense GEMM rate,hidden=2048 inter=768 topk=8 experts=128 "
        "tokens=4096-16384 tp=four,t.parquet,NVIDIA B200,src,2026-12-06\n"
    )
    with pytest.raises(CatalogError) as err:
        read_kernel_rates(bad)
    assert f"{bad}:2:" in str(err.value) and "tp=four" in str(err.value)


GPT_OSS_20B = (2880, 2880, 4, 32)
GPT_OSS_120B = (2880, 2880, 4, 128)
DEEPSEEK_V3 = (7168, 2048, 8, 256)


def test_gpt_oss_mxfp4_experts_run_w4a16_on_hopper_and_w4a8_on_blackwell() -> None:
    """TensorRT-LLM runs gpt-oss's MXFP4 experts with bf16 activations on Hopper (Triton) and MXFP8 ones on
    Blackwell: the kernel type and the GEMM rate it counts at follow the accelerator while attention stays bf16.
    NVIDIA's timings put Hopper's under half the bf16 rate; Blackwell's, counted at its FP8 rate, beat the bf16 one."""
    h200, b200 = dep("gpt-oss-20b", "H200-SXM", "native"), dep("gpt-oss-20b", "B200", "native")
    assert h200.expert_kernel == ("mxfp4-w4a16", "bf16") and b200.expert_kernel == ("mxfp4-w4a8", "fp8")
    assert h200.matmul_compute == b200.matmul_compute == "bf16"
    w4a16 = moe_gemm_efficiency("H200-SXM", "mxfp4-w4a16", *GPT_OSS_20B)
    assert h200.numbers().expert_gemm_efficiency == w4a16 < 0.5
    w4a8 = moe_gemm_efficiency("B200", "mxfp4-w4a8", *GPT_OSS_20B)
    n = b200.numbers()
    assert 0.5 < w4a8 == n.expert_gemm_efficiency < 1.0
    assert w4a8 * n.expert_matmul_flops_per_s > n.matmul_flops_per_s  # at the FP8 rate: beats bf16 despite η < 1
    assert h200.numbers().expert_matmul_flops_per_s == h200.numbers().matmul_flops_per_s
    assert "run at 0.66 of the fp8 GEMM rate" in b200.moe_kernel_note()
    # each routed copy costs more compute than at the bf16 rate on the Hopper kernel, less on Blackwell's, and a
    # step's compute stays positive whatever the tokens
    assert h200.step_cost().expert_gemm_s_per_token > 0 > b200.step_cost().expert_gemm_s_per_token
    tokens = np.array([1.0, 64.0, 8192.0])
    _, compute = b200.step_cost().roof_terms(tokens, tokens, 0.0, 0.0)
    assert (compute > 0).all()


def test_an_untimed_w4a8_kernel_runs_at_the_dense_rate() -> None:
    """No NVIDIA timing of gpt-oss's W4A8 experts on a GPU with FP4 tensor cores (a user's Blackwell part: the B200's
    datasheet under an id without kernel tables): its experts run at the dense bf16 rate, as any untimed kernel,
    not at the FP8 rate they might reach."""
    gpu = load_accelerator("B200")
    d = Deployment(load_model("gpt-oss-20b"), gpu, 1, 1, "native", "fp8", load_profile("tensorrt-llm"))
    assert d.expert_kernel[0] == "mxfp4-w4a8"
    untimed = Deployment(
        load_model("gpt-oss-20b"), gpu.model_copy(update={"id": "B200-untimed"}), 1, 1, "native", "fp8",
        load_profile("tensorrt-llm"),
    )  # fmt: skip
    n = untimed.numbers()
    assert n.expert_gemm_efficiency == 1.0 and n.expert_matmul_flops_per_s == n.matmul_flops_per_s
    assert "no NVIDIA timing" in untimed.moe_kernel_note() and "dense GEMM rate" in untimed.moe_kernel_note()


def test_block_scaled_fp8_checkpoints_run_the_block_scale_kernel() -> None:
    """DeepSeek-V3's FP8 checkpoint carries a scale per 128 × 128 block (its config's weight_block_size): native
    precision fp8-block on the FP8 tensor cores at NVIDIA's block-scale MoE timing, on an H200 well under the
    per-tensor FP8 kernel's; the published names for it are aliases."""
    assert load_model("deepseek-v3").native_precision == "fp8-block"
    d = dep("deepseek-v3", "H200-SXM", "native")
    assert d.matmul_compute == "fp8" and d.expert_kernel == ("fp8-block", "fp8")
    assert d.numbers().expert_gemm_efficiency == moe_gemm_efficiency("H200-SXM", "fp8-block", *DEEPSEEK_V3) < 0.5
    for name in ("FP8_BLOCK", "fp8-blockwise", "block-fp8"):
        assert dep("deepseek-v3", "H200-SXM", name).fmt.name == "fp8-block"
    assert dep("qwen3-30b-a3b", "H200-SXM", "fp8").expert_kernel == ("fp8", "fp8")  # per-tensor FP8 (ModelOpt)


def test_an_expert_set_timed_only_split_takes_its_smallest_split(tmp_path) -> None:  # noqa: ANN001
    """gpt-oss-120b's 128 experts in W4A16 were timed on an H100 only split over 2 GPUs and more: the 2-way split
    stands in for the whole set and the plan note says so; a whole-set row wins over a split's in either order."""
    from tokenomy.catalog.accelerators import moe_split_stand_in, read_kernel_rates

    assert moe_split_stand_in("H100-SXM", "mxfp4-w4a16", *GPT_OSS_120B) == 2
    assert moe_split_stand_in("H200-SXM", "mxfp4-w4a16", *GPT_OSS_120B) == 1  # timed whole there
    assert 0.0 < moe_gemm_efficiency("H100-SXM", "mxfp4-w4a16", *GPT_OSS_120B) < 0.5
    note = dep("gpt-oss-120b", "H100-SXM", "native").moe_kernel_note()
    assert "its 2-way expert-parallel split's figure" in note
    head = "accelerator,quantity,compute,tp,value,unit,shape,table,device,source,read_on\n"
    shape = "hidden=2880 inter=2880 topk=4 experts=128 tokens=4096-16384"
    split = f"H100-SXM,moe_gemm_efficiency,mxfp4-w4a16,,0.426,of the dense GEMM rate,{shape} ep=2,t,d,s,2026-12-06\n"
    whole = f"H100-SXM,moe_gemm_efficiency,mxfp4-w4a16,,0.500,of the dense GEMM rate,{shape},t,d,s,2026-12-06\n"
    key = ("mxfp4-w4a16", *GPT_OSS_120B)
    for i, rows in enumerate((split + whole, whole + split)):
        path = tmp_path / f"rates{i}.csv"
        path.write_text(head + rows)
        rates = read_kernel_rates(path)["H100-SXM"]
        assert rates.moe_gemm_efficiency[key] == {1: 0.5} and key not in rates.moe_split_stand_ins
    path = tmp_path / "split_only.csv"
    path.write_text(head + split)
    rates = read_kernel_rates(path)["H100-SXM"]
    assert rates.moe_gemm_efficiency[key] == {1: 0.426} and rates.moe_split_stand_ins[key] == 2


def test_an_fp8_checkpoint_named_by_an_alias_takes_the_engines_fp8_kv_default() -> None:
    """TensorRT-LLM stores the KV cache in FP8 for NVIDIA's FP8 checkpoints: 'FP8' and 'fp8_e4m3' are that
    checkpoint too; block-scaled FP8 (deepseek-ai's own) and bf16 keep the model's dtype."""
    trt, h100 = load_profile("tensorrt-llm"), load_accelerator("H100-SXM")
    assert trt.kv_fp8_with_fp8_weights
    for precision, kv in (("fp8", "fp8"), ("FP8", "fp8"), ("fp8_e4m3", "fp8"), ("fp8-block", "bf16"), ("bf16", "bf16")):
        d = Deployment(load_model("llama-3.1-8b"), h100, 1, 1, precision, "auto", trt)
        assert d.kv_dtype == kv, precision


def test_engines_without_mxfp8_activations_run_gpt_oss_untimed_on_blackwell() -> None:
    """Only TensorRT-LLM's profile runs MXFP4 experts with MXFP8 activations on FP4 tensor cores; vLLM runs its own
    MXFP4 × bf16 kernel there (FlashInfer's), not TensorRT-LLM's slow W4A16 fallback that NVIDIA timed at 0.18 of
    the bf16 rate on a B200: untimed, the dense bf16 rate, and the note says so. On Hopper every engine's experts
    take the timed W4A16 kernel."""
    b200, h200, oss = load_accelerator("B200"), load_accelerator("H200-SXM"), load_model("gpt-oss-20b")
    assert load_profile("tensorrt-llm").mxfp4_moe_mxfp8_activations
    assert not load_profile("vllm").mxfp4_moe_mxfp8_activations
    assert moe_gemm_efficiency("B200", "mxfp4-w4a16", *GPT_OSS_20B) < 0.3  # timed, and not what vLLM runs
    vllm = Deployment(oss, b200, 1, 1, "native", "fp8", load_profile("vllm"))
    assert vllm.expert_kernel == ("mxfp4-bf16", "bf16")
    n = vllm.numbers()
    assert n.expert_gemm_efficiency == 1.0 and n.expert_matmul_flops_per_s == n.matmul_flops_per_s
    assert "no NVIDIA timing" in vllm.moe_kernel_note() and "mxfp4-bf16" in vllm.moe_kernel_note()
    hopper = Deployment(oss, h200, 1, 1, "native", "fp8", load_profile("vllm"))
    assert hopper.expert_kernel == ("mxfp4-w4a16", "bf16") and hopper.numbers().expert_gemm_efficiency < 0.5


def test_a_split_row_with_a_tensor_parallel_slicing_is_an_error_and_the_smallest_split_stands_in(tmp_path) -> None:  # noqa: ANN001
    """An 'ep=N' row stands in for whole experts only: with tp=M too it is an error naming its line; of two split
    rows the smaller split stands in, whichever comes first."""
    from tokenomy.catalog.accelerators import read_kernel_rates
    from tokenomy.catalog.errors import CatalogError

    head = "accelerator,quantity,compute,tp,value,unit,shape,table,device,source,read_on\n"
    shape = "hidden=2880 inter=2880 topk=4 experts=128 tokens=4096-16384"
    row = "H100-SXM,moe_gemm_efficiency,mxfp4-w4a16,,{v},of the dense GEMM rate,{s},t,d,s,2026-12-06\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(head + row.format(v=0.3, s=f"{shape} tp=2 ep=2"))
    with pytest.raises(CatalogError) as err:
        read_kernel_rates(bad)
    assert f"{bad}:2:" in str(err.value) and "ep=2 with tp=2" in str(err.value)
    key = ("mxfp4-w4a16", *GPT_OSS_120B)
    four, two = row.format(v=0.34, s=f"{shape} ep=4"), row.format(v=0.43, s=f"{shape} ep=2")
    for i, rows in enumerate((four + two, two + four)):
        path = tmp_path / f"splits{i}.csv"
        path.write_text(head + rows)
        rates = read_kernel_rates(path)["H100-SXM"]
        assert rates.moe_gemm_efficiency[key] == {1: 0.43} and rates.moe_split_stand_ins[key] == 2


def test_the_nearest_timed_expert_set_is_nearest_in_size_width_and_routed_share() -> None:
    """nearest_moe_timing picks, among one kernel type's timings, the set nearest in log hidden size, log expert
    width per GPU and log routed share, each of which alone can decide; a thinner slice of a wider expert is a
    candidate, and so is a query's own slicing; another kernel type's timings are not; none timed gives None."""
    from tokenomy.catalog.accelerators import nearest_moe_timing

    qwen, mixtral = ("fp8", 4096, 1536, 8, 128), ("fp8", 4096, 14336, 2, 8)
    timed = {qwen: {1: 0.71, 4: 0.31}, mixtral: {1: 0.96}, ("fp4", 4096, 2048, 8, 256): {1: 0.50}}
    assert nearest_moe_timing(timed, "fp8", 4096, 2048, 8, 128) == (0.71, (qwen, 1))  # a little wider: Qwen3's set
    assert nearest_moe_timing(timed, "fp8", 4096, 16384, 2, 8) == (0.96, (mixtral, 1))
    # a quarter as wide at Qwen3's routed share: its quarter slices; the same set run in quarters: the same answer
    assert nearest_moe_timing(timed, "fp8", 4096, 384, 8, 128) == (0.31, (qwen, 4))
    assert nearest_moe_timing(timed, "fp8", 4096, 1540, 8, 128, moe_tp=4) == (0.31, (qwen, 4))
    # width and share held, the hidden size decides; width and size held, the routed share decides
    by_size = {("bf16", 2048, 1024, 8, 64): {1: 0.2}, ("bf16", 8192, 1024, 8, 64): {1: 0.9}}
    assert nearest_moe_timing(by_size, "bf16", 7000, 1024, 8, 64)[0] == 0.9
    assert nearest_moe_timing(by_size, "bf16", 2500, 1024, 8, 64)[0] == 0.2
    by_share = {("bf16", 4096, 1024, 1, 128): {1: 0.3}, ("bf16", 4096, 1024, 8, 32): {1: 0.8}}
    assert nearest_moe_timing(by_share, "bf16", 4096, 1024, 4, 16)[0] == 0.8
    assert nearest_moe_timing(by_share, "bf16", 4096, 1024, 1, 256)[0] == 0.3
    assert nearest_moe_timing(timed, "fp4", 4096, 1536, 8, 128)[0] == 0.50  # only its own kernel type's timings
    assert nearest_moe_timing(timed, "bf16", 4096, 1536, 8, 128) is None


def test_experts_timed_only_in_thinner_slices_take_their_widest_slice_not_another_set() -> None:
    """A set NVIDIA timed only sliced (L40S, 8192 × 5120 experts, 22 of 512, FP8 from halves on) run whole takes its
    own halves' figure, a lower bound from the same experts, before any other set however near."""
    from tokenomy.catalog.accelerators import moe_gemm_timing, moe_nearest_timing

    shape = (8192, 5120, 22, 512)
    assert moe_gemm_timing("L40S", "fp8", *shape) == (1.0, 0)
    halves = moe_gemm_efficiency("L40S", "fp8", *shape, moe_tp=2)
    eta, text = moe_nearest_timing("L40S", "fp8", *shape)
    assert eta == halves and text.startswith("their own 1/2 slices'")
    note = Deployment(
        load_model("deepseek-v3"), load_accelerator("L40S"), 1, 1, "fp8", "fp8", load_profile("tensorrt-llm")
    ).moe_kernel_note()
    assert "nearest timed set's" in note  # another shape: not its own slices


def test_an_untimed_expert_shape_takes_the_nearest_timed_sets_efficiency_not_the_dense_rate() -> None:
    """DeepSeek-V3 asked in per-tensor FP8 on an H200: NVIDIA timed its shape only in the block-scale kernel, so
    the per-tensor kernel's nearest timed set stands in (the note names it), not the dense rate; still faster than
    the block-scaled checkpoint's own timing. An accelerator without tables keeps the dense rate."""
    from tokenomy.catalog.accelerators import moe_nearest_timing

    fp8 = dep("deepseek-v3", "H200-SXM", "fp8")
    eta, shape = moe_nearest_timing("H200-SXM", "fp8", *DEEPSEEK_V3)
    assert 0.0 < eta < 1.0
    assert fp8.expert_timing == (eta, 1, shape) and fp8.numbers().expert_gemm_efficiency == eta
    note = fp8.moe_kernel_note()
    assert f"run at {eta:.2f} of the dense GEMM rate" in note and f"{shape} figure" in note
    assert shape.startswith("the nearest timed set's, hidden=")
    block = dep("deepseek-v3", "H200-SXM", "native")
    assert block.expert_timing[2] == "" and block.numbers().expert_gemm_efficiency < eta
    mi300x = dep("deepseek-v3", "MI300X", "fp8")
    assert mi300x.expert_timing == (1.0, 0, "") and "no NVIDIA timing" in mi300x.moe_kernel_note()
    # a GH200 takes the H100's tables for the stand-in too
    h100_eta, h100_set = moe_nearest_timing("H100-SXM", "fp8", *DEEPSEEK_V3)
    # fp16 runs bf16's kernels, int8 FP8's (their tables)
    assert moe_nearest_timing("H200-SXM", "fp16", *DEEPSEEK_V3) == moe_nearest_timing("H200-SXM", "bf16", *DEEPSEEK_V3)
    assert moe_nearest_timing("H200-SXM", "int8", *DEEPSEEK_V3) == (eta, shape)
    assert dep("deepseek-v3", "GH200", "fp8").expert_timing == (h100_eta, 1, h100_set)


def test_plan_names_the_nearest_set_of_sliced_experts_and_its_kernel_rate() -> None:
    """DeepSeek-V3 in FP8 on 8 H200 under vLLM (tensor-parallel MoE: eighths of each expert): the plan note names the
    nearest timed set's eighths. An untimed gpt-oss-style MXFP4 set on a B200 under TensorRT-LLM counts its stand-in η
    at the FP8 rate of the W4A8 kernel it runs, as the timed gpt-oss sets do, not at the dense bf16 rate."""
    from tokenomy.catalog.accelerators import moe_nearest_timing

    result = CliRunner().invoke(
        app, ["plan", "--model", "deepseek-v3", "--gpu", "H200-SXM", "--precision", "fp8", "--tp", "8", "--gpus",
              "8", "--engine", "vllm", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (note,) = [n for n in json.loads(result.stdout)["notes"] if n.startswith("MoE kernel")]
    eta, text = moe_nearest_timing("H200-SXM", "fp8", *DEEPSEEK_V3, moe_tp=8)
    assert text.endswith("in 1/8 slices") and f"run at {eta:.2f} of the dense GEMM rate" in note and text in note
    arch = load_model("gpt-oss-20b")
    wider = dataclasses.replace(arch, n_experts=48)  # no NVIDIA timing of 48 such experts
    gpu, prof = load_accelerator("B200"), load_profile("tensorrt-llm")
    d = Deployment(wider, gpu, 1, 1, "native", "fp8", prof)
    n = d.numbers()
    assert d.expert_kernel == ("mxfp4-w4a8", "fp8") and d.expert_timing[2]
    assert n.expert_gemm_efficiency < 1.0 and n.expert_matmul_flops_per_s > n.matmul_flops_per_s
