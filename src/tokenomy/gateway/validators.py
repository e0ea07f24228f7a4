"""Answer validators for a gateway route: does an upstream's answer pass, and if not, why.

A route declares a list of validators (config form: a mapping with a `kind`):

- `json_schema`: the answer holds JSON (bare, in a ``` fence, or inside prose) that matches `schema`.
- `regex`: `pattern` is found in the answer (`mode: search`) or matches all of it, surrounding whitespace
  stripped (`mode: fullmatch`).
- `length`: bounds in tokens (`min_tokens`/`max_tokens`, counted with `tokenomy.tokenizer.count_tokens`)
  and/or characters (`min_chars`/`max_chars`).
- `refusal`: fails an empty answer or a refusal (see REFUSAL_PHRASES and `refusal_reason`).
- `python`: `target: "package.module:function"`, called as function(answer_text, request) and returning
  a bool or (bool, reason); it may be async. An exception fails the answer with its message.
- `judge`: a model (the gateway tier named `tier`) is asked `question` about the answer and must reply
  yes or no; its token usage is returned so its cost can be counted.

`validate` runs every cheap validator (so all reasons are reported) and the judges last, only when
everything else passed: a judge costs money. The JSON helpers (`extract_json`, `schema_errors`) are
also used by the evaluation set's checker (`tokenomy.evalset.check`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from tokenomy.tokenizer import count_chat_tokens, count_tokens

# Lower-case phrases that mark a refusal; curly apostrophes are straightened before matching.
REFUSAL_PHRASES: tuple[str, ...] = (
    "i can't help with",
    "i cannot help with",
    "i can't assist",
    "i cannot assist",
    "i can't provide",
    "i cannot provide",
    "i can't comply",
    "i cannot comply",
    "i can't do that",
    "i cannot do that",
    "i won't be able to",
    "i'm unable to",
    "i am unable to",
    "i'm not able to",
    "i am not able to",
    "i must decline",
    "i'm sorry, but",
    "i am sorry, but",
    "unfortunately, i can't",
    "unfortunately, i cannot",
    "as an ai language model",
    "against my guidelines",
    "i'm not comfortable",
)
# An answer this short that contains a refusal phrase anywhere is a refusal ...
SHORT_ANSWER_CHARS = 400
# ... a longer one only when the phrase comes this early (a long answer may quote "I can't" in passing).
REFUSAL_LEAD_CHARS = 200

JUDGE_SYSTEM_PROMPT = (
    "You check answers written by another assistant. Reply with exactly one word: yes or no. No explanation."
)
PYTHON_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)```", re.DOTALL)


# --- config form ---------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class JsonSchemaValidator(_Strict):
    """The answer holds JSON matching a JSON Schema."""

    kind: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        return schema


class RegexValidator(_Strict):
    """The answer matches a regular expression (Python `re` syntax)."""

    kind: Literal["regex"]
    pattern: str
    mode: Literal["search", "fullmatch"] = "search"
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern


class LengthValidator(_Strict):
    """The answer's length lies within bounds, in tokens and/or characters (inclusive)."""

    kind: Literal["length"]
    min_tokens: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> LengthValidator:
        bounds = (self.min_tokens, self.max_tokens, self.min_chars, self.max_chars)
        if all(b is None for b in bounds):
            raise ValueError("give at least one of min_tokens, max_tokens, min_chars, max_chars")
        for unit in ("tokens", "chars"):
            low, high = getattr(self, f"min_{unit}"), getattr(self, f"max_{unit}")
            if low is not None and high is not None and low > high:
                raise ValueError(f"min_{unit} ({low}) is larger than max_{unit} ({high})")
        return self


class RefusalValidator(_Strict):
    """The answer is not empty and not a refusal."""

    kind: Literal["refusal"]
    extra_phrases: list[str] = []  # added to REFUSAL_PHRASES (matched case-insensitively)
    short_answer_chars: int = Field(SHORT_ANSWER_CHARS, ge=0)


class PythonValidator(_Strict):
    """A Python function decides: target "package.module:function", called as function(answer_text, request)."""

    kind: Literal["python"]
    target: str

    @field_validator("target")
    @classmethod
    def _importable(cls, target: str) -> str:
        if not PYTHON_TARGET.match(target):
            raise ValueError(f"expected 'package.module:function', got '{target}'")
        load_callable(target)  # fail at config time, not on the first request
        return target


class JudgeValidator(_Strict):
    """A model (gateway tier `tier`) is asked a yes/no `question` about the answer; yes passes."""

    kind: Literal["judge"]
    tier: str = Field(min_length=1)
    question: str = Field(min_length=1)  # e.g. "Does the answer address the user's question?"
    max_tokens: int = Field(8, gt=0)  # of the judge's reply


