"""A small-budget run of the request-schema fuzz (benchmarks/gateway_fuzz.py runs ≥ 10,000 inputs)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.gateway_fuzz import run_fuzz

EXAMPLES = 400  # ≈ 3–10 s on a busy 2-core machine


def test_fuzzed_requests_get_no_5xx_and_only_openai_shaped_answers(tmp_path: Path) -> None:
    fuzz = run_fuzz(EXAMPLES, 20261205, tmp_path)
    assert fuzz.runs == EXAMPLES
    assert fuzz.bad == []
    assert fuzz.statuses[200] > 0 and fuzz.statuses[400] > 0  # both the upstream path and refusals were exercised
