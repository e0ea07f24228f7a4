"""The request schema the gateway accepts: an allow-list of body fields, their types, and the normalised output cap.

A completion may generate at most `cap × sequences × prompts` tokens, where
- `cap` is the one output limit: the smaller of `max_tokens` and `max_completion_tokens` when both are given,
  the configured `limits.default_max_tokens` when neither is (or both are null). The upstream body gets exactly
  `cap` (in the field the client used; `max_tokens` when it used none), so what is reserved bounds what is made;
- `sequences` is `n` (and `best_of` on /v1/completions, which vLLM generates in full);
- `prompts` is the number of prompts in a /v1/completions batch (a list of strings or of token-id lists).

Prompt tokens are reserved at an upper bound that needs no tokenizer: the UTF-8 bytes of the whole request body
(every message part, tools, functions, response_format and the JSON syntax around them) plus
`FRAMING_TOKENS_PER_PART` per message or prompt and `TEMPLATE_TOKENS` for what a chat template adds (a system
preamble, tool instructions). A byte-level BPE token is at least one byte of text, a SentencePiece token with
byte fallback too, and any JSON encoding of a string takes at least its UTF-8 bytes, so the bound holds for
every tokenizer of that kind; it is loose (≈ 4 bytes a token in English) but it is settled at the upstream's
usage when the request ends.

A tier that declares `tokenizer: smollm2` (it serves a model with the bundled SmolLM2 tokenizer, tokenomy/
tokenizer.py) has a tighter bound when every tier a request may reach declares it: the tokens of the JSON text of
the messages (or prompts) and of tools / functions / response_format, with the same per-part and template
allowances (JSON text has at least the tokens of the strings in it); a request with non-text parts (images,
audio) keeps the byte bound.

Fields not in the allow-list are refused (400, `param` naming the field, the nearest allowed names
suggested), so nothing the gateway does not understand reaches an upstream: `api_base`, `base_url`,
`chat_template` (a whole template from the client) and engine switches such as `use_beam_search` included.
Allowed (besides `model`):

- /v1/chat/completions: messages, max_tokens, max_completion_tokens, n, stream, stream_options, temperature, top_p,
  frequency_penalty, presence_penalty, logit_bias, logprobs, top_logprobs, stop, seed, user, tools, tool_choice,
  parallel_tool_calls, response_format, functions, function_call, metadata, store, reasoning_effort,
  service_tier, top_k, min_p, repetition_penalty, min_tokens, and vLLM's extensions that cannot raise what is
  generated past the cap: ignore_eos, stop_token_ids, include_stop_str_in_output, skip_special_tokens,
  spaces_between_special_tokens, length_penalty, truncate_prompt_tokens, guided_json/regex/choice/grammar,
  chat_template_kwargs, add_generation_prompt, continue_final_message;
- /v1/completions: prompt, suffix, echo, best_of and the same sampling fields (logprobs is an integer there);
- /v1/embeddings: input, encoding_format, dimensions, user.

`stream` must be a JSON boolean (or null): vLLM reads `1` or `"yes"` as true and would stream to a gateway that
expects JSON, so both are refused with a 400 rather than guessed.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

CHAT_PATH, COMPLETIONS_PATH, EMBEDDINGS_PATH = "/chat/completions", "/completions", "/embeddings"
FRAMING_TOKENS_PER_PART = 16  # chat-template tokens around one message (or BOS/EOS around one prompt), at most
TEMPLATE_TOKENS = 256  # what a chat template may add once: a default system preamble, tool-use instructions

NUMBER, INT, BOOL, STR, LIST, DICT = "number", "integer", "boolean", "string", "array", "object"

_SAMPLING = {
    "model": (STR,),
    "max_tokens": (INT,),
    "n": (INT,),
    "stream": (BOOL,),
    "stream_options": (DICT,),
    "temperature": (NUMBER,),
    "top_p": (NUMBER,),
    "frequency_penalty": (NUMBER,),
    "presence_penalty": (NUMBER,),
    "logit_bias": (DICT,),
    "stop": (STR, LIST),
    "seed": (INT,),
    "user": (STR,),
    "top_k": (INT,),
    "min_p": (NUMBER,),
    "repetition_penalty": (NUMBER,),
    "min_tokens": (INT,),
    # vLLM / SGLang sampling extensions (vLLM docs, "Extra parameters"): none raises what may be generated past the
    # cap the gateway writes, and load tools (tokenomy bench included) send ignore_eos to fix output lengths.
    "ignore_eos": (BOOL,),
    "stop_token_ids": (LIST,),
    "include_stop_str_in_output": (BOOL,),
    "skip_special_tokens": (BOOL,),
    "spaces_between_special_tokens": (BOOL,),
    "length_penalty": (NUMBER,),
    "truncate_prompt_tokens": (INT,),
    "guided_json": (STR, DICT),
    "guided_regex": (STR,),
    "guided_choice": (LIST,),
    "guided_grammar": (STR,),
}
FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    CHAT_PATH: {
        **_SAMPLING,
        "messages": (LIST,),
        "max_completion_tokens": (INT,),
        "logprobs": (BOOL,),
        "top_logprobs": (INT,),
        "tools": (LIST,),
        "tool_choice": (STR, DICT),
        "parallel_tool_calls": (BOOL,),
        "response_format": (DICT,),
        "functions": (LIST,),
        "function_call": (STR, DICT),
        "metadata": (DICT,),
        "store": (BOOL,),
        "reasoning_effort": (STR,),
        "service_tier": (STR,),
        "chat_template_kwargs": (DICT,),  # e.g. enable_thinking; the template allowance covers what it adds
        "add_generation_prompt": (BOOL,),
        "continue_final_message": (BOOL,),
    },
    COMPLETIONS_PATH: {
        **_SAMPLING,
        "prompt": (STR, LIST),
        "suffix": (STR,),
        "echo": (BOOL,),
        "best_of": (INT,),
        "logprobs": (INT,),
    },
    EMBEDDINGS_PATH: {
        "model": (STR,),
        "input": (STR, LIST),
        "encoding_format": (STR,),
        "dimensions": (INT,),
        "user": (STR,),
    },
}
_CHECKS = {
    NUMBER: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
    BOOL: lambda v: isinstance(v, bool),
    STR: lambda v: isinstance(v, str),
    LIST: lambda v: isinstance(v, list),
    DICT: lambda v: isinstance(v, dict),
}
MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# The exact types each kind accepts (what a JSON parser builds): one set lookup per field in check_fields, the
# _CHECKS functions only for a value of another type (to refuse it, or to accept a subclass as before).
_EXACT = {NUMBER: (int, float), INT: (int,), BOOL: (bool,), STR: (str,), LIST: (list,), DICT: (dict,)}
_TYPES = {
    path: {name: frozenset(t for k in kinds for t in _EXACT[k]) | {type(None)} for name, kinds in by_name.items()}
    for path, by_name in FIELDS.items()
}


class SchemaError(ValueError):
    """A request body the gateway refuses: a 400 naming the field (`param`)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param = param
        self.status = status


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~5×, and this is built per request
class Shape:
    """What a request may cost: its output cap per sequence, the tokens it may generate, its prompt-token bound."""

    cap: int  # max tokens per generated sequence, written upstream
    output_tokens: int  # cap × sequences × prompts: the most it may generate
    prompt_tokens: int  # an upper bound on its prompt tokens (see the module docstring)
    parts: int  # messages (chat), prompts (completions) or inputs (embeddings)


