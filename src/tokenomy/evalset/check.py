"""The shipped evaluation set and its checker: does a model's answer to a row pass?

Rows live in `data/evalset.jsonl` (built by `scripts/build_evalset.py`). Each row has an id, a task_type,
chat `messages`, a `checker` (its `kind` and parameters) and the `expected` answer:

- `json` (json_extraction): the answer holds JSON (bare, fenced or in prose) that matches the row's schema and
  equals the expected object (strings compared case- and whitespace-insensitively, lists of plain values in
  any order).
- `label` (classification): exactly one of the row's labels appears in the answer as a word, and it is the
  expected one.
- `number` (arithmetic): the last number in the answer is within `tolerance` of the expected number.
- `python_function` (code): the code (the ```python block if there is one) parses with `ast.parse` and defines
  a top-level function with the expected name and number of parameters. The code is never executed.
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from importlib.resources import files
from typing import Any

from tokenomy.gateway.validators import extract_json, fenced_blocks, last_user_text, schema_errors

EVALSET_RESOURCE = "evalset.jsonl"
TASK_TYPES = ("json_extraction", "classification", "arithmetic", "code")
# Plain numbers and numbers with thousands separators; a unicode minus is straightened first.
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_ABSOLUTE_SLACK = 1e-9  # floating-point noise allowed on top of a row's tolerance


@cache
def _evalset_rows() -> tuple[dict[str, Any], ...]:
    text = files("tokenomy.evalset").joinpath("data", EVALSET_RESOURCE).read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def load_evalset(task_type: str | None = None) -> list[dict[str, Any]]:
    """The evaluation set's rows (optionally of one task type), in file order."""
    if task_type is not None and task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type '{task_type}'; expected one of {', '.join(TASK_TYPES)}")
    return [row for row in _evalset_rows() if task_type is None or row["task_type"] == task_type]


# --- one checker per kind; each returns (passed, reason) with reason "" when passed -----------------------


def _normalised(value: Any) -> Any:
    """A JSON value in comparable form: strings folded, numbers as floats, scalar lists sorted."""
    if isinstance(value, str):
        return ("str", " ".join(value.split()).casefold())
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int | float):
        return ("num", float(value))
    if isinstance(value, dict):
        return ("obj", tuple(sorted((key, _normalised(item)) for key, item in value.items())))
    items = [_normalised(item) for item in value]
    if all(kind in ("str", "num", "const") for kind, _ in items):
        return ("set", tuple(sorted(items, key=repr)))
    return ("list", tuple(items))


def check_json(answer_text: str, schema: dict[str, Any], expected: Any) -> tuple[bool, str]:
    """The answer's JSON matches the schema and equals `expected` (normalised)."""
    try:
        value = extract_json(answer_text)
    except ValueError as exc:
        return False, str(exc)
    errors = schema_errors(value, schema)
    if errors:
        return False, "schema: " + "; ".join(errors)
    if _normalised(value) != _normalised(expected):
        return False, "JSON matches the schema but differs from the expected object"
    return True, ""


def labels_in(answer_text: str, labels: list[str]) -> list[str]:
    """The labels that appear in the answer as whole words (case-insensitive)."""
    return [
        label
        for label in labels
        if re.search(rf"(?<![\w-]){re.escape(label)}(?![\w-])", answer_text, flags=re.IGNORECASE)
    ]


def check_label(answer_text: str, labels: list[str], expected: str) -> tuple[bool, str]:
    """Exactly one label appears in the answer, and it is the expected one."""
    found = labels_in(answer_text, labels)
    if found == [expected]:
        return True, ""
    if not found:
        return False, f"no label from {labels} in the answer"
    return False, f"answer names {found}, expected '{expected}'"


def last_number(answer_text: str) -> float | None:
    """The last number written in the answer (thousands separators allowed), or None."""
    matches = _NUMBER.findall(answer_text.replace("\u2212", "-"))
    return float(matches[-1].replace(",", "")) if matches else None


def check_number(answer_text: str, expected: float, tolerance: float) -> tuple[bool, str]:
    """The answer's last number is within `tolerance` of `expected`."""
    value = last_number(answer_text)
    if value is None:
        return False, "no number in the answer"
    if abs(value - expected) > tolerance + _ABSOLUTE_SLACK:
        return False, f"last number {value:g}, expected {expected:g} (± {tolerance:g})"
    return True, ""


