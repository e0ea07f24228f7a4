"""Host cost per sequence: the Python executor's measured cost where the engine version runs one, the fitted C++
executor's before, and split over attention-DP ranks for MoE models (EngineProfile, costmodel.perf.StepCost)."""

from __future__ import annotations

import dataclasses

import pytest

import tokenomy.costmodel.deployment as deployment
from tests.calibrate.measurement_rows import HEADER
from tokenomy.calibrate.measurements import read_measurement_files
from tokenomy.calibrate.predict import predict
from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import decode_step_seconds, steady_state
from tokenomy.costmodel.profile import EngineProfile
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.watch.refit import OverheadRefit, fitted_profile

PYTHON = EngineProfile(
    seq_overhead_s=6e-6, python_executor_seq_overhead_s=30e-6, python_executor_since="v0.19", moe_attention_dp=True
)


@pytest.mark.parametrize("version", ["v0.14", "v0.17", "0.18.2", "v0.18"])
def test_versions_before_the_python_executor_pay_the_cpp_executor_cost(version: str) -> None:
    ran = PYTHON.for_engine_version(version)
    assert ran.sequence_cost_s() == 6e-6 and not ran.moe_attention_dp


@pytest.mark.parametrize("version", ["v0.19", "0.19.0rc1", "v1.0", "1.2.0", "", "nightly"])
def test_later_unstated_or_unreadable_versions_run_as_the_profile_says(version: str) -> None:
    assert PYTHON.for_engine_version(version) == PYTHON
    assert PYTHON.sequence_cost_s() == 30e-6


@pytest.mark.parametrize("version", ["nim-1.3.0", "nim-1.8.0", "NIM-1.14.1", " nim-1.8.0 "])
def test_a_nim_release_before_1_15_ran_tensorrt_llms_cpp_executor(version: str) -> None:
    """A bundle's release is read against its own first Python-executor release, not the engine's (NIM 1.15)."""
    ran = PYTHON.for_engine_version(version)
    assert ran.sequence_cost_s() == 6e-6 and not ran.moe_attention_dp


@pytest.mark.parametrize("version", ["nim-1.15.0", "nim-2.0.1"])
def test_a_nim_release_from_1_15_runs_the_python_executor(version: str) -> None:
    assert PYTHON.for_engine_version(version) == PYTHON


@pytest.mark.parametrize("version", ["nim-", "nim-latest", " NIM-x.y "])
def test_an_unreadable_bundle_release_runs_as_the_profile_says(version: str) -> None:
    """A bundle prefix without a readable release is no error: like an unreadable engine version, the profile."""
    assert PYTHON.for_engine_version(version) == PYTHON


def test_attention_dp_splits_the_host_cost_over_the_ranks_of_a_moe_model_only() -> None:
    """Each attention-DP rank's executor handles its own sequences: a MoE model on 8 GPUs under the recipe pays 1/8
    of the per-sequence cost per step; on one GPU, a dense model on 8 (tensor parallel: every rank, every sequence),
    or without the recipe, all of it."""
    no_dp = dataclasses.replace(PYTHON, moe_attention_dp=False)
    seq_s = {
        (model, tp, profile is PYTHON): _dep(model, profile, tp).step_cost().seq_s
        for model in ("qwen3-30b-a3b", "llama-3.3-70b")
        for tp in (1, 8)
        for profile in (PYTHON, no_dp)
    }
    assert seq_s[("qwen3-30b-a3b", 8, True)] == pytest.approx(30e-6 / 8)
    assert seq_s[("qwen3-30b-a3b", 1, True)] == pytest.approx(30e-6)
    assert seq_s[("llama-3.3-70b", 8, True)] == pytest.approx(30e-6)
    assert seq_s[("qwen3-30b-a3b", 8, False)] == pytest.approx(30e-6)


def _dep(model: str, profile: EngineProfile, tp: int = 1) -> Deployment:
    return Deployment(load_model(model), load_accelerator("B200"), tp, 1, "nvfp4", "auto", profile)


