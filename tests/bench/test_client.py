"""SSE parsing and one streamed request against scripted servers: chunks, usage, multi-token chunks, failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator

import pytest

from tokenomy.bench.client import (
    Endpoint,
    RequestRecord,
    SseError,
    chunk_content,
    new_pool,
    normalise_base_url,
    parse_events,
    stream_request,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1/",
        "http://127.0.0.1:8000/v1/chat/completions",
    ],
)
def test_base_url_accepts_with_and_without_v1(url: str) -> None:
    assert normalise_base_url(url) == "http://127.0.0.1:8000/v1"


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        normalise_base_url("127.0.0.1:8000")


def test_payload_asks_for_exact_length_and_usage() -> None:
    body = Endpoint("http://h/v1", "m", "chat").payload("hi", 7)
    assert body["max_tokens"] == 7 and body["ignore_eos"] is True and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert Endpoint("http://h/v1", "m", "completions").payload("hi", 7)["prompt"] == "hi"
    assert Endpoint("http://h/v1", "m", "completions").url == "http://h/v1/completions"


def test_chunk_content_reads_chat_completion_and_usage_chunks() -> None:
    assert chunk_content({"choices": [{"delta": {"content": "ab"}, "finish_reason": None}]}, "chat") == ("ab", None)
    assert chunk_content({"choices": [{"delta": {"role": "assistant"}}]}, "chat") == ("", None)
    assert chunk_content({"choices": [{"text": "x", "finish_reason": "length"}]}, "completions") == ("x", "length")
    assert chunk_content({"choices": [], "usage": {"completion_tokens": 3}}, "chat") == ("", None)
    with pytest.raises(SseError):
        chunk_content({"id": "no choices"}, "chat")


# ---------------------------------------------------------------- a scripted server


def chat_chunk(text: str, usage: dict | None = None, finish: str | None = None) -> str:
    obj = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}], "usage": usage}
    return "data: " + json.dumps(obj) + "\n\n"


def usage_chunk(prompt: int, completion: int) -> str:
    return "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}})


Script = list[tuple[float, str]]  # (seconds to wait, text to write)


@contextlib.asynccontextmanager
async def scripted_server(script: Script, status: int = 200) -> AsyncIterator[str]:
    """An HTTP server that answers every request with `script`, then closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n".encode())
        for wait_s, text in script:
            await asyncio.sleep(wait_s)
            writer.write(text.encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()


def run_scripted(script: Script, status: int = 200, timeout_s: float = 5.0) -> RequestRecord:
    async def go() -> RequestRecord:
        async with scripted_server(script, status) as url:
            endpoint = Endpoint(url, "m")
            pool = new_pool(endpoint, timeout_s)
            try:
                return await stream_request(pool, endpoint, RequestRecord(0, 0.0, 10, 5), "prompt", time.perf_counter())
            finally:
                pool.close()

    return asyncio.run(go())


def test_a_clean_stream_records_every_chunk_and_the_usage() -> None:
    script = [(0.0, chat_chunk(""))] + [(0.01, chat_chunk(f" w{i}")) for i in range(5)]
    script += [(0.0, usage_chunk(10, 5) + "\n\n"), (0.0, "data: [DONE]\n\n")]
    rec = run_scripted(script)
    assert rec.ok and rec.error is None
    assert rec.chunk_text == [f" w{i}" for i in range(5)]
    assert (rec.prompt_tokens, rec.completion_tokens) == (10, 5)
    assert rec.first_token_s == rec.chunk_s[0] and rec.end_s == rec.chunk_s[-1]
    assert rec.end_s - rec.first_token_s >= 0.035  # four gaps of ~10 ms


def test_comments_other_fields_crlf_and_events_split_across_reads_are_handled() -> None:
    event = chat_chunk(" split").replace("\n\n", "\r\n\r\n")
    script = [(0.0, ": keep-alive\r\n\r\nevent: message\r\nid: 1\r\n"), (0.0, event[:9]), (0.01, event[9:])]
    rec = run_scripted(script + [(0.0, "data: [DONE]\r\n\r\n")])
    assert rec.ok and rec.chunk_text == [" split"]


def test_per_chunk_usage_is_kept_for_multi_token_chunks() -> None:
    script = [
        (0.0, chat_chunk(" a b", {"prompt_tokens": 3, "completion_tokens": 2})),
        (0.01, chat_chunk(" c", {"prompt_tokens": 3, "completion_tokens": 3})),
    ]
    rec = run_scripted(script + [(0.0, "data: [DONE]\n\n")])
    assert rec.chunk_usage == [2, 3]


@pytest.mark.parametrize(
    ("script", "status", "kind"),
    [
        ([(0.0, chat_chunk(" a")), (0.0, "data: {not json\n\n")], 200, "bad_chunk"),
        ([(0.0, chat_chunk(" a")), (0.0, 'data: {"error": {"message": "boom"}}\n\n')], 200, "stream_error"),
        ([(0.0, chat_chunk(" a")), (0.0, chat_chunk(" b"))], 200, "stream_cut"),  # closed without [DONE]
        ([(0.0, '{"error": {"message": "overloaded"}}')], 503, "http"),
        ([(0.0, chat_chunk(" a")), (1.0, chat_chunk(" b"))], 200, "timeout"),
    ],
)
def test_failures_are_classified_by_kind(script: Script, status: int, kind: str) -> None:
    rec = run_scripted(script, status, timeout_s=0.3)
    assert rec.error == kind and not rec.ok
    if kind == "http":
        assert rec.http_status == 503 and "overloaded" in rec.error_detail


def test_a_finish_reason_without_done_is_a_complete_stream() -> None:
    rec = run_scripted([(0.0, chat_chunk(" a")), (0.0, chat_chunk(" b", finish="length"))])
    assert rec.ok and rec.finish_reason == "length"


def test_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused

        async def go() -> RequestRecord:
            endpoint = Endpoint(f"http://127.0.0.1:{port}/v1", "m")
            rec = RequestRecord(0, 0.0, 10, 5)
            return await stream_request(new_pool(endpoint, 2.0), endpoint, rec, "p", time.perf_counter())

        rec = asyncio.run(go())
    assert rec.error == "connect"


def test_events_of_one_read_are_parsed_together_and_a_broken_one_is_named() -> None:
    datas = [json.dumps({"choices": [{"text": f" w{i}"}]}).encode() for i in range(5)]
    assert parse_events(datas) == [json.loads(d) for d in datas]
    with pytest.raises(ValueError, match="not json"):
        parse_events([datas[0], b"{not json}", datas[1]])
    # two broken halves that would make a valid array together are still refused
    with pytest.raises(ValueError):
        parse_events([b'{"a": "x', b'y"}, {"c": 1}'])
