"""`tokenomy calibrate FILE`: broken rows skipped by line, the fit says which parameters the rows identified."""

import json
from pathlib import Path

from typer.testing import CliRunner

from tokenomy.calibrate.measurements import read_measurements
from tokenomy.catalog.models import DATA_DIR
from tokenomy.cli.main import app


def test_calibrate_skips_broken_rows_and_reports_identifiability(tmp_path: Path):
    lines = (DATA_DIR / "measurements.csv").read_text().splitlines()
    header, rows = lines[0], [ln for ln in lines[1:] if ",mistral-7b," in ln][::4]
    path = tmp_path / "m.csv"
    path.write_text("\n".join([header, *rows, "broken,line"]) + "\n")
    out = tmp_path / "fitted.json"
    result = CliRunner().invoke(app, ["calibrate", str(path), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert f"line {len(rows) + 2}: field 'engine'" in result.output
    fit = json.loads(out.read_text())["fit"]
    assert fit["row_ids"] == [r.id for r in read_measurements(DATA_DIR / "measurements.csv") if r.id in fit["row_ids"]]
    assert len(fit["row_ids"]) == len(rows)
    # Single-GPU rows say nothing about the interconnect: its prior stays, and the output says so.
    assert fit["parameters"]["comm_efficiency"]["status"].startswith("prior kept")
    assert "comm_efficiency = " in result.output and "prior kept" in result.output
