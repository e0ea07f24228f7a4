"""`validate` with no FILE reads every shipped measurement file (measurements.csv and each measurements_*.csv, the
ROCm vLLM rows among them), and vLLM's own offline rows fit its profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.calibrate.measurement_rows import HEADER, changed_row
from tokenomy.calibrate.fit import OWN_OFFLINE_FITS, fit_inputs
from tokenomy.calibrate.measurements import read_measurement_files, shipped_measurement_files
from tokenomy.calibrate.predict import predict
from tokenomy.catalog.profiles import load_profile
from tokenomy.cli.main import app
from tokenomy.costmodel.profile import FITTED

NVIDIA = (
    "n1,src,tensorrt-llm,v1,llama-3.1-8b,H100-SXM,1,1,1,fp8,,128,128,fixed,offline,,output_throughput,28000,tok/s,core"
)
AMD = changed_row(NVIDIA, id="amd1", engine="vllm", gpu="MI300X", value="9000")


def test_the_shipped_files_include_the_rocm_vllm_rows():
    files = shipped_measurement_files()
    assert files[0].name == "measurements.csv"
    assert "measurements_rocm_vllm.csv" in {p.name for p in files}
    read = read_measurement_files(files)
    assert not read.broken
    amd = [r for r in read.rows if r.gpu == "MI300X"]
    assert len(amd) >= 100 and {r.engine for r in amd} == {"vllm"}


def test_validate_without_a_file_reads_every_shipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "measurements.csv").write_text(f"{HEADER}\n{NVIDIA}\n")
    (tmp_path / "measurements_rocm.csv").write_text(f"{HEADER}\n{AMD}\n")
    (tmp_path / "other.csv").write_text(f"{HEADER}\n{changed_row(NVIDIA, id='not-shipped')}\n")
    monkeypatch.setattr(
        "tokenomy.cli.validating.shipped_measurement_files", lambda: shipped_measurement_files(tmp_path)
    )
    result = CliRunner().invoke(app, ["validate", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert {r["id"] for r in rows} == {"n1", "amd1"}  # both shipped files, nothing else in the folder
    assert {(r["id"], r["file"], r["line"]) for r in rows} == {
        ("n1", "measurements.csv", 2),
        ("amd1", "measurements_rocm.csv", 2),
    }


def test_a_broken_row_in_any_shipped_file_is_named_with_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "measurements.csv").write_text(f"{HEADER}\n{NVIDIA}\n")
    (tmp_path / "measurements_rocm.csv").write_text(f"{HEADER}\n{changed_row(AMD, value='fast')}\n")
    monkeypatch.setattr(
        "tokenomy.cli.validating.shipped_measurement_files", lambda: shipped_measurement_files(tmp_path)
    )
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0
    assert "measurements_rocm.csv" in result.output and "value" in result.output


def test_sglang_rows_on_amd_fit_nothing_and_on_nvidia_fit_sglangs_step_overhead():
    nvidia = changed_row(
        NVIDIA, id="sg1", engine="sglang", load_kind="rate", load_value="4", metric="mean_itl", value="12", unit="ms"
    )
    amd = changed_row(nvidia, id="sg-amd", gpu="MI300X")  # SGLang's ROCm build: sglang-rocm, which no row fits
    rows = read_measurement_files([_write(f"{HEADER}\n{NVIDIA}\n{nvidia}\n{amd}\n")]).rows
    assert fit_inputs(rows) == frozenset({"n1", "sg1"})


def test_rocm_vllm_offline_rows_are_fit_inputs_and_its_online_rows_are_not():
    online = changed_row(AMD, id="amd2", load_kind="rate", load_value="4", metric="mean_itl", value="12", unit="ms")
    rows = read_measurement_files([_write(f"{HEADER}\n{NVIDIA}\n{AMD}\n{online}\n")]).rows
    assert "vllm-rocm" in OWN_OFFLINE_FITS  # vllm on an AMD GPU runs (and fits) vllm-rocm
    assert fit_inputs(rows) == frozenset({"n1", "amd1"})


def test_the_shipped_vllm_rocm_profile_is_fitted_on_its_own_rows_and_reports_what_they_identify():
    vllm = load_profile("vllm-rocm")
    amd_ids = {r.id for r in read_measurement_files(shipped_measurement_files()).rows if r.gpu == "MI300X"}
    assert set(vllm.fit["row_ids"]) <= amd_ids and len(vllm.fit["row_ids"]) >= 100
    params = vllm.fit["parameters"]
    assert set(params) == set(FITTED)
    assert all(p["status"].startswith(("fitted", "prior kept")) for p in params.values())
    fitted = {k for k, p in params.items() if p["status"].startswith("fitted")}
    assert fitted and not fitted & set(vllm.borrowed)  # what its rows identify is no longer borrowed


def _write(text: str) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "rows.csv"
    path.write_text(text)
    return path


def _ship_from(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make `validate` with no FILE read the shipped-file pattern in `folder` instead of catalog/data."""
    monkeypatch.setattr("tokenomy.cli.validating.shipped_measurement_files", lambda: shipped_measurement_files(folder))


