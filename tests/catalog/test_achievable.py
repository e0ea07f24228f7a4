"""Achievable fractions of datasheet peak per accelerator: sourced, refused without a source, and used by the step
time (an MI300X step runs at the bandwidth and GEMM rate its microbenchmarks reach, not its datasheet's)."""

from __future__ import annotations

import csv
import re

import pytest

from tokenomy.catalog.accelerators import (
    KERNEL_RATES_FILE,
    MOE_KERNEL_RATES,
    REFERENCE_ACCELERATOR,
    accelerators,
    kernel_rates,
    load_accelerator,
    relative_achievable,
)
from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.models import DATA_DIR, load_model
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
    assert relative_achievable(load_accelerator("L4"), "fp8") == (1.0, 1.0)
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


def test_gemm_scales_compare_like_with_like_compute_types(tmp_path):
    # entries without kernel rates (a user's own ids), so their microbenchmark fractions decide
    path = tmp_path / "gpus.yaml"
    fp4_part = HOST.format(id="fp4-part") + "  achievable_tflops_fraction: {fp8: 0.6, fp4: 0.75}\n"
    fp16_part = HOST.format(id="fp16-part") + "  achievable_tflops_fraction: {fp16: 0.8}\n"
    fp16_part += "  achievable_bandwidth_fraction: 0.85\n"
    path.write_text(fp4_part + "  sources: {achievable: x}\n" + fp16_part + "  sources: {achievable: x}\n")
    ref = load_accelerator(REFERENCE_ACCELERATOR)
    # the H100 has no FP4 figure (no FP4 units): FP4 GEMMs take the ratio at FP8, which both measured
    fp8_ratio = 0.6 / ref.achievable_tflops_fraction["fp8"]
    assert relative_achievable(load_accelerator("fp4-part", str(path)), "fp4")[1] == pytest.approx(fp8_ratio)
    # FP16 measured here, FP8 only on the H100: no common type, so no GEMM scaling (its bandwidth still scales)
    bw, gemm = relative_achievable(load_accelerator("fp16-part", str(path)), "bf16")
    assert gemm == 1.0 and bw == pytest.approx(0.85 / ref.achievable_bandwidth_fraction)


# --- kernel rates: the engine's own kernels as NVIDIA timed them (catalog/data/kernel_rates.csv) ------------------


def _csv_rows() -> list[dict]:
    with open(DATA_DIR / KERNEL_RATES_FILE, newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_kernel_rate_names_a_catalogued_accelerator_its_table_and_date_and_stays_under_the_datasheet():
    rows, table = _csv_rows(), accelerators()
    assert {"H100-SXM", "H200-SXM", "B200", "GB200", "L40S", "RTX-PRO-6000"} <= {r["accelerator"] for r in rows}
    for r in rows:
        gpu = table[r["accelerator"]]
        assert "AIConfigurator" in r["source"] and r["table"].endswith(".parquet"), r
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["read_on"]), r
        value = float(r["value"])
        if r["quantity"] == "gemv_bandwidth":
            assert 0.5 < value / gpu.memory_bandwidth_gb_s <= 1.0, r  # under the datasheet, past the L2 cache
        elif r["quantity"] == "gemm_rate":
            assert 0.3 < value / gpu.dense_tflops[r["compute"]] <= 1.0, r
        elif r["quantity"] == "moe_gemm_efficiency":  # a fraction of the dense rate, for a named expert shape
            shape = dict(part.split("=", 1) for part in r["shape"].split())
            assert {"hidden", "inter", "topk", "experts", "tokens"} <= set(shape) and 0 < value <= 1.0, r
            assert "/moe/" in r["table"] and MOE_KERNEL_RATES.get(r["compute"], r["compute"]) in gpu.dense_tflops, r
        else:
            assert r["quantity"] == "allreduce_latency" and int(r["tp"]) >= 2 and 0 < value < 100, r


def test_kernel_rates_decide_where_the_accelerator_and_the_reference_both_have_them():
    rates, ref, h200 = kernel_rates(), load_accelerator(REFERENCE_ACCELERATOR), load_accelerator("H200-SXM")
    kernel_bw = (rates["H200-SXM"].gemv_bandwidth_gb_s / h200.memory_bandwidth_gb_s) / (
        rates[REFERENCE_ACCELERATOR].gemv_bandwidth_gb_s / ref.memory_bandwidth_gb_s
    )
    micro_bw = h200.achievable_bandwidth_fraction / ref.achievable_bandwidth_fraction
    bw, _ = relative_achievable(h200, "fp8")
    assert bw == pytest.approx(kernel_bw) and abs(kernel_bw - micro_bw) > 0.01  # the two harnesses differ
    # the MI300X has no kernel rates: its microbenchmarks still decide
    mi = load_accelerator("MI300X")
    assert relative_achievable(mi, "fp8")[0] == pytest.approx(
        mi.achievable_bandwidth_fraction / ref.achievable_bandwidth_fraction
    )


def test_a_b200_fp4_gemm_scales_by_its_fp4_kernel_fraction_over_the_h100_fp8_one():
    rates, ref, b200 = kernel_rates(), load_accelerator(REFERENCE_ACCELERATOR), load_accelerator("B200")
    fp4_share = rates["B200"].gemm_tflops["fp4"] / b200.dense_tflops["fp4"]
    h100_fp8_share = rates[REFERENCE_ACCELERATOR].gemm_tflops["fp8"] / ref.dense_tflops["fp8"]
    assert relative_achievable(b200, "fp4")[1] == pytest.approx(fp4_share / h100_fp8_share)
    # NVFP4 GEMMs reach a smaller share of their datasheet rate than FP8 ones do: an FP4 prefill is the slower for it
    assert relative_achievable(b200, "fp4")[1] < relative_achievable(b200, "fp8")[1]
    model = load_model("llama-3.3-70b")
    fp4 = Deployment(model, b200, precision="nvfp4", profile=load_profile("tensorrt-llm"))
    flat = Deployment(
        model,
        b200.model_copy(update={"id": "B200-unmeasured"}),
        precision="nvfp4",
        profile=load_profile("tensorrt-llm"),
    )
    assert fp4.numbers().matmul_flops_per_s < flat.numbers().matmul_flops_per_s


def test_b300_takes_b200s_kernel_rates_scaled_by_their_same_harness_gemm_ratio():
    b200, b300 = load_accelerator("B200"), load_accelerator("B300")
    for compute in ("fp8", "fp4"):
        bw200, gemm200 = relative_achievable(b200, compute)
        bw300, gemm300 = relative_achievable(b300, compute)
        ratio = b300.achievable_tflops_fraction[compute] / b200.achievable_tflops_fraction[compute]
        assert bw300 == bw200 and gemm300 == pytest.approx(gemm200 * ratio)
        # achieved rate, B300 over B200: Azure's GB300 / GB200 GEMM runs (1.14 FP8, 1.13 FP4), not the datasheet's 1.56
        achieved = (b300.dense_tflops[compute] * gemm300) / (b200.dense_tflops[compute] * gemm200)
        assert 1.0 < achieved < 1.25
