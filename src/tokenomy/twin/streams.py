"""Writing responses from the engine's driver: ordered ASGI writes that never make the driver wait.

The driver hands 256 streams their tokens in one pass, so a write must not switch tasks. An ASGI `send`
is a coroutine that only suspends when the socket's buffer is full (flow control); `SendQueue.write`
runs it by hand and, in that rare case, lets a task finish it and queues later writes behind it.

Fast path: under uvicorn's httptools protocol a chunked body write is `transport.write(size, data)`;
when `send` is that protocol's bound method and nothing is queued or paused, `SendQueue` frames the
chunk itself and writes it to the transport, saving most of the Python work of a token write. Any other server,
the final write, and every write while flow control pushes back go through `send`.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from tokenomy.twin.engine import LiveRequest, TokenListener
from tokenomy.twin.protocol import ChunkWriter

Send = Callable[[dict[str, Any]], Awaitable[None]]

COMPLETE = "complete"
CUT = "cut"
DISCONNECTED = "disconnected"
SHUTDOWN = "shutdown"


def _wake(waiter: asyncio.Future, _done: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _finish_suspended(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Run a coroutine that has already been started and suspended on `yielded` to completion."""
    loop = asyncio.get_running_loop()
    while True:
        if yielded is None:
            await asyncio.sleep(0)
        else:
            waiter = loop.create_future()
            yielded.add_done_callback(functools.partial(_wake, waiter))
            try:
                await waiter
            except BaseException:
                coro.close()
                raise
        try:
            yielded = coro.send(None)
        except StopIteration:
            return


class SendQueue:
    """In-order body writes to one ASGI response, synchronous unless flow control pushes back."""

    def __init__(self, send: Send):
        self.send = send
        self.backlog: deque[tuple[bytes, bool]] = deque()
        self.task: asyncio.Task | None = None
        self.error: BaseException | None = None
        cycle = getattr(send, "__self__", None)
        self.cycle = cycle if getattr(cycle, "chunked_encoding", None) is True and hasattr(cycle, "flow") else None

    def write(self, data: bytes, more_body: bool = True) -> None:
        cycle = self.cycle
        if cycle is not None and more_body and self.task is None:
            if cycle.disconnected:
                return
            if not cycle.flow.write_paused and not cycle.response_complete:
                cycle.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
                return
        if self.task is not None:
            self.backlog.append((data, more_body))
            return
        coro = self.send({"type": "http.response.body", "body": data, "more_body": more_body})
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the connection is gone: later writes are dropped by the server
            self.error = exc
            return
        self.task = asyncio.get_running_loop().create_task(self._drain(coro, yielded))

    async def _drain(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        try:
            await _finish_suspended(coro, yielded)
            while self.backlog:
                data, more_body = self.backlog.popleft()
                await self.send({"type": "http.response.body", "body": data, "more_body": more_body})
        except Exception as exc:
            self.error = exc
        finally:
            self.task = None

    async def flushed(self) -> None:
        """Wait until every write so far has reached the server."""
        while self.task is not None:
            await asyncio.shield(self.task)


class StreamListener(TokenListener):
    """Turns one streaming request's tokens into SSE events; applies a cut or stall fault after N tokens."""

    def __init__(
        self,
        out: SendQueue,
        writer: ChunkWriter,
        pieces: list[str],
        done: asyncio.Future,
        fault: str | None = None,
        after_tokens: int = 0,
    ):
        self.out = out
        self.writer = writer
        self.pieces = pieces
        self.done = done
        self.fault = fault
        self.after_tokens = after_tokens
        self.silent = False  # cut or stalled: nothing more is written
        self.held: list[bytes] = []  # events of steps whose ends had passed, written together

    def _event(self, start: int, stop: int) -> bytes:
        """The SSE event of one step's tokens [start, stop), or b"" once a fault silences the stream."""
        if self.silent:
            return b""
        if self.fault and stop > self.after_tokens:
            stop = self.after_tokens
            self.silent = True
        if stop <= start:
            return b""
        text = self.pieces[start] if stop == start + 1 else "".join(self.pieces[start:stop])
        return self.writer.tokens(text)

    def on_tokens(self, req: LiveRequest, start: int, stop: int) -> None:
        event = self._event(start, stop)
        if self.held:
            self.held.append(event)
            self.flush(req)
        elif event:
            self.out.write(event)
        self._after_fault()

    def hold(self, req: LiveRequest, start: int, stop: int) -> None:
        event = self._event(start, stop)
        if event:
            self.held.append(event)
        if self.silent:
            self.flush(req)
            self._after_fault()

    def flush(self, req: LiveRequest) -> None:
        if self.held:
            data = b"".join(self.held)
            self.held = []
            if data:
                self.out.write(data)

    def _after_fault(self) -> None:
        if self.silent and self.fault == "cut" and not self.done.done():
            self.done.set_result(CUT)

    def on_finish(self, req: LiveRequest) -> None:
        if self.silent:
            return
        closing = self.writer.closing(req.output_tokens)
        if self.held:
            closing = b"".join(self.held) + closing
            self.held = []
        self.out.write(closing, more_body=False)
        if not self.done.done():
            self.done.set_result(COMPLETE)


class CollectListener(TokenListener):
    """A non-streaming request: nothing is written until the last token; a stall fault never answers."""

    def __init__(self, done: asyncio.Future, fault: str | None = None):
        self.done = done
        self.fault = fault

    def on_finish(self, req: LiveRequest) -> None:
        if self.fault != "stall" and not self.done.done():
            self.done.set_result(COMPLETE)
