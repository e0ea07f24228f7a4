"""A property-based fuzz of the whole command line, small budget (the full one: benchmarks/cli_fuzz.py).

Every command with random, hostile options and malformed files, in-process with TOKENOMY_DEBUG=1 (so the
top-level guard re-raises instead of hiding a crash): no exception may escape, no traceback or raw pydantic
text may be printed, and a refusal must say "error".
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

FUZZ_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "cli_fuzz.py"
EXAMPLES = 80  # about 30 s on a quiet 2-core machine; the benchmark runs 2,400


@pytest.fixture(scope="module")
def cli_fuzz():
    spec = importlib.util.spec_from_file_location("cli_fuzz", FUZZ_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cli_fuzz"] = module
    spec.loader.exec_module(module)
    return module


def test_no_command_lets_an_exception_escape(cli_fuzz, tmp_path: Path) -> None:
    files = cli_fuzz.Files(tmp_path).make()
    outcomes = cli_fuzz.fuzz(EXAMPLES, seed=15, files=files)
    problems = [f"{' '.join(o.args)}\n  {o.problem}" for o in outcomes if o.problem]
    assert len(outcomes) == EXAMPLES
    assert not problems, "\n".join(problems[:5])
    assert {o.args[0] for o in outcomes} >= {"plan", "simulate", "advise", "twin", "plan-chain"}


def test_the_fuzz_sees_a_crash_when_there_is_one(cli_fuzz, monkeypatch) -> None:
    """The harness itself: a command that raises is reported, not hidden by the guard."""
    import tokenomy.cli.planning as planning

    def boom(*_a, **_k):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(planning, "run_plans", boom)
    outcome = cli_fuzz.run_one(["plan"])
    assert outcome.problem is not None and "ZeroDivisionError" in outcome.problem
