"""A measurement file with broken rows: each is reported by line and field, the rest are read."""

from pathlib import Path

import pytest

from tests.calibrate.measurement_rows import HEADER, changed_row
from tokenomy.calibrate.measurements import read_measurement_file, read_measurements
from tokenomy.catalog.errors import CatalogError

GOOD = (
    "a1,src,tensorrt-llm,v1,llama-3.1-8b,H100-SXM,1,1,1,FP8,,128,128,fixed,offline,,output_throughput,28000,tok/s,core"
)


def _row(**changes: str) -> str:
    return changed_row(GOOD, **changes)


BROKEN = [
    ("broken,line", "engine", "2 field(s), the header has 20"),
    (GOOD + ",extra", "scope", "21 fields"),
    (_row(value="fast"), "value", "not a number: 'fast'"),
    (_row(value="-3"), "value", "must be a positive number"),
    (_row(value="nan"), "value", "must be a positive number"),
    (_row(tp="two"), "tp", "not a whole number"),
    (_row(isl="12.5"), "isl", "not a whole number"),
    (_row(osl="0"), "osl", "must be positive"),
    (_row(load_value="lots"), "load_value", "not a number"),
    (_row(num_gpus="1", tp="2"), "num_gpus", "fewer than tp × pp"),
    (_row(id=""), "id", "empty"),
    (_row(model=" "), "model", "empty"),
]


@pytest.mark.parametrize(("line", "field", "message"), BROKEN)
def test_each_kind_of_broken_row_is_reported_and_the_rest_read(tmp_path: Path, line, field, message):
    path = tmp_path / "m.csv"
    path.write_text("\n".join([HEADER, GOOD, line, _row(id="a3")]) + "\n")
    result = read_measurement_file(path)
    assert [r.id for r in result.rows] == ["a1", "a3"]
    assert [r.line for r in result.rows] == [2, 4]
    (problem,) = result.broken
    assert (problem.line, problem.field) == (3, field)
    assert message in problem.message
    assert str(problem).startswith(f"{path}: line 3: field '{field}'")
    with pytest.raises(CatalogError, match=f"line 3: field '{field}'"):
        read_measurements(path)


def test_unknown_load_kind_and_precision_are_kept_for_prediction_to_skip(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("\n".join([HEADER, _row(load_kind="sustained"), _row(id="a2", precision="fp5")]) + "\n")
    result = read_measurement_file(path)
    assert not result.broken
    assert [(r.load_kind, r.precision) for r in result.rows] == [("sustained", "fp8"), ("offline", "fp5")]


def test_published_precision_is_read_as_ours(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("\n".join([HEADER, _row(precision="FP4", kv_precision="FP8"), _row(id="b", precision="W4A16")]))
    rows = read_measurements(path)
    assert [(r.precision, r.kv_precision) for r in rows] == [("nvfp4", "fp8"), ("int4", "")]


def test_missing_columns_and_missing_file_are_errors(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("id,model\nx,y\n")
    with pytest.raises(CatalogError, match="line 1: missing column"):
        read_measurement_file(path)
    with pytest.raises(CatalogError, match="no such file"):
        read_measurement_file(tmp_path / "absent.csv")
