"""The stream relay's direct path: token reads written straight to the client's connection (Relay.forward).

The bytes a client gets must be those the ASGI path sends; whatever is not a plain run of content events
(the end, usage, errors, partial events, a paused or gone client, the deadline) is left to the ASGI path.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import httpx
import pytest

from tests.gateway.conftest import chat, self_hosted, sse_events
from tokenomy.gateway.app import Relay
from tokenomy.gateway.ledger import Database

TOKEN = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def relay_with_cycle(**cycle: object) -> tuple[Relay, FakeTransport]:
    """A Relay between a fake upstream response and a fake uvicorn cycle (only what forward reads)."""
    gateway = SimpleNamespace(config=SimpleNamespace(timeouts=SimpleNamespace(total_s=60.0)))
    call = SimpleNamespace(started=time.perf_counter(), prompt_tokens=10, client_wants_usage=False)
    tier = SimpleNamespace(upstream=SimpleNamespace(scaled=lambda n: n))
    relay = Relay(gateway, call, tier)  # type: ignore[arg-type]
    transport = FakeTransport()
    relay.cycle = SimpleNamespace(
        transport=transport,
        disconnected=cycle.get("disconnected", False),
        flow=SimpleNamespace(write_paused=cycle.get("write_paused", False)),
    )
    return relay, transport


class FakeResponse:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.buffered = sum(len(c) for c in chunks)  # under http1.HIGH_WATER: reading was never paused

    def take(self) -> bytes | None:
        data = b"".join(self.chunks)
        self.drop_taken()
        return data

    def drop_taken(self) -> None:
        self.chunks.clear()
        self.buffered = 0


def test_forward_writes_one_http_chunk_per_read_and_counts_the_tokens() -> None:
    relay, transport = relay_with_cycle()
    response = FakeResponse(TOKEN, TOKEN)  # two events that arrived in one read
    assert relay.forward(response)  # type: ignore[arg-type]
    body = TOKEN + TOKEN
    assert transport.written == [b"%x\r\n" % len(body) + body + b"\r\n"]
    assert relay.content_events == 2 and response.chunks == []


@pytest.mark.parametrize(
    "chunks, cycle",
    [
        ((b"data: [DONE]\n\n",), {}),
        ((b'data: {"error": {"message": "x"}}\n\n',), {}),
        ((b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n',), {}),
        ((TOKEN.replace(b"\n", b"\r\n"),), {}),
        ((TOKEN,), {"write_paused": True}),
        ((TOKEN,), {"disconnected": True}),
    ],
)
def test_forward_leaves_everything_but_plain_tokens_to_the_asgi_path(chunks: tuple, cycle: dict) -> None:
    relay, transport = relay_with_cycle(**cycle)
    response = FakeResponse(*chunks)
    assert not relay.forward(response)  # type: ignore[arg-type]
    assert transport.written == [] and response.chunks == list(chunks) and relay.content_events == 0


def test_forward_holds_a_partial_event_and_then_leaves_it_to_the_asgi_path() -> None:
    relay, transport = relay_with_cycle()
    assert relay.forward(FakeResponse(TOKEN + TOKEN[:10]))  # type: ignore[arg-type]
    assert transport.written == [b"%x\r\n" % len(TOKEN) + TOKEN + b"\r\n"] and relay.buffer == TOKEN[:10]
    rest = FakeResponse(TOKEN[10:])
    assert not relay.forward(rest)  # type: ignore[arg-type]
    assert rest.chunks == [TOKEN[10:]]


def test_forward_stops_at_the_deadline() -> None:
    relay, transport = relay_with_cycle()
    relay.deadline = time.perf_counter() - 1
    assert not relay.forward(FakeResponse(TOKEN))  # type: ignore[arg-type]
    assert transport.written == []


def test_a_stream_sent_directly_is_the_stream_the_asgi_path_sends(twins, gateway, monkeypatch) -> None:
    """Through a real uvicorn: the direct path carries the tokens, and the client gets the same events, usage and
    ledger rows as with it switched off."""
    twin = twins("small", speedup=1.0)  # real-time tokens (~7 ms apart): one upstream read each, mostly
    g = gateway({"tiers": [self_hosted("small", twin, "llama-3.1-8b", ["simple", "complex"])]})
    _, key = g.new_key()
    forwarded = []
    original = Relay.forward

    def counting(self: Relay, response) -> bool:  # noqa: ANN001
        handled = original(self, response)
        forwarded.append(handled)
        return handled

    monkeypatch.setattr(Relay, "forward", counting)
    headers = {"authorization": f"Bearer {key}"}
    body = chat(max_tokens=24, stream=True, stream_options={"include_usage": True})

    def stream() -> list[dict]:
        r = httpx.post(f"{g.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert r.status_code == 200
        events = sse_events(r.text)
        assert events[-1] == "[DONE]"
        return [json.loads(e) for e in events[:-1]]

    direct = stream()
    assert sum(forwarded) >= 5  # most token reads went straight to the client
    monkeypatch.setattr(Relay, "direct", lambda self: False)
    forwarded.clear()
    relayed = stream()
    assert forwarded == []

    def text(events: list[dict]) -> str:
        return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])

    assert text(direct) == text(relayed) and len(text(direct)) > 0
    assert direct[-1]["usage"]["completion_tokens"] == relayed[-1]["usage"]["completion_tokens"] == 24
    g.stop()
    rows = Database(g.config.ledger.url, g.config.state_dir).attempts()
    assert [(r["status"], r["tokens_out"]) for r in rows] == [("ok", 24), ("ok", 24)]
