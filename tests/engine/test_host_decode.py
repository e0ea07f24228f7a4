"""`tokenomy calibrate --host` + `tokenomy plan` predict llama.cpp's single-stream decode speed within 25%.

Runs benchmarks/host_decode.py (calibrate --host → llama.cpp decode of SmolLM2-135M Q4_1 → plan) on the GGUF the
engine fixture uses, with llama-cpp-python's default thread count, and checks |predicted − measured| / measured.
The calibration times llama.cpp's own kernels on synthetic models of other shapes on this machine in the same run
(calibrate/engine_kernels.py), so the comparison holds on any CPU the llama.cpp build runs on — an AVX-512 host
whose BLAS sgemm is twice as fast as the portable AVX2 build of llama.cpp included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.conftest import find_gguf, require_engine

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 0.25


def test_plan_predicts_llama_cpp_single_stream_decode(tmp_path: Path) -> None:
    require_engine()
    gguf = find_gguf()
    assert gguf is not None
    result_path = tmp_path / "host_decode.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "host_decode.py"), "--gguf", str(gguf), "--json", str(result_path)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert proc.returncode == 0, f"host_decode.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    print(proc.stdout)  # the figures, for the CI log (pytest -s or -rA)
    result = json.loads(result_path.read_text())
    assert proc.stdout.strip().splitlines()[-1] == f"host_decode_error: {result['error'] * 100:.1f} %"
    assert result["host"]["memory_bandwidth_gb_s"] > 0.1 and result["host"]["fp32_tflops"] > 1e-4
    assert "solved from llama.cpp's kernels timed here" in result["host"]["notes"], result["host"]["notes"]
    assert result["measured_best_tokens_per_s"] > 1.0
    assert result["error"] <= TOLERANCE, proc.stdout