ValidatorConfig = Annotated[
    JsonSchemaValidator | RegexValidator | LengthValidator | RefusalValidator | PythonValidator | JudgeValidator,
    Field(discriminator="kind"),
]
_VALIDATOR_LIST = TypeAdapter(list[ValidatorConfig])
_KIND_NAMES = {"json_schema", "regex", "length", "refusal", "python", "judge"}


class ValidatorConfigError(ValueError):
    """A validators list that cannot be used; the message names the entry and the field."""


def parse_validators(raw: object) -> list[ValidatorConfig]:
    """Validator configs from their parsed YAML/JSON form (a list of mappings with a `kind`)."""
    try:
        return _VALIDATOR_LIST.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"] if p not in _KIND_NAMES]  # drop pydantic's union-member tag
        where = f"validators[{loc[0]}]" + "".join(f".{p}" for p in loc[1:]) if loc else "validators"
        message = err["msg"].removeprefix("Value error, ")
        raise ValidatorConfigError(f"{where}: {message}") from exc


# --- results -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeUsage:
    """Tokens one judge call used, to be priced at the judge tier's rates."""

    tier: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it failed, one per failing validator
    judge_usage: list[JudgeUsage] = field(default_factory=list)


# A judge call: (tier name, OpenAI chat-completions body without "model") -> the upstream's JSON response.
JudgeCall = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


# --- shared helpers (also used by tokenomy.evalset.check) -----------------------------------------------


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of every ``` fenced block in `text`, in order; the tag is "" when none."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def extract_json(text: str) -> Any:
    """The JSON value in an answer: the whole text, else a ``` fenced block, else the first object (or array)
    embedded in prose. Raises ValueError when there is none."""
    try:
        return json.loads(text.strip())
    except json.JSONDecodeError:
        pass
    blocks = fenced_blocks(text)
    json_first = sorted(blocks, key=lambda block: block[0] != "json")  # stable: ```json blocks first
    for _, body in json_first:
        try:
            return json.loads(body.strip())
        except json.JSONDecodeError:
            continue
    found_array = None
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch in "{["):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
        if found_array is None:
            found_array = value
    if found_array is not None:
        return found_array
    raise ValueError("no JSON found in the answer")


def schema_errors(instance: Any, schema: dict[str, Any], max_errors: int = 3) -> list[str]:
    """Why `instance` does not match `schema` ("at $.path: message"); empty when it matches."""
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"at {e.json_path}: {e.message}" for e in errors[:max_errors]]


def last_user_text(request: dict[str, Any]) -> str:
    """The text of the request's last user message (chat) or its prompt (completions)."""
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    prompt = request.get("prompt", "")
    return prompt if isinstance(prompt, str) else ""


# --- one function per kind; each returns None when the answer passes, else the reason ---------------------


def check_json_schema(answer_text: str, config: JsonSchemaValidator) -> str | None:
    """None when the answer holds JSON matching the schema, else why not."""
    try:
        value = extract_json(answer_text)
    except ValueError as exc:
        return f"json_schema: {exc}"
    errors = schema_errors(value, config.json_schema)
    return f"json_schema: {'; '.join(errors)}" if errors else None


def check_regex(answer_text: str, config: RegexValidator) -> str | None:
    """None when the pattern is found (search) or matches the whole stripped answer (fullmatch)."""
    flags = re.IGNORECASE if config.ignore_case else 0
    if config.mode == "fullmatch":
        matched = re.fullmatch(config.pattern, answer_text.strip(), flags)
    else:
        matched = re.search(config.pattern, answer_text, flags)
    return None if matched else f"regex: answer does not {config.mode} /{config.pattern}/"


def check_length(answer_text: str, config: LengthValidator) -> str | None:
    """None when the answer's token and character counts lie within the configured bounds."""
    problems = []
    if config.min_tokens is not None or config.max_tokens is not None:
        n_tokens = count_tokens(answer_text)
        problems += _out_of_bounds(n_tokens, config.min_tokens, config.max_tokens, "tokens")
    n_chars = len(answer_text)
    problems += _out_of_bounds(n_chars, config.min_chars, config.max_chars, "characters")
    return f"length: {'; '.join(problems)}" if problems else None


def _out_of_bounds(value: int, low: int | None, high: int | None, unit: str) -> list[str]:
    if low is not None and value < low:
        return [f"{value} {unit} < minimum {low}"]
    if high is not None and value > high:
        return [f"{value} {unit} > maximum {high}"]
    return []


def refusal_reason(answer_text: str, extra_phrases: list[str], short_answer_chars: int) -> str | None:
    """Why the answer is empty or a refusal: a phrase anywhere in a short answer or in the lead of a long one."""
    text = answer_text.strip().lower().replace("\u2019", "'")
    if not text:
        return "refusal: empty answer"
    phrases = REFUSAL_PHRASES + tuple(p.lower().replace("\u2019", "'") for p in extra_phrases)
    searched = text if len(text) <= short_answer_chars else text[:REFUSAL_LEAD_CHARS]
    for phrase in phrases:
        if phrase in searched:
            return f"refusal: answer contains '{phrase}'"
    return None


