"""vLLM on AMD is AMD's ROCm build: `--engine vllm` on an AMD accelerator runs the vllm-rocm profile (one selection
rule, catalog.profiles.VENDOR_PROFILES), everywhere a name and a GPU become a profile; vllm on NVIDIA is unchanged."""

import json
import re

from typer.testing import CliRunner

from tokenomy.calibrate.fit import HOST_COSTS, fit_engine_profiles, fit_inputs, vendor_build
from tokenomy.calibrate.measurements import Measurement, read_measurements, shipped_measurement_files
from tokenomy.calibrate.predict import predict
from tokenomy.calibrate.validate import cross_validate
from tokenomy.catalog.models import DATA_DIR
from tokenomy.catalog.profiles import engine_profile, load_profile, profile_name_for, profile_notes
from tokenomy.cli.main import app
from tokenomy.costmodel.profile import FITTED
from tokenomy.costmodel.resolve import DeploymentSpec, resolve

runner = CliRunner()
ROCM_NOTE = re.compile(r"^vLLM on ROCm: profile vllm-rocm, fitted on (\d+) ROCm vLLM rows$")


def _plan(engine: str, gpu: str, profile_file: str | None = None) -> dict:
    args = ["plan", "--model", "llama-3.1-8b", "--gpu", gpu, "--precision", "bf16", "--engine", profile_file or engine]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_vllm_on_an_amd_gpu_resolves_to_vllm_rocm_and_on_nvidia_to_vllm():
    assert profile_name_for("vllm", "MI300X") == "vllm-rocm"
    assert profile_name_for("vLLM", "MI325X") == "vllm-rocm"
    assert profile_name_for("vllm", "H100-SXM") == "vllm"
    assert profile_name_for("tensorrt-llm", "MI300X") == "tensorrt-llm"  # only engines with a vendor build move
    assert profile_name_for("sglang", "MI325X") == "sglang-rocm" and profile_name_for("sglang", "B200") == "sglang"
    assert resolve(DeploymentSpec(model="llama-3.1-8b", gpu="MI300X", engine="vllm")).deployment.profile.name == (
        "vllm-rocm"
    )
    assert resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM", engine="vllm")).deployment.profile.name == (
        "vllm"
    )


def test_the_explicit_name_works_on_any_accelerator():
    for gpu in ("H100-SXM", "MI300X"):
        d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu=gpu, engine="vllm-rocm")).deployment
        assert d.profile == load_profile("vllm-rocm")


def test_plan_with_vllm_on_mi300x_says_it_runs_the_rocm_profile_and_how_many_rows_fitted_it():
    plan = _plan("vllm", "MI300X")
    assert plan["engine"] == "vllm-rocm"
    (match,) = [m for m in map(ROCM_NOTE.match, plan["notes"]) if m]
    rows = int(match.group(1))
    assert rows == load_profile("vllm-rocm").fit["rows"] > 0
    assert not any(ROCM_NOTE.match(n) for n in _plan("vllm", "H100-SXM")["notes"])


def test_vllm_rocm_is_fitted_on_the_rocm_rows_and_vllm_borrows_everything():
    rocm, vllm, trt = load_profile("vllm-rocm"), load_profile("vllm"), load_profile("tensorrt-llm")
    shipped = {r.id for r in read_measurements(DATA_DIR / "measurements_rocm_vllm.csv")}
    assert rocm.fit["row_ids"] and set(rocm.fit["row_ids"]) <= shipped
    assert set(rocm.borrowed) < set(vllm.borrowed)  # the ROCm rows identify some of the parameters
    assert vllm.fit == {} and all(getattr(vllm, k) == getattr(trt, k) for k in vllm.borrowed)
    notes = profile_notes(rocm)
    assert any(ROCM_NOTE.match(n) for n in notes) and any("borrows" in n for n in notes)


def test_plan_with_vllm_on_h100_is_the_tensorrt_llm_fit_with_vllms_own_settings(tmp_path):
    # Before the ROCm fit, vllm was the tensorrt-llm fit's efficiencies with vLLM's documented server defaults
    # (HEAD profiles/vllm.json): 1024 sequences, 8192 batched tokens, 16-token blocks, 90% of memory, 1.5 GB runtime.
    reference = {
        **load_profile("tensorrt-llm").to_dict(),
        "name": "vllm-reference",
        "max_num_seqs": 1024,
        "max_num_batched_tokens": 8192,
        "kv_block_tokens": 16,
        "gpu_memory_utilization": 0.9,
        "kv_fraction_of_free": False,
        "runtime_overhead_gb": 1.5,
        "kv_fp8_with_fp8_weights": False,
        "offline_limits_rule": "",
        # TensorRT-LLM's own executor (not a fitted value, so not borrowed): vLLM pays the fitted seq_overhead_s
        "python_executor_seq_overhead_s": 0.0,
        "python_executor_since": "",
        "moe_attention_dp": False,
    }
    path = tmp_path / "vllm-reference.json"
    path.write_text(json.dumps(reference))
    keys = ("ttft_s", "itl_s", "single_stream_tokens_per_s", "max_batch", "max_output_tokens_per_s", "usd_per_mtok")
    on_h100, expected = _plan("vllm", "H100-SXM"), _plan("", "H100-SXM", str(path))
    assert {k: on_h100[k] for k in keys} == {k: expected[k] for k in keys}
    # the same reference does not describe vllm on an MI300X: the rule swaps the profile there
    assert _plan("vllm", "MI300X")["itl_s"] != _plan("", "MI300X", str(path))["itl_s"]


