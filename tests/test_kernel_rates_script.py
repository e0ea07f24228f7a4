"""scripts/kernel_rates_aic.py outside an AIConfigurator interpreter: a message saying how to run it, no traceback."""

from __future__ import annotations

import importlib.util
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
