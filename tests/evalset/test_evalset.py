"""The shipped evaluation set: size, coverage, determinism, and that its checker accepts right answers only."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from tokenomy.evalset.check import (
    TASK_TYPES,
    check,
    check_json,
    check_label,
    check_number,
    check_python_function,
    last_number,
    load_evalset,
    reference_answer,
    wrong_answer,
)

REPO = Path(__file__).resolve().parents[2]
ROWS = load_evalset()


def test_at_least_200_rows_with_unique_ids_and_prompts_across_all_task_types():
    assert len(ROWS) >= 200
    assert len({r["id"] for r in ROWS}) == len(ROWS)
    assert len({r["messages"][-1]["content"] for r in ROWS}) == len(ROWS)
    counts = Counter(r["task_type"] for r in ROWS)
    assert set(counts) == set(TASK_TYPES) and min(counts.values()) >= 40


def test_every_row_has_the_documented_fields():
    for row in ROWS:
        assert set(row) == {"id", "task_type", "messages", "checker", "expected"}, row["id"]
        assert row["messages"][-1]["role"] == "user" and row["messages"][-1]["content"], row["id"]


def test_the_file_is_what_the_build_script_writes():
    spec = importlib.util.spec_from_file_location("build_evalset", REPO / "scripts" / "build_evalset.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    shipped = (REPO / "src" / "tokenomy" / "evalset" / "data" / "evalset.jsonl").read_text(encoding="utf-8")
    assert builder.evalset_text(builder.build_rows()) == shipped


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_the_expected_answer_passes_and_a_wrong_one_fails(row: dict):
    passed, reason = check(row, reference_answer(row))
    assert passed, reason
    passed, reason = check(row, wrong_answer(row))
    assert not passed and reason


def test_load_evalset_by_task_type():
    assert {r["task_type"] for r in load_evalset("code")} == {"code"}
    with pytest.raises(ValueError, match="unknown task type"):
        load_evalset("poetry")


# --- json -------------------------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["city", "tags"],
    "additionalProperties": False,
}
EXPECTED = {"city": "Lisbon", "tags": ["sea", "old town"]}


def test_json_check_is_lenient_on_case_whitespace_and_order_of_plain_lists():
    answer = 'Here you go: {"tags": ["old  town", "SEA"], "city": "lisbon "}'
    assert check_json(answer, SCHEMA, EXPECTED) == (True, "")


def test_json_check_fails_on_schema_errors_and_on_different_values():
    assert check_json('{"city": "Lisbon", "tags": ["sea", "old town"], "x": 1}', SCHEMA, EXPECTED)[1].startswith(
        "schema:"
    )
    assert not check_json('{"city": "Porto", "tags": ["sea", "old town"]}', SCHEMA, EXPECTED)[0]
    assert not check_json('{"city": "Lisbon", "tags": ["sea"]}', SCHEMA, EXPECTED)[0]
    assert check_json("Lisbon, sea, old town", SCHEMA, EXPECTED) == (False, "no JSON found in the answer")


def test_json_check_tells_booleans_from_numbers():
    schema = {"type": "object"}
    assert not check_json('{"n": true}', schema, {"n": 1})[0]
    assert check_json('{"n": 1.0}', schema, {"n": 1})[0]


# --- labels ------------------------------------------------------------------------------------------------

LABELS = ["spam", "legitimate"]


@pytest.mark.parametrize("answer", ["spam", "Spam.", "Label: **spam**", "This email is spam."])
def test_label_check_accepts_the_label_in_prose(answer: str):
    assert check_label(answer, LABELS, "spam") == (True, "")


@pytest.mark.parametrize("answer", ["legitimate", "spam or legitimate", "unsure", "spammy"])
def test_label_check_rejects_other_both_or_no_labels(answer: str):
    assert not check_label(answer, LABELS, "spam")[0]


# --- numbers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "value"),
    [("So 12 + 30 = 42", 42.0), ("Total: $1,234.50.", 1234.5), ("It is \u22127 °C", -7.0), ("none", None)],
)
def test_last_number(answer: str, value: float | None):
    assert last_number(answer) == value


def test_number_check_uses_the_last_number_and_the_tolerance():
    assert check_number("3 × 4 = 12, minus 2 gives 10", 10, 0.0)[0]
    assert not check_number("10, but then 11", 10, 0.0)[0]
    assert check_number("44.55", 44.54, 0.01)[0]
    assert not check_number("44.56", 44.54, 0.01)[0]


# --- code ----------------------------------------------------------------------------------------------------


def test_code_check_parses_fenced_or_bare_code_and_checks_name_and_arity():
    code = "def add(a, b):\n    return a + b\n"
    assert check_python_function(f"Sure!\n```python\n{code}```\nHope it helps.", "add", 2)[0]
    assert check_python_function(code, "add", 2)[0]
    assert "no top-level function 'add'" in check_python_function(code.replace("add", "plus"), "add", 2)[1]
    assert "takes 2 parameters, expected 3" in check_python_function(code, "add", 3)[1]
    assert "does not parse" in check_python_function("def add(a, b)\n    return a + b", "add", 2)[1]


def test_code_check_never_runs_the_code(tmp_path: Path):
    marker = tmp_path / "ran.txt"
    code = f"open({json.dumps(str(marker))}, 'w').write('x')\n\ndef add(a, b):\n    return a + b\n"
    assert check_python_function(code, "add", 2)[0]
    assert not marker.exists()
