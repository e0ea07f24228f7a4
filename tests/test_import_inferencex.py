"""scripts/import_inferencex.py: keeps the InferenceX points the profiles model as they ran (one row per metric,
the whole node's throughput, the image tag as version, lengths uniform from 0.8×) and counts every other point
under its reason."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tokenomy.calibrate.measurements import read_measurement_file, read_measurements

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_inferencex.py"
METRICS = {"mean_ttft": 0.2, "mean_tpot": 0.01, "output_tput_per_gpu": 100.0, "mean_itl": 0.3}


def _item(**changes: object) -> dict[str, Any]:
    item = {
        "hardware": "h200",
        "framework": "sglang",
        "model": "dsr1",
        "precision": "fp8",
        "spec_method": "none",
        "disagg": False,
        "is_multinode": False,
        "decode_tp": 8,
        "decode_ep": 1,
        "decode_dp_attention": False,
        "num_decode_gpu": 8,
        "isl": 1024,
        "osl": 8192,
        "conc": 16,
        "image": "lmsysorg/sglang:v0.5.9-cu130",
        "metrics": METRICS,
        "date": "2026-03-01",
        "run_url": "https://github.com/SemiAnalysisAI/InferenceX/actions/runs/1",
    }
    item.update(changes)
    return item


@pytest.fixture
def script(script_module: Callable[[str], ModuleType]) -> ModuleType:
    return script_module("import_inferencex")


def test_kept_points_become_one_row_per_metric_with_the_whole_nodes_throughput(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = tmp_path / "snap.json"
    items = [
        _item(),
        # TensorRT-LLM's attention-DP recipe on one node: the snapshot counts tp × ep GPUs, the node has tp
        _item(
            framework="trt",
            hardware="b200",
            precision="fp4",
            decode_ep=8,
            decode_dp_attention=True,
            num_decode_gpu=64,
            image="nvcr.io/nvidia/tensorrt-llm/release:1.3.0rc14",
        ),
        _item(hardware="mi355x", precision="fp4", image="lmsysorg/sglang:v0.5.12-rocm700-mi35x"),
        _item(hardware="b300", image="lmsysorg/sglang:v0.5.12-cu130", conc=32),
        _item(is_multinode=True),
        _item(spec_method="mtp"),
        _item(image=None),
        _item(framework="atom"),
        _item(hardware="mi250x"),
        _item(decode_ep=8),
        _item(decode_dp_attention=True),
        _item(framework="trt", decode_ep=8, decode_dp_attention=False),
        _item(framework="trt", decode_dp_attention=True),
        _item(
            framework="trt", decode_ep=8, decode_dp_attention=True, image="nvcr.io/nvidia/tensorrt-llm/release:0.18.0"
        ),
        _item(image="lmsysorg/sglang"),
        _item(date="2026-01-20"),
    ]
    snapshot.write_text(json.dumps(items))
    out = tmp_path / "rows.csv"
    script.main(snapshot, out)
    rows = read_measurements(out)
    assert len(rows) == 12 and {r.metric for r in rows} == {"mean_ttft", "mean_tpot", "output_throughput"}
    (amd,) = [r for r in rows if r.gpu == "MI355X" and r.metric == "mean_tpot"]
    assert (amd.precision, amd.kv_precision, amd.engine_version) == ("mxfp4", "fp8", "v0.5.12-rocm700-mi35x")
    (b300,) = [r for r in rows if r.gpu == "B300" and r.metric == "mean_tpot"]
    assert (b300.precision, b300.kv_precision, b300.load_value) == ("fp8-block", "fp8", 32)
    by_engine = {(r.engine, r.metric): r for r in rows if r.gpu not in ("MI355X", "B300")}
    trt = by_engine[("tensorrt-llm", "output_throughput")]
    assert (trt.num_gpus, trt.tp, trt.value, trt.engine_version) == (8, 8, 800.0, "1.3.0rc14")
    assert trt.gpu == "B200" and trt.precision == "nvfp4" and trt.model == "deepseek-v3" and trt.kv_precision == "fp8"
    # its launch scripts balance new requests over the attention-DP ranks; SGLang's set nothing the profiles model
    assert trt.settings == "attention_dp_balance=true" and {r.settings for r in rows if r.engine == "sglang"} == {""}
    sg = by_engine[("sglang", "mean_tpot")]
    assert (sg.engine_version, sg.gpu, sg.precision, sg.value) == ("v0.5.9-cu130", "H200-SXM", "fp8-block", 0.01)
    assert (sg.dataset, sg.load_kind, sg.load_value, sg.isl, sg.osl) == ("uniform:0.8", "concurrency", 16, 1024, 8192)
    assert "actions/runs/1" in sg.source and "lmsysorg/sglang:v0.5.9-cu130" in sg.source
    assert sg.kv_precision == "auto"  # SGLang on H200 ran its default KV type
    printed = capsys.readouterr().out
    assert "kept 4 (12 rows)" in printed
    counts = {
        "multi-node": 1,
        "speculative decoding (mtp)": 1,
        "no tagged engine image": 2,
        "run before 2026-01-21": 1,
        "engine 'atom'": 1,
        "accelerator 'mi250x'": 1,
        "SGLang with expert parallelism or DP attention": 2,
        "TensorRT-LLM before v0.19 or without attention DP": 3,
    }
    for reason, n in counts.items():
        assert f"dropped {n}: {reason}" in printed


def test_the_held_out_file_parses_whole_and_every_row_names_its_run_and_image() -> None:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "inferencex_deepseek_r1.csv"
    report = read_measurement_file(path)
    assert not report.broken and len(report.rows) == 195
    assert all("actions/runs/" in r.source and "image " in r.source for r in report.rows)
    assert {r.dataset for r in report.rows} == {"uniform:0.8"} and {r.load_kind for r in report.rows} == {"concurrency"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("{not json", "not JSON"),
        ('{"points": []}', "expected a JSON list of benchmark points, got a dict"),
    ],
)
def test_a_missing_malformed_or_wrong_shaped_snapshot_ends_with_a_message_naming_it(
    content: str | None, message: str, tmp_path: Path
) -> None:
    snapshot = tmp_path / "snap.json"
    if content is not None:
        snapshot.write_text(content)
    out = tmp_path / "rows.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), str(snapshot), str(out)], capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert str(snapshot) in done.stderr and message in done.stderr and not out.exists()


def test_a_point_missing_a_field_or_not_an_object_is_dropped_with_its_reason(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_tpot = _item()
    no_tpot["metrics"] = {k: v for k, v in METRICS.items() if k != "mean_tpot"}
    snapshot = tmp_path / "snap.json"
    snapshot.write_text(json.dumps([_item(), no_tpot, {k: v for k, v in _item().items() if k != "conc"}, 7]))
    script.main(snapshot, tmp_path / "rows.csv")
    printed = capsys.readouterr().out
    assert "kept 1 (3 rows)" in printed
    for reason in ("missing field metrics.mean_tpot", "missing field conc", "not a JSON object but int"):
        assert f"dropped 1: {reason}" in printed