def _type_error(name: str, value: Any, kinds: tuple[str, ...]) -> SchemaError:
    got = "null" if value is None else type(value).__name__.replace("dict", "object").replace("list", "array")
    return SchemaError(f"'{name}' must be {' or '.join(kinds)}, got {got}", name)


def check_fields(body: dict[str, Any], path: str) -> None:
    """Refuse fields outside the path's allow-list and values of the wrong JSON type (null is allowed)."""
    allowed, types = FIELDS[path], _TYPES[path]
    for name, value in body.items():
        accepted = types.get(name)
        if accepted is not None and type(value) in accepted:
            continue
        kinds = allowed.get(name)
        if kinds is None:
            close = difflib.get_close_matches(str(name), list(allowed), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            shown = json.dumps(name)[:80]
            raise SchemaError(f"unknown field {shown} (this gateway forwards only the fields it knows{hint})", name)
        if value is not None and not any(_CHECKS[k](value) for k in kinds):
            raise _type_error(name, value, kinds)


def _positive(body: dict[str, Any], name: str, most: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if value < 1:
        raise SchemaError(f"'{name}' must be at least 1, got {value}", name)
    if value > most:
        raise SchemaError(f"'{name}' {value} exceeds this gateway's limit of {most}", name)
    return value


def _check_messages(messages: Any) -> int:
    if not isinstance(messages, list) or not messages:
        raise SchemaError("'messages' must be a non-empty list of message objects", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise SchemaError(f"'messages[{i}]' must be an object", f"messages[{i}]")
        role = m.get("role")
        if role not in MESSAGE_ROLES:
            raise SchemaError(f"'messages[{i}].role' must be one of {', '.join(MESSAGE_ROLES)}", f"messages[{i}].role")
        content = m.get("content")
        if content is not None and not isinstance(content, str | list):
            raise SchemaError(f"'messages[{i}].content' must be a string, a list of parts or null", f"messages[{i}]")
        if isinstance(content, list) and not all(isinstance(p, dict) for p in content):
            raise SchemaError(f"'messages[{i}].content' parts must be objects", f"messages[{i}].content")
    return len(messages)


def _count_batch(value: Any, name: str) -> int:
    """Prompts (or embedding inputs) in a string, a list of strings, a token-id list or a list of token-id lists."""
    if isinstance(value, str):
        return 1
    if not isinstance(value, list) or not value:
        raise SchemaError(f"'{name}' must be a string or a non-empty list", name)
    if all(isinstance(p, int) and not isinstance(p, bool) for p in value):
        return 1  # one prompt as token ids
    for p in value:
        ok = isinstance(p, str) or (
            isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
        )
        if not ok:
            raise SchemaError(f"'{name}' must be strings or lists of token ids", name)
    return len(value)


def shape(body: dict[str, Any], path: str, body_bytes: int, default_cap: int, max_cap: int, max_n: int) -> Shape:
    """Check a body against the schema and bound what it may cost (raises SchemaError)."""
    check_fields(body, path)
    if path == EMBEDDINGS_PATH:
        parts = _count_batch(body.get("input"), "input")
        return Shape(0, 0, body_bytes + FRAMING_TOKENS_PER_PART * parts, parts)
    if path == CHAT_PATH:
        parts = _check_messages(body.get("messages"))
        prompts = 1
        template = TEMPLATE_TOKENS
    else:
        parts = prompts = _count_batch(body.get("prompt"), "prompt")
        template = 0
    given = [
        c for c in (_positive(body, "max_tokens", max_cap), _positive(body, "max_completion_tokens", max_cap)) if c
    ]
    cap = min(given) if given else default_cap
    n = _positive(body, "n", max_n) or 1
    best_of = _positive(body, "best_of", max_n) or 1
    options = body.get("stream_options")
    if options is not None and not isinstance(options.get("include_usage", False), bool):
        raise SchemaError("'stream_options.include_usage' must be a boolean", "stream_options")
    sequences = max(n, best_of)
    return Shape(cap, cap * sequences * prompts, body_bytes + FRAMING_TOKENS_PER_PART * parts + template, parts)


TOKENIZERS = ("smollm2",)
TEXT_PART_TYPES = ("text", "input_text")


def tokenized_prompt_bound(body: dict[str, Any], path: str, parts: int) -> int | None:
    """The prompt bound with the bundled tokenizer (see the module docstring); None when it does not apply."""
    from tokenomy.tokenizer import count_tokens

    if path == CHAT_PATH:
        for m in body.get("messages") or []:
            content = m.get("content")
            if isinstance(content, list) and any(p.get("type", "text") not in TEXT_PART_TYPES for p in content):
                return None  # images, audio: their tokens are not text tokens
        texts = [json.dumps(body.get("messages"), ensure_ascii=False)]
        template = TEMPLATE_TOKENS
    else:
        field = "input" if path == EMBEDDINGS_PATH else "prompt"
        value = body.get(field)
        values = [value] if isinstance(value, str) or (value and isinstance(value[0], int)) else value or []
        ids = sum(len(v) for v in values if isinstance(v, list))
        texts = [v for v in values if isinstance(v, str)]
        return ids + sum(count_tokens(t) for t in texts) + FRAMING_TOKENS_PER_PART * parts
    extra = [json.dumps(body[f], ensure_ascii=False) for f in ("tools", "functions", "response_format") if body.get(f)]
    return sum(count_tokens(t) for t in texts + extra) + FRAMING_TOKENS_PER_PART * parts + template


def upstream_fields(body: dict[str, Any], model: str, cap: int, stream: bool) -> dict[str, Any]:
    """The body an upstream gets: the client's allowed fields, its model, exactly `cap` as the output limit (in the
    field the client used, `max_tokens` if none), `stream` only when true, with usage asked for."""
    out = dict(body)
    out["model"] = model
    used = [f for f in ("max_tokens", "max_completion_tokens") if out.get(f) is not None]
    for f in ("max_tokens", "max_completion_tokens"):
        out.pop(f, None)
    for f in used or ["max_tokens"]:
        out[f] = cap
    if stream:
        out["stream"] = True
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        out.pop("stream", None)
        out.pop("stream_options", None)
    return out
