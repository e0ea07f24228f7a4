"""Writes from the driver: in order, without waiting, also when the socket pushes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tokenomy.tokenizer import count_tokens
from tokenomy.twin.streams import SendQueue


class GatedSend:
    """An ASGI send that suspends while its gate is closed, as uvicorn's does under flow control."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.gate: asyncio.Future | None = None

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.gate is not None:
            await self.gate
        self.bodies.append(message["body"])


def test_writes_stay_in_order_when_the_send_suspends() -> None:
    async def main() -> None:
        send = GatedSend()
        out = SendQueue(send)
        out.write(b"a")
        assert send.bodies == [b"a"]  # written at once, no task switch
        send.gate = asyncio.get_running_loop().create_future()
        out.write(b"b")
        out.write(b"c")
        out.write(b"d", more_body=False)
        assert send.bodies == [b"a"] and out.task is not None
        send.gate.set_result(None)
        send.gate = None
        await out.flushed()
        assert send.bodies == [b"a", b"b", b"c", b"d"] and out.task is None
        out.write(b"e")
        assert send.bodies[-1] == b"e"

    asyncio.run(main())


def test_a_failing_send_is_recorded_not_raised() -> None:
    async def broken(_message: dict[str, Any]) -> None:
        raise OSError("connection reset")

    async def main() -> None:
        out = SendQueue(broken)
        out.write(b"a")
        assert isinstance(out.error, OSError)

    asyncio.run(main())


def test_a_slow_reader_gets_every_token(twin: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that does not read fills the socket buffers; the writes queue behind flow control."""
    suspended = []
    original = SendQueue._drain

    async def counting(self: SendQueue, *args: Any) -> None:
        suspended.append(1)
        await original(self, *args)

    monkeypatch.setattr(SendQueue, "_drain", counting)
    name = "m" * 2000  # every event carries the model name: 2 kB events fill the socket buffers sooner
    url = twin(speedup=2000.0, served_model_name=name)
    n = 3000
    body = {"model": name, "prompt": "x", "max_tokens": n, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as r:
        time.sleep(0.5)  # do not read: the server's writes back up
        texts = [line for line in r.iter_lines() if line.startswith('data: {"id"')]
    assert suspended, "flow control never pushed back"
    assert len(texts) == n + 1  # one event per token, and the closing one
    assert count_tokens("".join(t.split('"text":', 1)[1].split(',"logprobs"')[0].strip('"') for t in texts)) == n
