"""Twins answering the evaluation set: right at the chosen rate (stratified), max_tokens and streaming honoured."""

from __future__ import annotations

import json

import httpx
import pytest

from tokenomy.cli.twin import parse_pass_rates
from tokenomy.evalset.check import TASK_TYPES, check, load_evalset, reference_answer
from tokenomy.twin.answers import AnswerBook, answer_book, token_pieces
from tokenomy.twin.server import TwinSettings


def test_pieces_are_tokens_that_join_back() -> None:
    text = reference_answer(load_evalset("json_extraction")[0])
    pieces = token_pieces(text)
    assert "".join(pieces) == text and len(pieces) > 10


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.7, 1.0])
def test_one_pass_over_each_task_type_hits_the_rate(rate: float) -> None:
    book = AnswerBook(rate, seed=3)
    for task_type in TASK_TYPES:
        rows = load_evalset(task_type)
        passed = sum(check(row, book.answer(row))[0] for row in rows)
        assert abs(passed - rate * len(rows)) <= 1


def test_repeats_get_fresh_draws_and_per_type_rates_override() -> None:
    book = AnswerBook(0.5, {"code": 1.0})
    row = load_evalset("arithmetic")[0]
    outcomes = {check(row, book.answer(row))[0] for _ in range(8)}
    assert outcomes == {True, False}
    assert all(check(r, book.answer(r))[0] for r in load_evalset("code"))
    with pytest.raises(ValueError, match="unknown task type"):
        AnswerBook(0.5, {"poetry": 1.0})
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        AnswerBook(1.5)


def test_off_by_default() -> None:
    assert answer_book(TwinSettings("m")) is None
    assert parse_pass_rates("arithmetic=0.5, code=0.9") == {"arithmetic": 0.5, "code": 0.9}


def test_a_twin_answers_within_max_tokens_and_streams_the_answer(twin) -> None:
    url = twin(served_model_name="m", speedup=50, answer_pass_rate=1.0)
    row = load_evalset("code")[0]
    full = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": row["messages"]}).json()
    assert full["choices"][0]["message"]["content"] == reference_answer(row)
    assert full["choices"][0]["finish_reason"] == "stop"
    assert full["usage"]["completion_tokens"] == len(token_pieces(reference_answer(row)))
    body = {"model": "m", "messages": row["messages"], "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == "".join(token_pieces(reference_answer(row))[:5])
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    other = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7},
    ).json()
    assert other["usage"]["completion_tokens"] == 7  # not an evaluation-set prompt: filler text as before
