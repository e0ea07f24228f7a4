"""scripts/kernel_rates_aic.py outside an AIConfigurator interpreter: a message saying how to run it, no traceback."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kernel_rates_aic.py"


@pytest.mark.skipif(
    importlib.util.find_spec("aiconfigurator_core") is not None, reason="AIConfigurator is installed here"
)
def test_without_aiconfigurator_the_script_says_how_to_run_it(tmp_path: Path) -> None:
    out = tmp_path / "rates.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "is not installed" in done.stderr and 'pip install "aiconfigurator==0.12.*"' in done.stderr
    assert not out.exists()


def _aic_python() -> str | None:
    """An interpreter with AIConfigurator and pandas: $AIC_PYTHON, else this one if it has them."""
    candidate = os.environ.get("AIC_PYTHON") or sys.executable
    try:
        probe = subprocess.run([candidate, "-c", "import aiconfigurator_core, pandas, pyarrow"], capture_output=True)
    except OSError:  # $AIC_PYTHON names no runnable file
        return None
    return candidate if probe.returncode == 0 else None


# A fake system: one bf16 GEMM table (best rate 1 PFLOP/s) and a MoE table of one expert shape (hidden 1024, inter
# 1024, top-1 of 4 experts) timed whole on one GPU and split over 2; each cell's latency is linear in tokens, the
# split's at 6.29 ns a token (η 0.5) at the token counts given (comma-separated).
_FAKE_TABLES = """
import sys
from pathlib import Path
import pandas as pd
root, whole_us_per_token = Path(sys.argv[1]), float(sys.argv[2])
split_tokens = [int(t) for t in sys.argv[3].split(",")]
gemm = root / "fake" / "gemm" / "trtllm" / "1.0.0"
moe = root / "fake" / "moe" / "trtllm" / "1.0.0"
gemm.mkdir(parents=True)
moe.mkdir(parents=True)
pd.DataFrame([dict(device="Fake GPU", gemm_dtype="bfloat16", m=4096, n=4096, k=4096,
                   latency=2 * 4096**3 / 1e15 * 1e3)]).to_parquet(gemm / "gemm_perf.parquet")
rows = []
for ep, us_per_token, counts in ((1, whole_us_per_token, (4096, 8192, 16384)), (2, 0.00629, split_tokens)):
    for tokens in counts:
        rows.append(dict(device="Fake GPU", moe_dtype="bfloat16", distribution="balanced", hidden_size=1024,
                         inter_size=1024, topk=1, num_experts=4, moe_tp_size=1, moe_ep_size=ep, num_tokens=tokens,
                         latency=0.01 + tokens * us_per_token * 1e-3))
pd.DataFrame(rows).to_parquet(moe / "moe_perf.parquet")
"""
_MOE_ROWS = """
import runpy, sys
from pathlib import Path
script = runpy.run_path(sys.argv[1])
for row in script["moe_rows"]("fake", "FAKE", Path(sys.argv[2]), "0"):
    print(row["shape"], row["value"])
"""


WHOLE_OWN = "hidden=1024 inter=1024 topk=1 experts=4 tokens=4096-16384"


@pytest.mark.parametrize(
    ("whole_us_per_token", "split_tokens", "expected"),
    [
        # the whole set computes its copies at the split's per-GPU rate: its own timing, η = 6.3 MFLOP a token at
        # 1 PFLOP/s over 12.6 ns
        (0.01258, "4096,8192,16384", f"{WHOLE_OWN} 0.500"),
        # 1.25× slower a token (1.18× fewer copies at 16,384 tokens): within MOE_SPLIT_FASTER, its own timing, η 0.4
        (0.015725, "4096,8192,16384", f"{WHOLE_OWN} 0.400"),
        # at a fifth of the split's rate (η 0.1): a slower kernel than the split's; the split's timing stands in
        (0.0629, "4096,8192,16384", f"{WHOLE_OWN} ep=2 0.500"),
        # as slow, but the split timed at one large token count has no η: the whole set keeps its own
        (0.0629, "2048,16384", f"{WHOLE_OWN} 0.100"),
    ],
)
def test_a_whole_expert_set_timed_slower_than_its_two_way_split_takes_the_splits_timing(
    tmp_path: Path, whole_us_per_token: float, split_tokens: str, expected: str
) -> None:
    python = _aic_python()
    if python is None:
        pytest.skip("no interpreter with aiconfigurator, pandas and pyarrow (set AIC_PYTHON to one)")
    made = subprocess.run(
        [python, "-c", _FAKE_TABLES, str(tmp_path), str(whole_us_per_token), split_tokens], capture_output=True
    )
    assert made.returncode == 0, made.stderr.decode()
    done = subprocess.run([python, "-c", _MOE_ROWS, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [expected]
