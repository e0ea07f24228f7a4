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
from pydantic import ValidationError
from typer.testing import CliRunner

from tokenomy.cli.main import app
from tokenomy.results import (
    SCHEMAS,
    BlendedUsdPerMtok,
    Percentiles,
    PlanResult,
    RunSummary,
    Throughput,
    UsdPerMtok,
    dumps,
    json_safe,
    json_schema,
)

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


def test_a_result_reads_and_writes_like_the_dict_it_was_built_from() -> None:
    stats = {"mean": 1.0, "p50": 1.0, "p90": 2.0, "p99": 3.0}
    data = {
        "requests": {"total": 2},
        "throughput": {"output_tokens_per_s": 10.0, "requests_per_s": 1.0},
        **{k: dict(stats) for k in ("ttft_s", "itl_s", "tpot_s", "e2e_s")},
        "usd_per_mtok": {"input": 1.0, "output": 2.0},
    }
    s = RunSummary.model_validate(data)
    s["rate"] = 4.0  # a new key goes last, as in a dict
    s["goodput_rps"] = 0.5  # a declared field given late goes last too, not where the model declares it
    s["usd_per_mtok"] = {"blended": 1.5}  # an existing key keeps its place; the value is validated into its type
    assert list(s) == [*data, "rate", "goodput_rps"]
    assert len(s) == len(data) + 2 and dict(s.items())["rate"] == 4.0
    assert isinstance(s.usd_per_mtok, BlendedUsdPerMtok) and isinstance(s["ttft_s"], Percentiles)
    assert json.loads(s.to_json()) == {**data, "usd_per_mtok": {"blended": 1.5}, "rate": 4.0, "goodput_rps": 0.5}
    with pytest.raises(ValidationError):
        s["ttft_s"] = {"mean": "slow"}


def test_the_simulator_returns_a_typed_run_summary() -> None:
    from tokenomy.costmodel.resolve import DeploymentSpec, resolve
    from tokenomy.sim.run import SLO, simulate
    from tokenomy.sim.workload import WorkloadSpec, build_workload

    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM", tp=1)).deployment
    s = simulate(d, build_workload(WorkloadSpec(isl="256", osl="32", rate=4, num_requests=30))).summary(SLO(ttft_s=1))
    assert isinstance(s, RunSummary) and isinstance(s.throughput, Throughput) and isinstance(s.usd_per_mtok, UsdPerMtok)
    assert s.goodput_rps is not None and 0 < s.goodput_rps <= s.throughput.requests_per_s + 1e-9
    assert list(s)[:3] == ["requests", "duration_s", "throughput"]  # docs/design.md's order, kept


def test_fleet_and_sweep_json_validate_against_their_schemas() -> None:
    fleet = ["--fleet", str(REPO / "examples" / "fleet.yaml"), "--rate", "2", "--num-requests", "60"]
    res = runner.invoke(app, ["simulate", *fleet, "--classes", "chat=0.8,analysis=0.2", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    jsonschema.validate(data, schema("run_summary"))
    assert set(data["usd_per_mtok"]) == {"blended"}  # a fleet prices API tokens and GPU hours: no input/output split
    res = runner.invoke(app, ["simulate", "--num-requests", "30", "--sweep-rates", "2,4", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    jsonschema.validate(data, schema("simulate_sweep"))
    assert [p["rate"] for p in data["sweep"]] == [2.0, 4.0]
    for point in data["sweep"]:
        jsonschema.validate(point, schema("run_summary"))


def test_bench_json_against_a_twin_validates_against_the_run_summary_schema() -> None:
    from tokenomy.twin.server import running_twin

    with running_twin("llama-3.1-8b", "H100-SXM", speedup=10.0) as url:
        args = ["--url", url, "--catalog-model", "llama-3.1-8b", "--gpu", "H100-SXM", "--speedup", "10"]
        load = ["--isl", "64", "--osl", "8", "--sweep-rates", "10,20", "--num-requests", "10", "--warmup", "0"]
        res = runner.invoke(app, ["bench", "--no-progress", *args, *load, "--usd-per-hour", "2", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    jsonschema.validate(data, schema("run_summary"))
    for point in data["sweep"]:
        jsonschema.validate(point, schema("run_summary"))
    assert RunSummary.model_validate(data).usd_per_mtok.output > 0
