"""A worst-case OpenAI-compatible upstream for gateway tests: it generates everything a request lets it.

Unlike the twin (one sequence, vLLM's reading of max_tokens), this stub bills the most a request body
allows any engine to bill: output = the larger of max_tokens / max_completion_tokens (UNCAPPED_TOKENS
when neither is given) × max(n, best_of) × prompts in a batch; prompt = the UTF-8 bytes of every string in
the messages, prompt, input, tools, functions and response_format (one token per byte, the most a byte-level
BPE tokenizer can give). `StubState` changes its behaviour (modes, delays) and records what it received.
Served by uvicorn on a thread, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

UNCAPPED_TOKENS = 4096  # what an engine may generate when the request sets no limit


@dataclass
class StubState:
    mode: str = "ok"  # ok | no_usage | over_usage | http500 | redirect | not_json
    delay_s: float = 0.0  # before answering (a disconnect in the meantime is counted)
    models_status: int = 200  # what GET /v1/models answers (health probes)
    usage_details: dict[str, Any] = field(default_factory=dict)  # added to usage (prompt_tokens_details, …)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    disconnects: int = 0
    requests: int = 0


def _string_bytes(value: Any) -> int:
    """UTF-8 bytes of every string (keys included) and one per integer in a JSON value."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return 0
    if isinstance(value, int):
        return 1
    if isinstance(value, list):
        return sum(_string_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_string_bytes(k) + _string_bytes(v) for k, v in value.items())
    return 0


def worst_usage(body: dict[str, Any], path: str) -> dict[str, int]:
    """The most tokens any engine could bill for this body (see the module docstring)."""
    prompt = sum(_string_bytes(body.get(f)) for f in ("messages", "prompt", "input", "tools", "functions"))
    prompt += _string_bytes(body.get("response_format"))
    if path.endswith("/embeddings"):
        return {"prompt_tokens": prompt, "total_tokens": prompt}
    caps = [v for v in (body.get("max_tokens"), body.get("max_completion_tokens")) if isinstance(v, int)]
    per_sequence = max(caps) if caps else UNCAPPED_TOKENS
    sequences = max(body.get("n") or 1, body.get("best_of") or 1)
    raw = body.get("prompt")
    prompts = len(raw) if isinstance(raw, list) and raw and not isinstance(raw[0], int) else 1
    completion = per_sequence * sequences * prompts
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Stub:
    """The ASGI app."""

    def __init__(self, state: StubState):
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        state = self.state
        path = scope["path"]
        if scope["method"] == "GET":
            body = {"object": "list", "data": [{"id": "stub", "object": "model"}]}
            await _json(send, state.models_status, body)
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw)
        state.requests += 1
        state.bodies.append(body)
        if state.delay_s:
            waiter = asyncio.ensure_future(receive())
            done, _ = await asyncio.wait({waiter}, timeout=state.delay_s)
            if done and waiter.result()["type"] == "http.disconnect":
                state.disconnects += 1
                return
            waiter.cancel()
        if state.mode == "http500":
            await _json(send, 500, {"error": {"message": "stub: failing on purpose", "type": "server_error"}})
            return
        if state.mode == "redirect":
            await send({"type": "http.response.start", "status": 307, "headers": [(b"location", b"http://x/")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if state.mode == "not_json":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"hello"})
            return
        usage = worst_usage(body, path)
        if state.mode == "over_usage":
            usage["completion_tokens"] = usage.get("completion_tokens", 0) * 2 + 10
        usage |= state.usage_details
        if path.endswith("/embeddings"):
            answer: dict[str, Any] = {"object": "list", "data": [{"object": "embedding", "embedding": [0.0, 1.0]}]}
        elif path.endswith("/chat/completions"):
            answer = {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"content": "four words of text"}}],
            }
        else:
            answer = {"object": "text_completion", "choices": [{"index": 0, "text": "four words of text"}]}
        answer |= {"id": "stub-1", "created": int(time.time()), "model": body.get("model")}
        if state.mode != "no_usage":
            answer["usage"] = usage
        if body.get("stream") is True:
            await _sse(send, answer, path, state.mode != "no_usage")
            return
        await _json(send, 200, answer)


async def _json(send: Any, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _sse(send: Any, answer: dict[str, Any], path: str, usage: bool) -> None:
    chat = path.endswith("/chat/completions")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for word in ("four ", "words ", "of ", "text"):
        choice = {"index": 0, "delta": {"content": word}} if chat else {"index": 0, "text": word}
        event = {"id": answer["id"], "object": "chunk", "choices": [choice]}
        await send(
            {"type": "http.response.body", "body": b"data: " + json.dumps(event).encode() + b"\n\n", "more_body": True}
        )
    if usage:
        event = {"id": answer["id"], "object": "chunk", "choices": [], "usage": answer["usage"]}
        await send(
            {"type": "http.response.body", "body": b"data: " + json.dumps(event).encode() + b"\n\n", "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


@contextlib.contextmanager
def running_stub(state: StubState | None = None) -> Iterator[tuple[str, StubState]]:
    """(base URL without /v1, state) of a stub served on a thread until the block ends."""
    state = state or StubState()
    config = uvicorn.Config(Stub(state), host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the stub did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        server.should_exit = True
        thread.join(timeout=10)
