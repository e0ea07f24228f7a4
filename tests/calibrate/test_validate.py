"""validate: skipped rows counted with reasons, broken rows named, 80% intervals on every predicted row."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.calibrate.measurement_rows import HEADER, changed_row
from tokenomy.calibrate.measurements import read_measurement_file
from tokenomy.calibrate.validate import validate
from tokenomy.cli.main import app
from tokenomy.costmodel.intervals import build_residual_table

GOOD = (
    "a1,src,tensorrt-llm,v0.17,llama-3.1-8b,H100-SXM,1,1,1,fp8,,128,128,fixed,offline,,"
    "output_throughput,28000,tok/s,core"
)


def _row(**changes: str) -> str:
    return changed_row(GOOD, **changes)


MIXED = [
    HEADER,
    GOOD,
    "broken,line",
    _row(id="s1", load_kind="sustained"),
    _row(id="s2", precision="fp5"),
    _row(id="s3", isl="", osl="", dataset="sharegpt"),
    _row(id="s4", metric="goodput"),
    _row(id="b1", value="fast"),
    _row(id="f4", gpu="B200", precision="FP4", value="40000"),
    _row(
        id="r1",
        load_kind="rate",
        load_value="4",
        dataset="sharegpt",
        isl="",
        osl="",
        metric="mean_itl",
        value="12",
        unit="ms",
    ),
]


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(MIXED) + "\n")
    return path


def test_unpredictable_rows_are_skipped_with_a_reason_and_counted(mixed: Path):
    result = validate(read_measurement_file(mixed).rows)
    reasons = {r["id"]: r.get("skipped_reason", "") for r in result["rows"]}
    assert "load kind 'sustained'" in reasons["s1"]
    assert "unknown precision 'fp5'" in reasons["s2"]
    assert "no fixed isl/osl" in reasons["s3"]
    assert "metric 'goodput'" in reasons["s4"]
    assert {k for k, v in reasons.items() if not v} == {"a1", "f4", "r1"}  # FP4 is read as nvfp4 and predicted
    assert sum(result["skipped_reasons"].values()) == 4
    assert result["metrics"]["output_throughput"]["skipped"] == 3


def test_cli_reports_broken_rows_and_scores_the_rest(mixed: Path):
    result = CliRunner().invoke(app, ["validate", str(mixed)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "line 3: field 'engine'" in result.output
    assert "line 8: field 'value': not a number: 'fast'" in result.output
    assert "None/None" not in result.output
    assert "skipped 1: load kind 'sustained'" in result.output


def test_cli_strict_makes_a_broken_or_skipped_row_an_error(mixed: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["validate", str(mixed), "--strict"])
    assert result.exit_code == 2
    assert "line 3: field 'engine'" in result.output and "Traceback" not in result.output
    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join([HEADER, GOOD, _row(id="s1", load_kind="sustained")]) + "\n")
    result = CliRunner().invoke(app, ["validate", str(clean), "--strict"])
    assert result.exit_code == 2 and "load kind 'sustained'" in result.output
    assert CliRunner().invoke(app, ["validate", str(clean)]).exit_code == 0


def test_json_rows_carry_an_80_percent_interval_around_the_prediction(mixed: Path):
    result = CliRunner().invoke(app, ["validate", str(mixed), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    scored = [r for r in data["rows"] if "predicted" in r]
    assert scored
    for r in scored:
        lo, hi = r["interval_80"]
        assert 0 < lo < hi and r["interval_pool"]
        assert r["in_interval"] == (lo <= r["measured"] <= hi)
    assert "coverage_80" in data["metrics"]["output_throughput"]
    assert len(data["broken_rows"]) == 2


def test_coverage_counts_measurements_inside_their_interval(mixed: Path, tmp_path: Path):
    predicted = {
        r["id"]: r["predicted"]
        for r in validate([r for r in read_measurement_file(mixed).rows if r.id in ("a1", "f4")])["rows"]
    }
    # measured 1 % (a1) and 60 % (f4) above the prediction, whatever the shipped profile predicts
    path = tmp_path / "two.csv"
    a1 = _row(value=f"{predicted['a1'] * 1.01:.2f}")
    f4 = _row(id="f4", gpu="B200", precision="FP4", value=f"{predicted['f4'] * 1.6:.2f}")
    path.write_text("\n".join([HEADER, a1, f4]) + "\n")
    rows = read_measurement_file(path).rows
    # Residuals of log(measured/predicted) spread over ±0.05: a1 is inside, f4 is not.
    table = build_residual_table([("output_throughput", "x", "y", v) for v in (-0.05, 0.0, 0.05) * 5])
    result = validate(rows, table=table)
    inside = {r["id"]: r["in_interval"] for r in result["rows"]}
    assert inside == {"a1": True, "f4": False}
    assert result["metrics"]["output_throughput"]["coverage_80"] == 0.5
    assert result["rows"][0]["interval_pool"] == "output_throughput|*|*"


def test_a_metric_under_several_loads_is_also_summarised_per_load_kind(tmp_path: Path):
    """Offline output throughput (the accuracy goal's metric) is reported apart from the same metric at a fixed
    concurrency; a metric of one load kind gets no breakdown line."""
    rows = [
        HEADER,
        GOOD,
        _row(id="c1", load_kind="concurrency", load_value="1", osl="32", value="150"),
        _row(id="t1", load_kind="concurrency", load_value="1", osl="32", metric="mean_ttft", value="20", unit="ms"),
    ]
    path = tmp_path / "loads.csv"
    path.write_text("\n".join(rows) + "\n")
    result = validate(read_measurement_file(path).rows)
    assert set(result["loads"]) == {
        "output_throughput | offline",
        "output_throughput | concurrency",
        "mean_ttft | concurrency",
    }
    assert result["loads"]["output_throughput | offline"]["n"] == 1
    out = CliRunner().invoke(app, ["validate", str(path)], env={"COLUMNS": "120"}).output
    assert "concurrency load" in out and "offline load" in out
    assert out.count("concurrency load") == 1  # mean_ttft has one load kind: no breakdown line