def _row(id_: str, gpu: str, engine: str = "vllm") -> Measurement:
    return Measurement(
        id=id_, source="test", engine=engine, engine_version="v0", model="llama-3.1-70b", gpu=gpu, num_gpus=8, tp=8,
        pp=1, precision="fp8", kv_precision="fp8", isl=1024, osl=1024, dataset="fixed", load_kind="offline",
        load_value=None, metric="output_throughput", value=5000.0, unit="output tokens/s, whole system", scope="core",
        line=1,
    )  # fmt: skip


def test_validate_predicts_a_vllm_row_on_mi300x_with_vllm_rocm():
    row = _row("a", "MI300X")
    assert predict(row).value == predict(row, load_profile("vllm-rocm")).value != predict(row, load_profile("vllm"))


def test_cross_validation_predicts_rocm_rows_with_each_folds_vllm_rocm_and_fits_it_without_the_held_out_rows():
    rows = [_row("amd", "MI300X"), _row("nv", "H100-SXM"), _row("trt", "H100-SXM", "tensorrt-llm")]
    assert fit_inputs(rows) == {"amd", "trt"}  # the ROCm vLLM row fits vllm-rocm; the NVIDIA vLLM row fits nothing
    seen: list[set[str]] = []

    def fitter(train: list[Measurement], bases: dict) -> dict:
        seen.append({r.id for r in train})
        marker = 0.5 if "amd" in seen[-1] else 0.4  # a fold's vllm-rocm, told apart by what it was fitted on
        return {"vllm": engine_profile("vllm", "H100-SXM"), "vllm-rocm": load_profile("vllm-rocm").with_values(
            bw_efficiency=marker), "tensorrt-llm": load_profile("tensorrt-llm")}  # fmt: skip

    cv = cross_validate(rows, {}, groupings={"accelerator_family": lambda r: r.gpu}, fitter=fitter)
    held = {row.id: pred for _, row, pred in cv.held_out["accelerator_family"]}
    without_amd = load_profile("vllm-rocm").with_values(bw_efficiency=0.4)
    assert held["amd"] == predict(rows[0], without_amd).value
    assert held["nv"] == predict(rows[1], load_profile("vllm")).value


def test_calibrate_engine_vllm_rocm_fits_the_vllm_rows_run_on_amd(tmp_path):
    out = tmp_path / "vllm-rocm.json"
    rocm = DATA_DIR / "measurements_rocm_vllm.csv"
    result = runner.invoke(app, ["calibrate", str(rocm), "--engine", "vllm-rocm", "--output", str(out)])
    assert result.exit_code == 0, result.output
    n_rows = len(read_measurements(rocm))
    assert f"on {n_rows} rows" in " ".join(result.output.split())  # the rows say engine vllm, gpu MI300X
    assert json.loads(out.read_text())["name"] == "vllm-rocm"


def test_sglang_on_amd_runs_rocm_device_efficiencies_with_sglangs_host_costs_and_settings():
    build, rocm, sglang = load_profile("sglang-rocm"), load_profile("vllm-rocm"), load_profile("sglang")
    assert build.fit == {} and build.borrows_from == "vllm-rocm"
    assert set(build.borrowed) == set(FITTED) - set(HOST_COSTS)
    assert all(getattr(build, k) == getattr(rocm, k) for k in build.borrowed)
    assert all(getattr(build, k) == getattr(sglang, k) for k in HOST_COSTS)
    settings = ("gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens", "kv_block_tokens", "kv_admission")
    assert all(getattr(build, k) == getattr(sglang, k) for k in settings)
    assert build.bw_efficiency < sglang.bw_efficiency  # the ROCm rows fit a lower rate than TensorRT-LLM's
    notes = _plan("sglang", "MI300X")["notes"]
    rocm_note = (
        "SGLang on ROCm: profile sglang-rocm, device efficiencies from the vllm-rocm fit, host costs from sglang"
    )
    assert f"{rocm_note} (no rows of its own)" in notes
    assert any("borrows" in n and "vllm-rocm" in n for n in notes)


def test_the_fit_builds_sglang_rocm_from_the_fitted_vllm_rocm_and_sglang():
    everything = [r for path in shipped_measurement_files() for r in read_measurements(path)]
    trt = [r for r in everything if r.engine == "tensorrt-llm" and r.load_kind == "offline"][:12]
    rocm = [r for r in everything if r.gpu == "MI300X" and r.load_kind == "offline"][:12]
    rows = [*trt, *rocm, *(r for r in everything if r.engine == "sglang")]
    bases = {n: load_profile(n) for n in ("tensorrt-llm", "vllm-rocm", "sglang", "sglang-rocm")}
    marked = {**bases, "sglang-rocm": bases["sglang-rocm"].with_values(bw_efficiency=0.123, step_overhead_s=9.0)}
    fitted = fit_engine_profiles(rows, marked)
    build = fitted["sglang-rocm"]
    assert build.bw_efficiency == fitted["vllm-rocm"].bw_efficiency != 0.123  # the fit's value, not the file's
    assert build.step_overhead_s == fitted["sglang"].step_overhead_s != 9.0
    assert build.max_num_seqs == bases["sglang-rocm"].max_num_seqs


def test_the_shipped_sglang_rocm_is_built_from_the_shipped_vllm_rocm_and_sglang():
    shipped = load_profile("sglang-rocm")
    assert shipped == vendor_build(shipped, load_profile("sglang"), load_profile("vllm-rocm"))