def code_of(answer_text: str) -> str:
    """The code in an answer: its first ```python block, else its first fenced block, else the whole text."""
    blocks = fenced_blocks(answer_text)
    python_blocks = [body for language, body in blocks if language in ("python", "py", "python3")]
    if python_blocks:
        return python_blocks[0]
    return blocks[0][1] if blocks else answer_text


def check_python_function(answer_text: str, function_name: str, num_params: int) -> tuple[bool, str]:
    """The answer's code parses and defines top-level `function_name` with `num_params` parameters (never run)."""
    try:
        tree = ast.parse(code_of(answer_text))
    except SyntaxError as exc:
        return False, f"code does not parse: {exc.msg} (line {exc.lineno})"
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    matching = [f for f in functions if f.name == function_name]
    if not matching:
        return False, f"no top-level function '{function_name}' (found {[f.name for f in functions]})"
    args = matching[0].args
    n_params = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
    if n_params != num_params:
        return False, f"'{function_name}' takes {n_params} parameters, expected {num_params}"
    return True, ""


def check(row: dict[str, Any], answer_text: str) -> tuple[bool, str]:
    """Whether `answer_text` answers `row` correctly, and if not, why."""
    checker, expected = row["checker"], row["expected"]
    kind = checker["kind"]
    if kind == "json":
        return check_json(answer_text, checker["schema"], expected)
    if kind == "label":
        return check_label(answer_text, checker["labels"], expected)
    if kind == "number":
        return check_number(answer_text, expected, checker["tolerance"])
    if kind == "python_function":
        return check_python_function(answer_text, checker["function_name"], checker["num_params"])
    raise ValueError(f"row {row.get('id')}: unknown checker kind '{kind}'")


# --- as a gateway validator ---------------------------------------------------------------------------------


@cache
def _rows_by_prompt() -> dict[str, dict[str, Any]]:
    return {last_user_text({"messages": row["messages"]}): row for row in _evalset_rows()}


def row_for_request(request: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation-set row whose prompt is the request's last user message (exact match), if any."""
    return _rows_by_prompt().get(last_user_text(request))


def validate_answer(answer_text: str, request: dict[str, Any]) -> tuple[bool, str]:
    """A gateway `python` validator (target tokenomy.evalset.check:validate_answer): the row's checker decides."""
    row = row_for_request(request)
    if row is None:
        return False, "not an evaluation-set prompt"
    return check(row, answer_text)


# --- canned answers, for twins that answer the evaluation set at a chosen pass rate ------------------------


def reference_answer(row: dict[str, Any]) -> str:
    """A correct answer to `row`, written the way a model would."""
    kind, expected = row["checker"]["kind"], row["expected"]
    if kind == "json":
        return "```json\n" + json.dumps(expected, ensure_ascii=False, indent=2) + "\n```"
    if kind == "label":
        return expected
    if kind == "number":
        return f"Working it through step by step gives the result.\nAnswer: {expected}"
    if kind == "python_function":
        return f"```python\n{expected}```"
    raise ValueError(f"row {row.get('id')}: unknown checker kind '{kind}'")


def wrong_answer(row: dict[str, Any]) -> str:
    """A plausible but incorrect answer to `row` (it fails `check`)."""
    checker, expected = row["checker"], row["expected"]
    kind = checker["kind"]
    if kind == "json":
        first_key = next(iter(expected))
        changed = {**expected, first_key: _changed_value(expected[first_key])}
        return json.dumps(changed, ensure_ascii=False)
    if kind == "label":
        return next(label for label in checker["labels"] if label != expected)
    if kind == "number":
        return f"Answer: {expected + 1 + 2 * checker['tolerance']:g}"
    if kind == "python_function":
        return f"```python\ndef {checker['function_name']}(:\n    pass\n```"
    raise ValueError(f"row {row.get('id')}: unknown checker kind '{kind}'")


def _changed_value(value: Any) -> Any:
    """A different value of the same JSON type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + " (unverified)"
    if isinstance(value, list):
        return value[:-1]
    return value
