"""docs/cost-model.md lists every term of the step time next to the shipped profiles' values: it must match them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tokenomy.catalog.profiles import load_profile

REPO = Path(__file__).resolve().parents[1]


def test_the_cost_model_page_matches_the_shipped_profiles() -> None:
    script = REPO / "scripts" / "write_model_doc.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


def test_the_page_names_every_fitted_parameter_with_its_value_and_status() -> None:
    page = (REPO / "docs" / "cost-model.md").read_text()
    trt = load_profile("tensorrt-llm")
    for name, fitted in trt.fit["parameters"].items():
        row = next(line for line in page.splitlines() if f"| `{name}` |" in line)
        assert f"{fitted['value']:.4g} ({str(fitted['status']).split(':')[0]})" in row
