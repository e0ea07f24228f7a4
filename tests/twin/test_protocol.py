"""The twin's OpenAI wire format: validation errors and the SSE events it writes."""

from __future__ import annotations

import json

import pytest

from tokenomy.twin.protocol import (
    CHAT,
    COMPLETION,
    ApiError,
    ChunkWriter,
    count_prompt_tokens,
    parse_body,
    parse_request,
)

MODEL = "m-8b"


def chat(**fields: object) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "'model' is required"),
        ({"model": "other", "messages": [{"role": "user", "content": "x"}]}, 404, "does not exist"),
        ({"model": MODEL}, 400, "'messages'"),
        ({"model": MODEL, "messages": []}, 400, "'messages'"),
        ({"model": MODEL, "messages": ["hi"]}, 400, "'role'"),
        (chat(max_tokens=-3), 400, "at least 1"),
        (chat(max_tokens=0), 400, "at least 1"),
        (chat(max_tokens="10"), 400, "integer"),
        (chat(max_tokens=True), 400, "integer"),
        (chat(n=2), 400, "n=1"),
    ],
)
def test_bad_chat_requests_are_openai_errors(body: dict, status: int, words: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_request(body, CHAT, MODEL)
    assert info.value.status == status
    error = info.value.body()["error"]
    assert words in error["message"]
    assert error["type"] == "invalid_request_error"


def test_invalid_json_is_a_400() -> None:
    for raw in (b"{bad", b"[1, 2]", b"\xff"):
        with pytest.raises(ApiError) as info:
            parse_body(raw)
        assert info.value.status == 400


def test_max_completion_tokens_wins_and_unknown_fields_are_ignored() -> None:
    req = parse_request(chat(max_tokens=5, max_completion_tokens=9, ignore_eos=True, temperature=0), CHAT, MODEL)
    assert req.max_tokens == 9
    assert parse_request(chat(), CHAT, MODEL).max_tokens is None
    req = parse_request(chat(stream=True, stream_options={"include_usage": True}), CHAT, MODEL)
    assert req.stream and req.include_usage
    assert not parse_request(chat(stream_options={"include_usage": True}), CHAT, MODEL).include_usage


def test_completion_prompts_text_or_token_ids() -> None:
    req = parse_request({"model": MODEL, "prompt": "Hello, world!"}, COMPLETION, MODEL)
    assert count_prompt_tokens(req) == 4
    req = parse_request({"model": MODEL, "prompt": [[1, 2, 3, 4, 5]]}, COMPLETION, MODEL)
    assert count_prompt_tokens(req) == 5
    with pytest.raises(ApiError):
        parse_request({"model": MODEL, "prompt": ["a", "b"]}, COMPLETION, MODEL)
    with pytest.raises(ApiError):
        parse_request({"model": MODEL}, COMPLETION, MODEL)


def events(data: bytes) -> list[dict | str]:
    """Parse SSE bytes into JSON objects (and the [DONE] marker)."""
    out: list[dict | str] = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: ")
        payload = block[len("data: ") :]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_chat_chunks_follow_openai() -> None:
    req = parse_request(chat(stream=True, stream_options={"include_usage": True}, max_tokens=2), CHAT, MODEL)
    req.prompt_tokens = 12
    w = ChunkWriter(req, created_s=123)
    opening, first, second, closing = events(w.opening() + w.tokens(' a"b') + w.tokens(" c") + w.closing(2))[:4]
    assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["object"] == "chat.completion.chunk" and first["created"] == 123 and first["model"] == MODEL
    assert first["choices"][0]["delta"]["content"] == ' a"b'
    assert second["id"] == first["id"] == opening["id"]
    assert closing["choices"][0]["finish_reason"] == "length" and closing["choices"][0]["delta"] == {}
    tail = events(w.closing(2))
    assert tail[1]["choices"] == [] and tail[1]["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 2,
        "total_tokens": 14,
    }
    assert tail[-1] == "[DONE]"


def test_completion_chunks_carry_text_and_no_usage_unless_asked() -> None:
    req = parse_request({"model": MODEL, "prompt": "x", "stream": True}, COMPLETION, MODEL)
    w = ChunkWriter(req)
    assert w.opening() == b""
    (token,) = events(w.tokens(" word"))
    assert token["object"] == "text_completion" and token["choices"][0]["text"] == " word"
    tail = events(w.closing(1))
    assert len(tail) == 2 and tail[0]["choices"][0]["finish_reason"] == "length" and tail[1] == "[DONE]"
