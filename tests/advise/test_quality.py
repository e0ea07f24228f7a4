"""Published quality scores: every number sourced, quantized scores capped at their 16-bit original."""

from __future__ import annotations

import pytest

from tokenomy.advise.quality import load_quality


@pytest.fixture(scope="module")
def q():
    return load_quality()


def test_every_score_and_recovery_has_a_date_and_source(q) -> None:
    for entry in [*q.models.values(), *q.apis.values()]:
        assert entry.source and entry.date, entry.name
        for precision, rows in entry.recovery.items():
            assert entry.recovery_sources[precision], (entry.name, precision)
            assert all(0.5 < r < 1.1 for r in rows.values()), (entry.name, precision, rows)


def test_quantized_score_is_the_16_bit_score_times_the_recovery_capped_at_one(q) -> None:
    base = q.models["llama-3.1-8b"].scores["mmlu_cot"]
    assert q.model_score("llama-3.1-8b", "bf16", "mmlu_cot") == base
    assert q.model_score("llama-3.1-8b", "int4", "mmlu_cot") == pytest.approx(base * 0.976)
    assert q.model_score("llama-3.1-8b", "gptq", "mmlu_cot") == q.model_score("llama-3.1-8b", "int4", "mmlu_cot")
    # The card prints 101.0% for 70B int4 HumanEval: never credited above the original.
    assert q.model_score("llama-3.1-70b", "int4", "humaneval") == q.models["llama-3.1-70b"].scores["humaneval"]


def test_missing_scores_never_meet_a_floor(q) -> None:
    assert q.model_score("llama-3.1-8b", "nvfp4", "mmlu_cot") is None
    assert not q.model_meets("llama-3.1-8b", "nvfp4", {"mmlu_cot": 1})
    assert not q.model_meets("no-such-model", "bf16", {"mmlu_cot": 1})
    assert not q.api_meets("OpenAI/gpt-4.1", {"gsm8k": 1})  # simple-evals publishes no GSM8K
    assert q.model_meets("llama-3.1-8b", "fp8", {})  # no floor: anything goes


def test_floors_compare_against_the_precision_actually_served(q) -> None:
    int4 = q.model_score("llama-3.1-8b", "int4", "mmlu_cot")
    assert q.model_meets("llama-3.1-8b", "bf16", {"mmlu_cot": 72.5})
    assert not q.model_meets("llama-3.1-8b", "int4", {"mmlu_cot": 72.5})
    assert int4 < 72.5
