"""Achievable fractions of datasheet peak per accelerator: sourced, refused without a source, and used by the step
time (an MI300X step runs at the bandwidth and GEMM rate its microbenchmarks reach, not its datasheet's)."""

from __future__ import annotations

import pytest

from tokenomy.catalog.accelerators import (
    REFERENCE_ACCELERATOR,
    accelerators,
    load_accelerator,
    relative_achievable,
)
from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import decode_step_seconds, prefill_seconds

HOST = "- id: {id}\n  memory_gb: 24\n  memory_bandwidth_gb_s: 20\n  dense_tflops: {{fp32: 0.2}}\n"


def _datasheet_only(gpu_id: str):  # noqa: ANN202
    """The catalogue entry with its published achievable fractions removed (as an entry without any)."""
    gpu = load_accelerator(gpu_id)
    return gpu.model_copy(update={"achievable_bandwidth_fraction": None, "achievable_tflops_fraction": {}})


def _mi300x(gpu) -> Deployment:  # noqa: ANN001
    return Deployment(load_model("llama-3.1-70b"), gpu, tp=8, precision="fp8", profile=load_profile("vllm"))


def test_an_mi300x_decode_step_runs_at_its_achievable_bandwidth_not_the_datasheet_one():
    measured, datasheet = _mi300x(load_accelerator("MI300X")), _mi300x(_datasheet_only("MI300X"))
    # one sequence, short context: a weight-read-bound step
    slow, fast = float(decode_step_seconds(measured, 1, 512)), float(decode_step_seconds(datasheet, 1, 512))
    ref, mi = load_accelerator(REFERENCE_ACCELERATOR), load_accelerator("MI300X")
    bandwidth_ratio = ref.achievable_bandwidth_fraction / mi.achievable_bandwidth_fraction  # 0.949 / 0.804
    assert bandwidth_ratio > 1.1
    # the step's memory part stretches by the bandwidth ratio; fixed per-step costs do not, so a little less overall
    assert 1.05 < slow / fast <= bandwidth_ratio + 1e-9
    assert measured.numbers().bytes_per_s < datasheet.numbers().bytes_per_s


def test_an_mi300x_prefill_runs_at_its_achievable_fp8_gemm_rate():
    measured, datasheet = _mi300x(load_accelerator("MI300X")), _mi300x(_datasheet_only("MI300X"))
    slow, fast = float(prefill_seconds(measured, 8192)), float(prefill_seconds(datasheet, 8192))
    mi, ref = load_accelerator("MI300X"), load_accelerator(REFERENCE_ACCELERATOR)
    gemm_ratio = ref.tflops_fraction("fp8") / mi.tflops_fraction("fp8")  # 0.698 / 0.443: hipBLASLt vs cuBLASLt
    # a long prompt is GEMM-bound: it stretches by most of the GEMM ratio (all-reduce and fixed costs do not)
    assert 1.2 < slow / fast <= gemm_ratio + 1e-9
    assert measured.numbers().matmul_flops_per_s < datasheet.numbers().matmul_flops_per_s


def test_an_accelerator_without_published_figures_scales_as_the_reference():
    assert relative_achievable(load_accelerator("L40S"), "fp8") == (1.0, 1.0)
    assert relative_achievable(load_accelerator(REFERENCE_ACCELERATOR), "bf16") == (1.0, 1.0)
    bw, gemm = relative_achievable(load_accelerator("MI300X"), "fp8")
    assert bw < 1.0 and gemm < bw  # AMD: both below the H100's shares, GEMMs the more


def test_a_compute_type_without_its_own_fraction_takes_the_nearest_published_one():
    gb200 = load_accelerator("GB200")
    assert gb200.tflops_fraction("fp4") == gb200.achievable_tflops_fraction["fp4"]
    assert gb200.tflops_fraction("bf16") == gb200.achievable_tflops_fraction["fp8"]
    assert load_accelerator("L40S").tflops_fraction("bf16") is None


def test_every_shipped_fraction_cites_its_microbenchmark_and_url():
    table = accelerators().values()
    with_figures = [a for a in table if a.achievable_bandwidth_fraction or a.achievable_tflops_fraction]
    assert {"H100-SXM", "H200-SXM", "MI300X", "GB200", "RTX-PRO-6000"} <= {a.id for a in with_figures}
    for a in with_figures:
        assert "github.com" in a.sources["achievable"], a.id


def test_an_achievable_fraction_without_a_source_is_refused(tmp_path):
    path = tmp_path / "gpus.yaml"
    path.write_text(HOST.format(id="unsourced") + "  achievable_bandwidth_fraction: 0.8\n")
    with pytest.raises(CatalogError) as exc:
        load_accelerator("unsourced", str(path))
    msg = str(exc.value)
    assert str(path) in msg and "unsourced" in msg and "sources" in msg and "achievable" in msg
    path.write_text(
        HOST.format(id="sourced") + "  achievable_tflops_fraction: {fp32: 0.7}\n  sources: {achievable: 'my run'}\n"
    )
    assert load_accelerator("sourced", str(path)).tflops_fraction("fp32") == 0.7


def test_a_fraction_above_the_datasheet_peak_is_refused(tmp_path):
    path = tmp_path / "gpus.yaml"
    path.write_text(HOST.format(id="over") + "  achievable_tflops_fraction: {fp32: 1.4}\n  sources: {achievable: x}\n")
    with pytest.raises(CatalogError, match="achievable_tflops_fraction"):
        load_accelerator("over", str(path))


def test_gemm_scales_compare_like_with_like_compute_types():
    ref, gb200 = load_accelerator(REFERENCE_ACCELERATOR), load_accelerator("GB200")
    fp8_ratio = gb200.achievable_tflops_fraction["fp8"] / ref.achievable_tflops_fraction["fp8"]
    # the H100 has no FP4 figure (no FP4 units): GB200's FP4 GEMMs take the ratio at FP8, which both measured
    assert relative_achievable(gb200, "fp4")[1] == pytest.approx(fp8_ratio)
    # the A100 measured FP16 only, the H100 FP8 only: no common type, so no GEMM scaling (its bandwidth still scales)
    bw, gemm = relative_achievable(load_accelerator("A100-SXM-80GB"), "bf16")
    assert gemm == 1.0 and bw < 1.0