def test_a_decode_step_pays_the_host_cost_of_every_sequence_it_carries(monkeypatch) -> None:  # noqa: ANN001
    """1024 sequences cost 1024 × (Python − C++ executor cost) more per step on the Python executor."""
    seqs, ctx = 1024, 600
    python_s = float(decode_step_seconds(_dep("qwen3-30b-a3b", PYTHON), seqs, ctx))
    cpp_s = float(decode_step_seconds(_dep("qwen3-30b-a3b", PYTHON.for_engine_version("v0.17")), seqs, ctx))
    assert python_s - cpp_s == pytest.approx(seqs * (30e-6 - 6e-6), rel=1e-9)
    # on 4 GPUs the C++ executor's MoE is tensor-parallel, whose sliced experts run at their own measured kernel
    # efficiency (Deployment.moe_tp), which reads 1/4 of the attention weights where attention DP reads them whole,
    # and which all-reduces around every layer where attention DP gathers and scatters around the MoE layers: with
    # the table switched off, free memory reads and free collectives only the host cost differs
    monkeypatch.setattr(deployment, "moe_gemm_timing", lambda *args: (1.0, 0))
    monkeypatch.setattr(deployment, "moe_nearest_timing", lambda *args: None)
    free = dict(allreduce_latency_s=0.0, comm_efficiency=1e12, bw_efficiency=1e12)
    split = _dep("qwen3-30b-a3b", PYTHON.with_values(**free), tp=4)
    cpp_tp4 = _dep("qwen3-30b-a3b", PYTHON.for_engine_version("v0.17").with_values(**free), tp=4)
    split_s = float(decode_step_seconds(split, seqs, ctx))
    cpp_tp4_s = float(decode_step_seconds(cpp_tp4, seqs, ctx))
    assert split_s - cpp_tp4_s == pytest.approx(seqs * (30e-6 / 4 - 6e-6), rel=1e-6)


def test_a_measurement_row_is_predicted_with_the_executor_its_engine_version_ran(tmp_path) -> None:  # noqa: ANN001
    """Same deployment and shape: the v1.0 (PyTorch backend) row is predicted slower than the v0.17 one, whose C++
    executor pays the fitted per-sequence cost; a small-active MoE at 128/128 is host-bound."""
    base = "tensorrt-llm,{v},qwen3-30b-a3b,B200,1,1,1,FP4,FP8,128,128,fixed,offline,,output_throughput,30000,tok/s,core"
    path = tmp_path / "rows.csv"
    path.write_text(f"{HEADER}\nold,src,{base.format(v='v0.17')}\nnew,src,{base.format(v='v1.0')}\n")
    old, new = read_measurement_files([path]).rows
    profile = load_profile("tensorrt-llm")
    assert profile.python_executor_seq_overhead_s > profile.seq_overhead_s  # the shipped profile's two executors
    assert predict(new).value < 0.9 * predict(old).value


def test_the_live_refit_moves_the_host_cost_the_profile_actually_pays() -> None:
    """watch's refit of a Python-executor profile fits the per-sequence cost the steps pay, not a shadowed field."""
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM", engine="tensorrt-llm")).deployment
    assert d.profile.python_executor_seq_overhead_s > 0
    refit = OverheadRefit(d, window=10)
    for batch in (1, 8, 16, 32, 64, 96, 128):
        truth = dataclasses.replace(d, profile=d.profile.with_sequence_cost(80e-6))
        refit.add(float(steady_state(truth, 512, 128, batch).tpot_s), batch, 512, 128)
    fit = refit.fit()
    assert fit.fitted == ("step_overhead_s", "seq_overhead_s")
    assert fit.seq_overhead_s == pytest.approx(80e-6, rel=1e-3)
    assert fit.prior_seq_overhead_s == d.profile.python_executor_seq_overhead_s
    assert fitted_profile(d.profile, fit, "test").sequence_cost_s() == pytest.approx(80e-6, rel=1e-3)


