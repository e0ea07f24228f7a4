"""Route validators: config parsing and its errors, each kind, the judge tier and `validate` as a whole."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tokenomy.gateway.validators import (
    JsonSchemaValidator,
    JudgeUsage,
    ValidatorConfigError,
    extract_json,
    judge_request_body,
    parse_judge_reply,
    parse_validators,
    validate,
)
from tokenomy.tokenizer import count_tokens

REQUEST = {"model": "auto", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


# Python validators referenced by import path in the tests below.
def mentions_paris(answer_text: str, request: dict[str, Any]) -> bool:
    return "paris" in answer_text.lower()


def with_reason(answer_text: str, request: dict[str, Any]) -> tuple[bool, str]:
    return len(answer_text) > 10, "shorter than 11 characters"


def broken(answer_text: str, request: dict[str, Any]) -> bool:
    raise RuntimeError("boom")


async def async_check(answer_text: str, request: dict[str, Any]) -> bool:
    await asyncio.sleep(0)
    return answer_text.endswith(".")


def run_validate(answer: str, raw_validators: list[dict], judge=None, request: dict | None = None):  # noqa: ANN001
    return asyncio.run(validate(answer, request or REQUEST, parse_validators(raw_validators), judge))


# --- config ---------------------------------------------------------------------------------------------


def test_every_kind_parses_from_its_config_form():
    validators = parse_validators(
        [
            {"kind": "json_schema", "schema": PERSON_SCHEMA},
            {"kind": "regex", "pattern": r"\d+", "mode": "fullmatch"},
            {"kind": "length", "min_tokens": 1, "max_tokens": 200},
            {"kind": "refusal"},
            {"kind": "python", "target": "tests.gateway.test_validators:mentions_paris"},
            {"kind": "judge", "tier": "big", "question": "Is the answer correct?"},
        ]
    )
    assert [v.kind for v in validators] == ["json_schema", "regex", "length", "refusal", "python", "judge"]
    assert isinstance(validators[0], JsonSchemaValidator) and validators[0].json_schema == PERSON_SCHEMA


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "sql"}, "does not match any of the expected tags"),
        ({"kind": "regex", "pattern": "(unclosed"}, "validators[0].pattern: not a valid regular expression"),
        ({"kind": "regex", "pattern": "a", "mode": "match"}, "validators[0].mode"),
        ({"kind": "json_schema", "schema": {"type": "nope"}}, "validators[0].schema: not a valid JSON Schema"),
        ({"kind": "length"}, "give at least one of min_tokens"),
        ({"kind": "length", "min_chars": 10, "max_chars": 5}, "min_chars (10) is larger than max_chars (5)"),
        ({"kind": "python", "target": "no_colon"}, "expected 'package.module:function'"),
        ({"kind": "python", "target": "no_such_module_xyz:f"}, "cannot import module 'no_such_module_xyz'"),
        ({"kind": "python", "target": "tests.gateway.test_validators:missing"}, "has no function 'missing'"),
        ({"kind": "judge", "tier": "big"}, "validators[0].question: Field required"),
        ({"kind": "refusal", "phrasez": []}, "validators[0].phrasez: Extra inputs are not permitted"),
    ],
)
def test_config_errors_name_the_entry_and_the_problem(raw: dict, message: str):
    with pytest.raises(ValidatorConfigError) as err:
        parse_validators([raw])
    assert message in str(err.value)


def test_config_error_points_at_the_failing_entry():
    with pytest.raises(ValidatorConfigError, match=r"^validators\[1\]\.pattern"):
        parse_validators([{"kind": "refusal"}, {"kind": "regex", "pattern": "["}])


# --- JSON extraction ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        '{"name": "Ada", "age": 36}',
        '```json\n{"name": "Ada", "age": 36}\n```',
        'Here it is:\n```\n{"name": "Ada", "age": 36}\n```\nAnything else?',
        'Sure [1]. The record is {"name": "Ada", "age": 36} as requested.',
    ],
)
def test_extract_json_finds_bare_fenced_and_embedded_objects(answer: str):
    assert extract_json(answer) == {"name": "Ada", "age": 36}


@pytest.mark.parametrize("answer", ["no json here", '{"name": "Ada", "age": ', "```json\n{broken\n```"])
def test_extract_json_raises_when_there_is_none(answer: str):
    with pytest.raises(ValueError, match="no JSON found"):
        extract_json(answer)


def test_json_schema_validator_passes_a_fenced_match_and_reports_the_failing_path():
    raw = [{"kind": "json_schema", "schema": PERSON_SCHEMA}]
    assert run_validate('```json\n{"name": "Ada", "age": 36}\n```', raw).passed
    verdict = run_validate('{"name": "Ada", "age": "thirty"}', raw)
    assert not verdict.passed and "at $.age" in verdict.reasons[0] and "integer" in verdict.reasons[0]
    assert run_validate('{"name": "Ada", "age": 36, "extra": 1}', raw).passed is False
    assert "no JSON found" in run_validate("Ada is 36.", raw).reasons[0]


# --- regex, length, refusal -------------------------------------------------------------------------------


def test_regex_search_fullmatch_and_case():
    assert run_validate("The answer is 42.", [{"kind": "regex", "pattern": r"\d+"}]).passed
    assert not run_validate("The answer is 42.", [{"kind": "regex", "pattern": r"\d+", "mode": "fullmatch"}]).passed
    assert run_validate("  42\n", [{"kind": "regex", "pattern": r"\d+", "mode": "fullmatch"}]).passed
    assert not run_validate("YES", [{"kind": "regex", "pattern": "yes"}]).passed
    assert run_validate("YES", [{"kind": "regex", "pattern": "yes", "ignore_case": True}]).passed


def test_length_bounds_in_tokens_and_characters():
    answer = "Paris is the capital of France."
    n_tokens = count_tokens(answer)
    assert n_tokens > 1
    assert run_validate(answer, [{"kind": "length", "min_tokens": n_tokens, "max_tokens": n_tokens}]).passed
    too_long = run_validate(answer, [{"kind": "length", "max_tokens": n_tokens - 1}])
    assert not too_long.passed and f"{n_tokens} tokens > maximum {n_tokens - 1}" in too_long.reasons[0]
    assert not run_validate(answer, [{"kind": "length", "min_tokens": n_tokens + 1}]).passed
    assert run_validate(answer, [{"kind": "length", "min_chars": len(answer), "max_chars": len(answer)}]).passed
    assert "characters < minimum" in run_validate("ok", [{"kind": "length", "min_chars": 3}]).reasons[0]


@pytest.mark.parametrize(
    "answer",
    [
        "I'm sorry, but I can't help with that.",
        "I\u2019m unable to provide that information.",  # curly apostrophe
        "As an AI language model, I cannot browse the internet.",
        "   ",
        "",
    ],
)
def test_refusals_and_empty_answers_fail(answer: str):
    verdict = run_validate(answer, [{"kind": "refusal"}])
    assert not verdict.passed and verdict.reasons[0].startswith("refusal:")


def test_refusal_phrase_deep_inside_a_long_answer_is_not_a_refusal():
    long_answer = "Paris is the capital of France. " * 20 + "Some say I cannot help with history, but here it is."
    assert len(long_answer) > 400
    assert run_validate(long_answer, [{"kind": "refusal"}]).passed
    assert not run_validate("I cannot help with that. " + long_answer, [{"kind": "refusal"}]).passed
    assert run_validate("Paris.", [{"kind": "refusal"}]).passed


def test_refusal_extra_phrases():
    raw = [{"kind": "refusal", "extra_phrases": ["Ask your administrator"]}]
    assert not run_validate("Please ask your administrator.", raw).passed
    assert run_validate("Please ask your administrator.", [{"kind": "refusal"}]).passed


# --- python callables ---------------------------------------------------------------------------------------


def test_python_callable_bool_tuple_exception_and_async():
    target = "tests.gateway.test_validators:"
    assert run_validate("It is Paris.", [{"kind": "python", "target": target + "mentions_paris"}]).passed
    rejected = run_validate("Lyon.", [{"kind": "python", "target": target + "mentions_paris"}])
    assert not rejected.passed and "mentions_paris rejected the answer" in rejected.reasons[0]
    short = run_validate("Paris.", [{"kind": "python", "target": target + "with_reason"}])
    assert short.reasons == [f"python: {target}with_reason rejected the answer: shorter than 11 characters"]
    crashed = run_validate("Paris.", [{"kind": "python", "target": target + "broken"}])
    assert not crashed.passed and "raised RuntimeError: boom" in crashed.reasons[0]
    assert run_validate("Paris.", [{"kind": "python", "target": target + "async_check"}]).passed
    assert not run_validate("Paris", [{"kind": "python", "target": target + "async_check"}]).passed


# --- judge ----------------------------------------------------------------------------------------------------


class FakeJudge:
    """Records calls and answers with a fixed reply and optional usage."""

    def __init__(self, reply: str, usage: dict | None = None):
        self.reply, self.usage, self.calls = reply, usage, []

    async def __call__(self, tier: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((tier, body))
        response: dict[str, Any] = {"choices": [{"message": {"role": "assistant", "content": self.reply}}]}
        if self.usage is not None:
            response["usage"] = self.usage
        return response


JUDGE = {"kind": "judge", "tier": "big", "question": "Does the answer name the capital of France?"}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("yes", True), ("Yes.", True), ("**YES**, it does", True), ("no", False), ("No, it does not.", False)],
)
def test_parse_judge_reply(reply: str, expected: bool):
    assert parse_judge_reply(reply) is expected


@pytest.mark.parametrize("reply", ["", "Maybe", "The answer is yes"])
def test_parse_judge_reply_unclear(reply: str):
    assert parse_judge_reply(reply) is None


def test_judge_prompt_holds_question_request_and_answer():
    (config,) = parse_validators([JUDGE])
    body = judge_request_body("Paris.", REQUEST, config)
    user_text = body["messages"][-1]["content"]
    assert "What is the capital of France?" in user_text and "Paris." in user_text and config.question in user_text
    assert body["messages"][0]["role"] == "system" and "yes or no" in body["messages"][0]["content"]
    assert body["max_tokens"] == 8 and body["temperature"] == 0 and "model" not in body


def test_judge_yes_passes_and_its_usage_is_returned():
    judge = FakeJudge("Yes", usage={"prompt_tokens": 91, "completion_tokens": 1})
    verdict = run_validate("Paris.", [JUDGE], judge=judge)
    assert verdict.passed and verdict.judge_usage == [JudgeUsage("big", 91, 1)]
    assert judge.calls[0][0] == "big"


def test_judge_no_and_unclear_fail():
    verdict = run_validate("Lyon.", [JUDGE], judge=FakeJudge("No."))
    assert not verdict.passed and "judge big: no to" in verdict.reasons[0]
    unclear = run_validate("Lyon.", [JUDGE], judge=FakeJudge("Hard to say"))
    assert not unclear.passed and "not yes or no" in unclear.reasons[0]


def test_judge_usage_is_counted_when_the_upstream_gives_none():
    (usage,) = run_validate("Paris.", [JUDGE], judge=FakeJudge("yes")).judge_usage
    assert usage.prompt_tokens > 50 and usage.completion_tokens == count_tokens("yes")


def test_judge_is_not_paid_for_when_a_cheap_validator_already_failed():
    judge = FakeJudge("yes")
    verdict = run_validate("I'm sorry, but I can't help with that.", [JUDGE, {"kind": "refusal"}], judge=judge)
    assert not verdict.passed and judge.calls == [] and verdict.judge_usage == []


def test_a_judge_validator_without_a_judge_call_is_an_error():
    with pytest.raises(ValueError, match="needs a judge call"):
        run_validate("Paris.", [JUDGE])


# --- validate as a whole ---------------------------------------------------------------------------------------


def test_validate_reports_every_failing_cheap_validator():
    verdict = run_validate(
        "I cannot help with that.",
        [{"kind": "regex", "pattern": "Paris"}, {"kind": "refusal"}, {"kind": "length", "max_chars": 100}],
    )
    assert not verdict.passed
    assert [r.split(":")[0] for r in verdict.reasons] == ["regex", "refusal"]


def test_no_validators_pass_everything():
    verdict = run_validate("anything", [])
    assert verdict.passed and verdict.reasons == [] and verdict.judge_usage == []