def check_refusal(answer_text: str, config: RefusalValidator) -> str | None:
    """None when the answer is neither empty nor a refusal."""
    return refusal_reason(answer_text, config.extra_phrases, config.short_answer_chars)


@cache
def load_callable(target: str) -> Callable[..., Any]:
    """The function named by "package.module:function" (imported once)."""
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module '{module_name}': {exc}") from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"module '{module_name}' has no function '{function_name}'")
    return function


async def check_python(answer_text: str, request: dict[str, Any], config: PythonValidator) -> str | None:
    """None when the target function returns True (or (True, reason)); an exception fails the answer."""
    try:
        result = load_callable(config.target)(answer_text, request)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # a user function's bug fails this answer, not the gateway
        return f"python: {config.target} raised {type(exc).__name__}: {exc}"
    passed, reason = result if isinstance(result, tuple) else (result, "")
    if passed:
        return None
    return f"python: {config.target} rejected the answer" + (f": {reason}" if reason else "")


def judge_request_body(answer_text: str, request: dict[str, Any], config: JudgeValidator) -> dict[str, Any]:
    """The chat-completions body sent to the judge tier (the gateway adds "model")."""
    user = (
        f"Question: {config.question}\n\n"
        f"The user asked:\n<request>\n{last_user_text(request)}\n</request>\n\n"
        f"The assistant answered:\n<answer>\n{answer_text}\n</answer>\n\n"
        f"{config.question} Reply yes or no."
    )
    return {
        "messages": [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}],
        "max_tokens": config.max_tokens,
        "temperature": 0,
        "stream": False,
    }


def parse_judge_reply(reply_text: str) -> bool | None:
    """True for yes, False for no (first word, case and punctuation ignored), None when it is neither."""
    words = re.findall(r"[a-z]+", reply_text.lower())
    first = words[0] if words else ""
    return {"yes": True, "no": False}.get(first)


def judge_usage(tier: str, body: dict[str, Any], response: dict[str, Any], reply_text: str) -> JudgeUsage:
    """Tokens of one judge call: the upstream's `usage`, else counted with the bundled tokenizer."""
    usage = response.get("usage") or {}
    prompt_tokens = usage.get("prompt_tokens")
    completion_tokens = usage.get("completion_tokens")
    if prompt_tokens is None:
        prompt_tokens = count_chat_tokens(body["messages"])
    if completion_tokens is None:
        completion_tokens = count_tokens(reply_text)
    return JudgeUsage(tier, int(prompt_tokens), int(completion_tokens))


async def check_judge(
    answer_text: str, request: dict[str, Any], config: JudgeValidator, judge: JudgeCall
) -> tuple[str | None, JudgeUsage]:
    """Ask the judge tier; (None, usage) when it says yes, else (reason, usage). Errors of the call propagate."""
    body = judge_request_body(answer_text, request, config)
    response = await judge(config.tier, body)
    choices = response.get("choices") or [{}]
    reply_text = str((choices[0].get("message") or {}).get("content") or "")
    usage = judge_usage(config.tier, body, response, reply_text)
    said_yes = parse_judge_reply(reply_text)
    if said_yes is None:
        return f"judge {config.tier}: reply is not yes or no: {reply_text[:80]!r}", usage
    return (None if said_yes else f"judge {config.tier}: no to '{config.question}'"), usage


# --- all validators of a route ---------------------------------------------------------------------------


async def validate(
    answer_text: str,
    request: dict[str, Any],
    validators: list[ValidatorConfig],
    judge: JudgeCall | None = None,
) -> Verdict:
    """Run a route's validators on an answer: every cheap one, then the judges only if all of those passed."""
    reasons: list[str | None] = []
    for config in validators:
        if config.kind == "json_schema":
            reasons.append(check_json_schema(answer_text, config))
        elif config.kind == "regex":
            reasons.append(check_regex(answer_text, config))
        elif config.kind == "length":
            reasons.append(check_length(answer_text, config))
        elif config.kind == "refusal":
            reasons.append(check_refusal(answer_text, config))
        elif config.kind == "python":
            reasons.append(await check_python(answer_text, request, config))
    failed = [r for r in reasons if r is not None]
    judges = [config for config in validators if config.kind == "judge"]
    if judges and judge is None:
        raise ValueError(f"a judge validator (tier '{judges[0].tier}') needs a judge call; none was given")
    usages: list[JudgeUsage] = []
    for config in judges:
        if failed:
            break  # a judge costs money: ask only while everything else has passed
        reason, usage = await check_judge(answer_text, request, config, judge)
        usages.append(usage)
        if reason is not None:
            failed.append(reason)
    return Verdict(passed=not failed, reasons=failed, judge_usage=usages)