def test_the_vllm_nvidia_batch_rows_are_shipped_and_predicted_but_fit_nothing():
    """Argonne's vLLM 0.5-0.6 fixed-batch rows (measurements_vllm_argonne.csv) are validated out of sample: no profile
    is fitted on them (they ran the V0 engine; the vllm profile describes V1 and borrows the tensorrt-llm fit)."""
    rows = read_measurement_files(shipped_measurement_files()).rows
    argonne = [r for r in rows if r.id.startswith("vn")]
    assert len(argonne) >= 400 and {(r.engine, r.load_kind) for r in argonne} == {("vllm", "batch")}
    assert not {r.id for r in argonne} & fit_inputs(rows)
    assert load_profile("vllm").borrows_from == "tensorrt-llm"


def test_the_nim_concurrency_rows_are_shipped_and_predicted_but_fit_nothing():
    """NVIDIA NIM's published AIPerf tables (measurements_nim.csv: TTFT, ITL and output throughput at fixed
    concurrency, on H100 and L40S) run TensorRT-LLM inside a container whose engine settings are not published: they
    go through the simulator with the tensorrt-llm profile, every row predicted, and fit no profile."""
    rows = read_measurement_files(shipped_measurement_files()).rows
    nim = [r for r in rows if r.id.startswith("nim")]
    assert len(nim) >= 300
    assert {(r.engine, r.load_kind) for r in nim} == {("tensorrt-llm", "concurrency")}
    assert {r.metric for r in nim} == {"mean_ttft", "mean_itl", "output_throughput"}
    assert {r.gpu for r in nim} == {"H100-SXM", "L40S"} and all(r.engine_version.startswith("nim-1.") for r in nim)
    assert not {r.id for r in nim} & fit_inputs(rows)
    assert {r.id for r in rows if r.engine == "tensorrt-llm" and not r.id.startswith("nim")} <= fit_inputs(rows)
    light = [r for r in nim if r.load_value <= 5]  # every table's first two concurrency levels (short simulations)
    assert len(light) >= 90 and all(predict(r).value for r in light)


def test_tensorrt_llms_later_tables_are_shipped_fitted_and_every_row_predicted():
    """TensorRT-LLM's developer-guide throughput tables after v1.0 (measurements_trtllm_devguide.csv: gpt-oss,
    DeepSeek-R1, Llama 3.3, Llama 4 Maverick and Qwen3 MoE on H100/H200/B200/GB200/RTX PRO 6000, per-GPU figures
    times the GPUs) are offline trtllm-bench rows like the v1.0 ones: the tensorrt-llm profile fits on them, and the
    cost model predicts every one (MXFP4 experts, NVFP4, MLA, attention-DP replicas)."""
    rows = read_measurement_files(shipped_measurement_files()).rows
    later = [r for r in rows if r.id.startswith("trt")]
    assert len(later) == 150
    assert {r.engine_version for r in later} == {"post-v1.0"} and {r.load_kind for r in later} == {"offline"}
    assert {"gpt-oss-120b", "gpt-oss-20b", "deepseek-v3"} <= {r.model for r in later}
    assert {r.id for r in later} <= fit_inputs(rows)
    assert all(predict(r).value for r in later)