def test_a_slower_host_cpu_scales_the_python_executors_cost_only() -> None:
    """GB200's Grace host runs PyTorch host work 2.75× as long as a DGX H100's Xeon (accelerators.yaml, sourced):
    the Python executor's per-sequence cost scales with it, the C++ executor's fitted cost does not."""
    gb200 = load_accelerator("GB200")
    assert gb200.host_overhead_factor > 2 and "2053" in gb200.sources["host"]
    assert load_accelerator("B200").host_overhead_factor == 1.0
    assert PYTHON.host_seq_overhead_s(1, gb200.host_overhead_factor) == pytest.approx(30e-6 * 2.75)
    cpp = PYTHON.for_engine_version("v0.17")
    assert cpp.host_seq_overhead_s(1, gb200.host_overhead_factor) == 6e-6
    seqs, ctx = 1024, 600
    on = {
        g: Deployment(load_model("qwen3-30b-a3b"), load_accelerator(g), 1, 1, "nvfp4", "auto", PYTHON)
        for g in ("B200", "GB200")
    }
    bare = {
        g: dataclasses.replace(d, profile=d.profile.with_values(python_executor_seq_overhead_s=0.0, seq_overhead_s=0.0))
        for g, d in on.items()
    }
    host_s = {
        g: float(decode_step_seconds(on[g], seqs, ctx)) - float(decode_step_seconds(bare[g], seqs, ctx)) for g in on
    }
    assert host_s["GB200"] == pytest.approx(2.75 * host_s["B200"], rel=1e-9)


def test_a_host_factor_without_a_source_is_refused(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "gpus.yaml"
    entry = "- id: {id}\n  memory_gb: 24\n  memory_bandwidth_gb_s: 20\n  dense_tflops: {{fp32: 0.2}}\n"
    entry += "  host_overhead_factor: 2\n"
    path.write_text(entry.format(id="unsourced"))
    with pytest.raises(CatalogError) as exc:
        load_accelerator("unsourced", str(path))
    assert "host_overhead_factor" in str(exc.value) and "sources.host" in str(exc.value)
    path.write_text(entry.format(id="sourced") + "  sources: {host: 'my measurement'}\n")
    assert load_accelerator("sourced", str(path)).host_overhead_factor == 2.0


def test_the_live_refit_on_a_grace_host_starts_from_the_cost_that_host_pays() -> None:
    """On GB200 (Grace host) the Python executor costs host_overhead_factor × the reference's per sequence: a window
    of steady intervals from an engine that behaves exactly as profiled fits back the profile's own step overhead."""
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="GB200", engine="tensorrt-llm")).deployment
    factor = d.gpu.host_overhead_factor
    refit = OverheadRefit(d, window=3)
    for _ in range(3):
        refit.add(float(steady_state(d, 512, 128, 32).tpot_s), 32, 512, 128)
    fit = refit.fit()
    assert fit.fitted == ("step_overhead_s",)
    assert fit.prior_seq_overhead_s == pytest.approx(d.profile.python_executor_seq_overhead_s * factor)
    assert fit.step_overhead_s == pytest.approx(d.profile.step_overhead_s, rel=1e-6)


def test_a_non_positive_host_factor_is_refused_naming_the_file_entry_and_field(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "gpus.yaml"
    path.write_text(
        "- id: zero\n  memory_gb: 24\n  memory_bandwidth_gb_s: 20\n  dense_tflops: {fp32: 0.2}\n"
        "  host_overhead_factor: 0\n  sources: {host: 'my measurement'}\n"
    )
    with pytest.raises(CatalogError) as exc:
        load_accelerator("zero", str(path))
    msg = str(exc.value)
    assert str(path) in msg and "'zero'" in msg and "host_overhead_factor" in msg and "Traceback" not in msg
