"""scripts/import_gpustack.py: keeps the results of GPUStack's performance-lab pages that an engine profile runs as
served (one row per metric; a burst of all requests at once or a fixed concurrency; ShareGPT or fixed random
lengths) and counts every other result under its reason."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tokenomy.calibrate.measurements import read_measurement_file, read_measurements

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_gpustack.py"


def _result(requests: int, inputs: int, outputs: int, label: str = "", concurrency: int | None = None) -> str:
    lines = [f"    # {label}"] if label else []
    lines += ["    ============ Serving Benchmark Result ============", f"    Successful requests:  {requests}"]
    if concurrency:
        lines.append(f"    Maximum request concurrency:  {concurrency}")
    lines += [
        f"    Total input tokens:  {inputs}",
        f"    Total generated tokens:  {outputs}",
        "    Output token throughput (tok/s):  1000.5",
        "    Mean TTFT (ms):  250.0",
        "    Mean TPOT (ms):  20.0",
        "    Mean ITL (ms):  19.0",
        "    ==================================================",
    ]
    return "\n".join(lines)


def _section(command: str, *results: str) -> str:
    return "\n".join(
        [
            '??? info "Serving script"',
            "    ```bash",
            f"    {command}",
            "    ```",
            '??? info "Benchmark result"',
            "    ```",
            *results,
            "    ```",
            "",
        ]
    )


def _page(hardware: str, *sections: str, model: str = "Qwen3-14B") -> str:
    head = [
        "# Optimizing a model",
        "### Model",
        "",
        model,
        "### Hardware",
        "",
        hardware,
        "### Engine Version",
        "- vLLM: v0.11.0",
        "- SGLang: v0.5.3",
        "## Experiment Results",
        "- TensorRT-LLM: 2659 tok/s",  # a summary bullet, not a version
        "### 1. Choosing the Inference Engine",
    ]
    return "\n".join(head + list(sections))


SHAREGPT = _result(1000, 215312, 195544)


@pytest.fixture
def script(script_module: Callable[[str], ModuleType]) -> ModuleType:
    return script_module("import_gpustack")


def test_kept_results_become_one_row_per_metric_and_every_other_is_counted_under_its_reason(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pages = tmp_path / "performance-lab"
    (pages / "qwen3-14b").mkdir(parents=True)
    (pages / "qwen3-14b" / "h100.md").write_text(
        _page(
            "2 × NVIDIA H100 SXM GPUs on a single node.",
            _section("vllm serve Qwen/Qwen3-14B --max-model-len 32768", SHAREGPT),
            _section(
                "vllm serve Qwen/Qwen3-14B-FP8 -tp 2 --kv-cache-dtype fp8",
                _result(500, 1999249, 100000, "random 4K input"),
                _result(500, 1999249, 52309, "random 4K input"),  # outputs ended at an end-of-sequence token
                _result(100, 23260, 22061, "bs=4", concurrency=4),
                _result(100, 23260, 22061, "bs=8", concurrency=4),
                _result(500, 1999249, 100000, "--attention-backend=triton"),
            ),
            _section("python3 -m sglang.launch_server --model-path Qwen/Qwen3-14B --tp-size 2", SHAREGPT),
            _section("vllm serve Qwen/Qwen3-14B --async-scheduling", SHAREGPT),
            _section("VLLM_ATTENTION_BACKEND=FLASHINFER vllm serve Qwen/Qwen3-14B", SHAREGPT),
            _section("trtllm-serve Qwen/Qwen3-14B", SHAREGPT),  # the page lists no TensorRT-LLM version
            _section("vllm serve zai-org/GLM-4.6 -tp x", SHAREGPT),
            _section("vllm serve zai-org/GLM-4.6", SHAREGPT),
            _section("vllm serve Qwen/Qwen3-14B", _result(1000, 500000, 4000)),
            _section("vllm serve Qwen/Qwen3-14B", _result(984, 212894, 193865)),  # 16 of the 1,000 failed
            _section("vllm serve Qwen/Qwen3-14B", _result(0, 0, 0)),
            _section("vllm serve Qwen/Qwen3-14B", _result(500, 999120, 49999, "random 2K input")),  # one short
            _section("vllm serve Qwen/Qwen3-32B", SHAREGPT),  # the page is about Qwen3-14B
            "### 2. Quantization in TensorRT-LLM",
            _section("python3 -m sglang.launch_server --model-path Qwen/Qwen3-14B-FP8", SHAREGPT),
            "### 3. Other Benchmark Cases",
            _section(
                "# a comment in the script\n"
                "    vllm serve Qwen/Qwen3-14B \\\n"
                "    --quantization fp8 -pp 2 --trust-remote-code",
                _result(1000, 400000, 199000, "ShareGPT"),  # ShareGPT by its label, though 400 tokens in
            ),
            _section("export VLLM_USE_DEEP_GEMM=0\n    vllm serve Qwen/Qwen3-14B", SHAREGPT),
            _section("vllm serve Qwen/Qwen3-14B --max-model-len 32768", SHAREGPT),  # the first run, printed again
            _section("vllm serve Qwen/Qwen3-14B", _result(100, 23260, 22061, "ShareGPT batch size 8", concurrency=4)),
            _section("vllm serve Qwen/Qwen3-14B", _result(100, 23260, 22061, concurrency=4).replace(" 4\n", " inf\n")),
            _section("vllm serve Qwen/Qwen3-14B", SHAREGPT.replace("1000.5", "0.0")),
            _section(
                "vllm serve Qwen/Qwen3-14B",
                SHAREGPT.replace("    Mean TTFT", "    Mean Latency(s):  84.22\n    Mean TTFT"),
            ),
            '??? info "Benchmark result"\n    ```\n'
            "    Successful requests:  1000\n    Total input tokens:  215312\n    ```",
        )
    )
    (pages / "references").mkdir()
    (pages / "references" / "notes.md").write_text(_page("1 × NVIDIA H100 SXM", _section("vllm serve x", SHAREGPT)))
    (pages / "qwen3-32b").mkdir()
    (pages / "qwen3-32b" / "a100.md").write_text(
        _page("A single NVIDIA A100 SXM GPU.", _section("vllm serve Qwen/Qwen3-32B", SHAREGPT))
    )
    (pages / "glm-5").mkdir()
    (pages / "glm-5" / "h200.md").write_text(_page("NVIDIA H200", _section("vllm serve zai-org/GLM-5", SHAREGPT)))
    out = tmp_path / "rows.csv"
    script.main(pages, out, "abc123")
    rows = read_measurements(out)
    assert len(rows) == 20 and {r.metric for r in rows} == {"output_throughput", "mean_ttft", "mean_tpot", "mean_itl"}
    by = {(r.engine, r.dataset, r.load_kind, r.metric): r for r in rows if r.pp == 1}
    vllm = by[("vllm", "sharegpt", "burst", "output_throughput")]
    assert (vllm.model, vllm.gpu, vllm.tp, vllm.num_gpus, vllm.precision) == ("qwen3-14b", "H100-SXM", 1, 1, "bf16")
    assert (vllm.load_value, vllm.engine_version, vllm.value) == (1000, "v0.11.0", 1000.5)
    assert "qwen3-14b/h100.md @abc123" in vllm.source
    assert "`vllm serve Qwen/Qwen3-14B --max-model-len 32768`" in vllm.source
    fixed = by[("vllm", "fixed", "burst", "mean_ttft")]
    assert (fixed.isl, fixed.osl, fixed.load_value, fixed.tp, fixed.num_gpus) == (4000, 200, 500, 2, 2)
    assert (fixed.precision, fixed.kv_precision, fixed.value) == ("fp8-block", "fp8", 0.25)
    closed = by[("vllm", "sharegpt", "concurrency", "mean_itl")]
    assert closed.load_value == 4 and closed.value == pytest.approx(0.019)
    sglang = by[("sglang", "sharegpt", "burst", "mean_tpot")]
    assert (sglang.tp, sglang.engine_version) == (2, "v0.5.3")
    (continued,) = [r for r in rows if r.pp == 2 and r.metric == "output_throughput"]
    assert (continued.precision, continued.tp, continued.num_gpus, continued.dataset) == ("fp8", 1, 2, "sharegpt")
    assert "`vllm serve Qwen/Qwen3-14B --quantization fp8 -pp 2 --trust-remote-code`" in continued.source
    assert not any("references" in r.source for r in rows)
    printed = capsys.readouterr().out
    assert "28 result blocks" in printed and "kept 5 (20 rows)" in printed
    for reason in (
        "984 successful requests of the 1000 such runs send: some failed",
        "no successful requests",
        "the same run printed again (line ",
        "'# sharegpt batch size 8' above a result at concurrency 4.0",
        "concurrency inf is not a whole number of requests",
        "output_throughput not a positive number",
        "random 2000/100: outputs ended at end of sequence (49999 of 50000 tokens)",
        "serving command's model 'Qwen/Qwen3-32B' is not the page's model 'Qwen3-14B'",
        "section '2. Quantization in TensorRT-LLM' is about tensorrt-llm but its serving command runs sglang",
        "environment setting VLLM_USE_DEEP_GEMM",
        "a result block without vllm bench's header (another client's output, or a truncated one)",
        "a result of another client (request latency and P95 columns; its concurrency line is not the load)",
        "accelerator 'NVIDIA H200' is not a catalogue one named with its form factor and memory",
        "random 4000/200: outputs ended at end of sequence (52309 of 100000 tokens)",
        "'# bs=8' above a result at concurrency 4.0",
        "a variant noted above its result ('# --attention-backend=triton')",
        "serving flag --async-scheduling: a setting the profile does not take",
        "environment setting VLLM_ATTENTION_BACKEND",
        "the page names no tensorrt-llm version",
        "serving flag -tp: 'x' is not a positive whole number",
        "model 'zai-org/GLM-4.6' is not in the catalogue",
        "input of 500 tokens per request matches no dataset the page names",
        "accelerator 'A single NVIDIA A100 SXM GPU.' is not a catalogue one named with its form factor and memory",
    ):
        assert f"dropped 1: {reason}" in printed


def test_the_held_out_file_parses_whole_and_every_row_names_its_page_line_and_command() -> None:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "gpustack_serving.csv"
    report = read_measurement_file(path)
    assert not report.broken and len(report.rows) == 216
    assert all("docs/performance-lab/" in r.source and "(line " in r.source and "`" in r.source for r in report.rows)
    assert {r.load_kind for r in report.rows} == {"burst", "concurrency"}
    assert {r.engine for r in report.rows} == {"vllm", "sglang", "tensorrt-llm"}


def test_an_output_it_cannot_write_ends_with_a_message_naming_it(tmp_path: Path) -> None:
    pages = tmp_path / "performance-lab"
    pages.mkdir()
    out = tmp_path / "no-such-folder" / "rows.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), str(pages), str(out)], capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr and str(out) in done.stderr


def test_a_missing_pages_folder_ends_with_a_message_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(missing), str(tmp_path / "rows.csv")], capture_output=True, text=True
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr and str(missing) in done.stderr
    assert not (tmp_path / "rows.csv").exists()
