"""`tokenomy plan-chain`: a chain's cost and latency per valid answer, from given tiers."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tokenomy.cli.chain import parse_tier_spec
from tokenomy.cli.main import app

SMALL, BIG = "small:usd=0.0002,latency=0.4,pass=0.7", "big:usd=0.002,latency=1.5,pass=0.98"


def test_plan_chain_prints_cost_per_valid_answer_and_break_even() -> None:
    result = CliRunner().invoke(app, ["plan-chain", "--tier", SMALL, "--tier", BIG])
    assert result.exit_code == 0, result.output
    assert "cost per valid answer   $0.000805" in result.output
    assert "break-even pass rate    9.8% for small" in result.output
    assert "the chain saves 60.6%" in result.output


def test_plan_chain_json() -> None:
    result = CliRunner().invoke(app, ["plan-chain", "--tier", SMALL, "--tier", BIG, "--json"])
    report = json.loads(result.output)
    chain = report["chain"]
    assert chain["usd_per_request"] == pytest.approx(0.0002 + 0.3 * 0.002)
    assert chain["valid_probability"] == pytest.approx(1 - 0.3 * 0.02)
    assert chain["latency_s"] == pytest.approx(0.4 + 0.3 * 1.5)
    assert chain["break_even_pass_rate"] == pytest.approx(0.0002 * 0.98 / 0.002)
    assert report["top_tier_only"]["usd_per_valid_answer"] == pytest.approx(0.002 / 0.98)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("small", "expected NAME:"),
        ("s:usd=1,pass=2", "pass must lie"),
        ("s:usd=x,pass=1", "needs a number"),
        ("s:cost=1,pass=1", "unknown field 'cost'"),
        ("s:pass=1", "missing usd"),
    ],
)
def test_bad_tier_specs_say_why(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_tier_spec(spec)
    result = CliRunner().invoke(app, ["plan-chain", "--tier", spec])
    assert result.exit_code == 2
