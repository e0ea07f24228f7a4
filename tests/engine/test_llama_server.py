"""The raw llama.cpp server speaks OpenAI's chat API: SSE streaming and token usage."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.engine.conftest import LlamaServer

pytestmark = pytest.mark.engine

MAX_TOKENS = 24
MESSAGES = [{"role": "user", "content": "Write a short poem about the sea."}]


def _request(server: LlamaServer, stream: bool) -> dict[str, Any]:
    return {
        "model": server.model,
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "min_tokens": MAX_TOKENS,  # llama-cpp-python's way to ignore EOS: exactly MAX_TOKENS come out
        "temperature": 0.0,
        "stream": stream,
        "stream_options": {"include_usage": True},
    }


def test_models_lists_the_served_model(llama_server: LlamaServer) -> None:
    body = httpx.get(f"{llama_server.base_url}/models", timeout=10).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [llama_server.model]


def test_chat_completion_reports_usage(llama_server: LlamaServer) -> None:
    response = httpx.post(f"{llama_server.base_url}/chat/completions", json=_request(llama_server, False), timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == llama_server.model
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] == "length"
    usage = body["usage"]
    # The prompt went through SmolLM2's ChatML template: the user text plus the role markers.
    assert 10 < usage["prompt_tokens"] < 60
    assert usage["completion_tokens"] == MAX_TOKENS
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_completion_streams_sse(llama_server: LlamaServer) -> None:
    events: list[str] = []
    with httpx.stream(
        "POST", f"{llama_server.base_url}/chat/completions", json=_request(llama_server, True), timeout=120
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line or line.startswith(":"):  # blank separators and SSE comments (keep-alive pings)
                continue
            assert line.startswith("data: "), f"not an SSE data line: {line!r}"
            events.append(line.removeprefix("data: "))

    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks, "no chunks before [DONE]"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert {c["model"] for c in chunks} == {llama_server.model}
    with_choices = [c for c in chunks if c.get("choices")]
    assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant"
    assert with_choices[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in with_choices[:-1])
    text_chunks = [c["choices"][0]["delta"]["content"] for c in with_choices if c["choices"][0]["delta"].get("content")]
    # One chunk per generated token, except where the detokenizer holds text back (a partial UTF-8 character or
    # a possible stop string) and sends it with the next token.
    assert MAX_TOKENS // 2 <= len(text_chunks) <= MAX_TOKENS
    assert "".join(text_chunks).strip()

    # llama-cpp-python ignores stream_options: its stream carries no usage, so a benchmark must count streamed
    # tokens on the client. Should a later version send usage, it must agree with the request.
    usages = [c["usage"] for c in chunks if c.get("usage")]
    if usages:
        assert usages[-1]["completion_tokens"] == MAX_TOKENS
