"""Typed results (src/tokenomy/results.py): committed JSON Schemas match the models, real `--json` output validates
against them, and what they print is strict JSON (no NaN)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from tokenomy.cli.main import app
from tokenomy.results import SCHEMAS, PlanResult, RunSummary, dumps, json_safe, json_schema

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def schema(name: str) -> dict:
    return json.loads((REPO / "docs" / "schemas" / f"{name}.schema.json").read_text())


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_is_the_models(name: str) -> None:
    assert schema(name) == json.loads(json.dumps(json_schema(SCHEMAS[name]))), "run scripts/write_schemas.py"


def test_write_schemas_check_passes_on_a_clean_checkout() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "write_schemas.py"), "--check"], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


def test_plan_json_validates_against_its_schema() -> None:
    res = runner.invoke(app, ["plan", "--model", "llama-3.1-8b", "--gpu", "H100-SXM", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    jsonschema.validate(data, schema("plan"))
    assert PlanResult.model_validate(data).fits is True


def test_simulate_json_validates_against_the_run_summary_schema() -> None:
    args = ["simulate", "--model", "llama-3.1-8b", "--gpu", "H100-SXM", "--rate", "2", "--num-requests", "40", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    jsonschema.validate(data, schema("run_summary"))
    assert RunSummary.model_validate(data).throughput.output_tokens_per_s > 0


def test_validate_json_validates_against_its_schema(tmp_path: Path) -> None:
    rows = (REPO / "src/tokenomy/catalog/data/measurements.csv").read_text().splitlines()[:30]
    path = tmp_path / "rows.csv"
    path.write_text("\n".join(rows) + "\n")
    res = runner.invoke(app, ["validate", str(path), "--json"])
    assert res.exit_code == 0, res.output
    jsonschema.validate(json.loads(res.stdout), schema("validate"))


def test_a_schema_rejects_output_missing_a_stable_key() -> None:
    res = runner.invoke(app, ["plan", "--model", "llama-3.1-8b", "--gpu", "H100-SXM", "--json"])
    data = json.loads(res.stdout)
    del data["itl_s"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema("plan"))


def test_nan_and_infinity_become_null() -> None:
    data = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2.0, "x")}
    assert json_safe(data) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2.0, "x"]}
    text = dumps(data)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["b"][1] is None
