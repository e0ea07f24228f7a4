"""The OpenAI wire format the twin speaks: request validation, error bodies, SSE chunks and JSON responses.

Streaming follows OpenAI and vLLM: one `data: {...}` event per step's tokens, a chat stream opens with an
empty assistant delta, a closing chunk carries `finish_reason`, a usage chunk (empty `choices`) follows when
`stream_options.include_usage` is true, and `data: [DONE]` ends the stream.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tokenomy.tokenizer import CHAT_TOKENS_PER_MESSAGE, CHAT_TOKENS_PER_REPLY, chat_content_ids, token_ids

CHAT = "chat"
COMPLETION = "completion"
LONG_PROMPT_CHARS = 64_000  # prompts longer than this (~2 ms to count) are counted off the event loop
DONE_EVENT = b"data: [DONE]\n\n"


class ApiError(Exception):
    """An OpenAI-style error: HTTP status and the `error` object of the body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param

    def body(self) -> dict[str, Any]:
        code = {404: "model_not_found", 503: "service_unavailable", 500: "internal_error"}.get(self.status)
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": code}}


@dataclass
class CompletionRequest:
    """What the twin needs from a /v1/chat/completions or /v1/completions body."""

    kind: str
    model: str
    body: dict[str, Any]
    max_tokens: int | None
    stream: bool
    include_usage: bool
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str = "length"
    prefix_ids: tuple[int, ...] = ()
    pieces: list[str] | None = None  # the output text's token pieces when not filler (evaluation-set answers)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or a 400."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"'{name}' must be an integer, got {json.dumps(value)}", param=name)
    if value < 1:
        raise ApiError(400, f"'{name}' must be at least 1, got {value}", param=name)
    return value


def parse_request(body: dict[str, Any], kind: str, served_model_name: str) -> CompletionRequest:
    """Validate the fields the twin uses (others, e.g. temperature or ignore_eos, are accepted and ignored)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required", param="model")
    if model != served_model_name:
        raise ApiError(
            404, f"The model `{model}` does not exist. This server serves `{served_model_name}`.", param="model"
        )
    if kind == CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list", param="messages")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise ApiError(400, "each message must be an object with a 'role'", param="messages")
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
            prompt = prompt[0]
        token_ids = isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
        if not isinstance(prompt, str) and not token_ids:
            raise ApiError(400, "'prompt' must be a string, a list of token ids, or a list of one of these", "prompt")
        body["prompt"] = prompt
    n = body.get("n", 1)
    if n != 1:
        raise ApiError(400, "the twin serves n=1 only", param="n")
    max_tokens = _int_field(body, "max_completion_tokens") if kind == CHAT else None
    if max_tokens is None:
        max_tokens = _int_field(body, "max_tokens")
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage", False))
    return CompletionRequest(kind, model, body, max_tokens, stream, include_usage)


def prompt_chars(req: CompletionRequest) -> int:
    """Rough size of the prompt text (to decide whether to count it off the event loop)."""
    if req.kind == CHAT:
        return sum(len(str(m.get("content") or "")) for m in req.body["messages"])
    prompt = req.body["prompt"]
    return len(prompt) if isinstance(prompt, str) else 0


def prompt_tokens_and_prefix(req: CompletionRequest, block_tokens: int) -> tuple[int, tuple[int, ...]]:
    """Prompt tokens by the bundled tokenizer (a list of token ids counts as its length), and the ids of its
    full `block_tokens`-token blocks for the prefix cache (each id hashes all tokens up to its block's end)."""
    if req.kind == CHAT:
        messages = req.body["messages"]
        ids = chat_content_ids(messages)
        count = len(ids) + CHAT_TOKENS_PER_MESSAGE * len(messages) + CHAT_TOKENS_PER_REPLY
    else:
        prompt = req.body["prompt"]
        ids = prompt if isinstance(prompt, list) else token_ids(prompt)
        count = len(ids)
    return count, prefix_block_ids(ids, block_tokens)


def count_prompt_tokens(req: CompletionRequest) -> int:
    """Prompt tokens by the bundled tokenizer (a list of token ids counts as its length)."""
    return prompt_tokens_and_prefix(req, 0)[0]


def prefix_block_ids(ids: list[int], block_tokens: int) -> tuple[int, ...]:
    """Chained hashes of the full blocks of `ids`: equal prompts share ids up to where they differ."""
    if block_tokens <= 0:
        return ()
    out, h = [], 0
    for start in range(0, len(ids) - block_tokens + 1, block_tokens):
        h = hash((h, tuple(ids[start : start + block_tokens])))
        out.append(h)
    return tuple(out)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@lru_cache(maxsize=65536)
def json_string(text: str) -> bytes:
    """JSON encoding of a string (filler pieces repeat, so this is cached)."""
    return json.dumps(text).encode()


class ChunkWriter:
    """Pre-encoded SSE events of one streaming response: only the token text changes per chunk."""

    def __init__(self, req: CompletionRequest, created_s: int | None = None):
        self.req = req
        created = int(time.time()) if created_s is None else created_s
        chat = req.kind == CHAT
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = f'{{"id":"{self.id}","object":"{obj}","created":{created},"model":{json.dumps(req.model)},'
        self.head = head.encode()
        if chat:
            self.token_prefix = b"data: " + self.head + b'"choices":[{"index":0,"delta":{"content":'
            self.token_suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self.token_prefix = b"data: " + self.head + b'"choices":[{"index":0,"text":'
            self.token_suffix = b',"logprobs":null,"finish_reason":null}]}\n\n'

    def opening(self) -> bytes:
        """The chat stream's first event (role, empty content); nothing for completions."""
        if self.req.kind != CHAT:
            return b""
        choice = b'{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}'
        return b"data: " + self.head + b'"choices":[' + choice + b"]}\n\n"

    def tokens(self, text: str) -> bytes:
        """One event carrying `text` (one step's tokens)."""
        return self.token_prefix + json_string(text) + self.token_suffix

    def closing(self, completion_tokens: int) -> bytes:
        """finish_reason event, usage event if asked, and [DONE]."""
        reason = self.req.finish_reason
        if self.req.kind == CHAT:
            choice = f'{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{reason}"}}'
        else:
            choice = f'{{"index":0,"text":"","logprobs":null,"finish_reason":"{reason}"}}'
        out = b"data: " + self.head + f'"choices":[{choice}]}}\n\n'.encode()
        if self.req.include_usage:
            used = json.dumps(usage(self.req.prompt_tokens, completion_tokens))
            out += b"data: " + self.head + f'"choices":[],"usage":{used}}}\n\n'.encode()
        return out + DONE_EVENT


def full_response(req: CompletionRequest, text: str, completion_tokens: int) -> dict[str, Any]:
    """The non-streaming response body."""
    created = int(time.time())
    if req.kind == CHAT:
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": req.finish_reason,
                }
            ],
            "usage": usage(req.prompt_tokens, completion_tokens),
        }
    return {
        "id": "cmpl-" + uuid.uuid4().hex,
        "object": "text_completion",
        "created": created,
        "model": req.model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": req.finish_reason}],
        "usage": usage(req.prompt_tokens, completion_tokens),
    }
