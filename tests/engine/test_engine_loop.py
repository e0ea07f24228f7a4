"""bench → calibrate → simulate on the real engine: after calibrating on its own bench rows, the llama.cpp profile
predicts SmolLM2's throughput and mean ITL at concurrency 1 and 4 within 25% (in sample, as the loop is meant to be
used), and calibrating never makes the prediction worse; the shipped profile's out-of-sample error is printed beside
it; single-stream TTFT (the prompt's prefill, from the host calibration alone) within 25% too. The issue's 15% goal
is the benchmark's printed figure (6.3% on an AMD EPYC, 7.3% and 12.2% on an Intel Xeon, quiet runs); this test
keeps the margin that the same machine's 1.4× run-to-run swing in the server's decode rate needs (the host_decode
test's 25%).

Runs benchmarks/engine_loop.py: calibrate --host, a 1-thread llama.cpp server, bench, calibrate, simulate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.conftest import require_engine

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 0.25


def test_bench_calibrate_simulate_loop_on_llama_cpp(tmp_path: Path) -> None:
    require_engine()
    result_path = tmp_path / "loop.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "engine_loop.py"), "--json", str(result_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=REPO,
    )
    assert proc.returncode == 0, f"engine_loop.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    print(proc.stdout)  # the figures, for the CI log
    result = json.loads(result_path.read_text())
    assert set(result["errors_fitted"]) == {f"{k}@c{c}" for k in ("output_tokens_per_s", "mean_itl_s") for c in (1, 4)}
    assert all(v["output_tokens_per_s"] > 1.0 for v in result["measured"].values())
    worst = max(result["errors_fitted"].values())
    assert proc.stdout.strip().splitlines()[-1] == f"engine_loop_worst_error: {worst * 100:.1f} %"
    assert worst <= TOLERANCE, proc.stdout
    assert worst <= max(result["errors_out_of_sample"].values()) + 0.02, proc.stdout  # the fit never makes it worse
    # The prompt's prefill, predicted from the host calibration alone (llama.cpp's prompt kernels timed on other
    # shapes): single-stream TTFT within the same 25% (it was 1.3× fast with an sgemm rate, 40% slow with the
    # decode kernels' rate).
    assert result["ttft_errors_out_of_sample"]["mean_ttft_s@c1"] <= TOLERANCE, proc.stdout
