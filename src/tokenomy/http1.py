"""A lean HTTP/1.1 client (the gateway's upstream calls, the bench's load): pooled keep-alive connections, httptools.

It does what the gateway needs and no more: send a request (a JSON POST, or the GET of an upstream's
/metrics) and hand back the response body as it arrives, over http:// or https://, with Content-Length,
chunked or read-until-close bodies, a connect timeout and a read timeout (the longest wait for any byte).
A streamed response costs one `data_received` and one future per upstream read (or, with a `Response.sink`,
no future at all: the sink passes the bytes on from the read's callback, app.Relay.forward): per streamed request
general clients (httpx, aiohttp) spent more CPU than the whole rest of the gateway (see
benchmarks/gateway_overhead.py and the README's Gateway section). Not supported: proxies from the
environment, redirects, cookies, compression (no Accept-Encoding is sent, so bodies pass through as
sent), HTTP/2.

A kept-alive connection the upstream has closed in the meantime is detected (the close arrives as
`connection_lost` while it idles) or, racing with a request, retried once on a new connection when
not a byte of the response had arrived; idle connections are dropped after `keepalive_s`, shorter
than the 5 s keep-alive of uvicorn-based servers such as vLLM.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

KEEPALIVE_S = 4.0
HIGH_WATER = 256 * 1024  # buffered response bytes at which reading from the upstream pauses


class HttpError(Exception):
    """A failed upstream call (the message never contains request headers, so no API key)."""


class ConnectError(HttpError):
    pass


class ConnectTimeout(HttpError, TimeoutError):
    pass


class ReadTimeout(HttpError, TimeoutError):
    pass


class PoolTimeout(HttpError, TimeoutError):
    """Every connection the pool may open to the upstream stayed busy for `connect_s` (the upstream is not at fault)."""


class RemoteProtocolError(HttpError):
    """The upstream closed the connection early or sent something that is not HTTP/1.1."""


class Response:
    """One response: status and headers once `start()` returns, then the body as it arrives."""

    def __init__(self, conn: _Connection, read_s: float):
        self.conn = conn
        self.read_s = read_s
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.received = False  # any byte of the response arrived
        self.complete = False
        self.keep_alive = False
        self.error: HttpError | None = None
        self.waiter: asyncio.Future | None = None
        self.waiting_since: float | None = None  # while waiting for bytes: since when (loop time)
        self.timer: asyncio.TimerHandle | None = None  # checks the read timeout; re-armed lazily, not per read
        # While set, called after each read that brought body bytes while the caller waits: True when it took them
        # (Response.take) and passed them on itself, so the caller's wait goes on; False wakes the caller as usual.
        self.sink: Callable[[Response], bool] | None = None

    # ---- called by the connection -------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: HttpError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self._wake()

    def _check_timeout(self) -> None:
        self.timer = None
        since = self.waiting_since
        if since is None or self.waiter is None:
            return  # not waiting now: the next wait arms the timer again
        due = since + self.read_s
        if self.conn.loop.time() < due:
            self.timer = self.conn.loop.call_at(due, self._check_timeout)
            return
        self._fail(ReadTimeout(f"no byte from the upstream for {self.read_s:g} s"))
        self.conn.close()

    async def wait(self) -> None:
        """Wait until something happens: bytes arrive, the body ends, or the response fails (a read timeout
        included). Call it when `take()` returned None."""
        loop = self.conn.loop
        self.waiter = waiter = loop.create_future()
        self.waiting_since = now = loop.time()
        if self.timer is None:
            self.timer = loop.call_at(now + self.read_s, self._check_timeout)
        try:
            await waiter
        finally:
            self.waiter = self.waiting_since = None

    def set_read_timeout(self, read_s: float) -> None:
        """From now on wait at most `read_s` for each byte (e.g. shorter after a stream's first token)."""
        self.read_s = read_s
        self._stop_timer()  # the next wait arms it with the new limit

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # ---- for the caller -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Wait for the status line and headers."""
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self.wait()

    def drop_taken(self) -> None:
        """Drop the chunks received so far (the caller has read them) and resume a connection paused for them."""
        self.chunks.clear()
        if self.buffered > HIGH_WATER:
            self.conn.resume()
        self.buffered = 0

    def take(self) -> bytes | None:
        """The body bytes that arrived since the last call, without waiting; b"" at the end of the body, None when
        nothing arrived yet (then `wait()`); raises the error that ended the response."""
        chunks = self.chunks
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.drop_taken()
            return data
        if self.complete:
            return b""
        if self.error is not None:
            raise self.error
        return None

    async def read_chunk(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some); b"" at the end of the body."""
        while (data := self.take()) is None:
            await self.wait()
        return data

    def at_eof(self) -> bool:
        return self.complete and not self.chunks

    async def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Done with the response: its connection goes back to the pool if the response is complete, else closes."""
        self._stop_timer()
        conn = self.conn
        if conn.response is not self:
            return
        conn.response = None
        if self.complete and self.keep_alive and self.error is None and not conn.closed:
            conn.pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection (the response is abandoned)."""
        self._stop_timer()
        conn = self.conn
        if conn.response is self:
            conn.response = None
        conn.close()


class _Connection(asyncio.Protocol):
    """One connection to the upstream, carrying one response at a time."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.response: Response | None = None
        self.closed = False
        self.paused = False
        self.reused = False
        self.idle_since = 0.0
        self.framed = False  # the response declared its length (Content-Length or chunked)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, response: Response, data: bytes) -> None:
        self.response = response
        self.parser = httptools.HttpResponseParser(self)
        self.framed = False
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        response.received = True
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserError as exc:
            response._fail(RemoteProtocolError(f"the upstream's response is not valid HTTP/1.1: {exc}"))
            self.close()
            return
        sink = response.sink
        if sink is not None and response.chunks:  # on_body left the waiter to us: one hand-over per read
            waiter = response.waiter
            if waiter is not None and not waiter.done():
                if sink(response):
                    response.waiting_since = self.loop.time()  # bytes arrived: the read timeout starts again
                else:
                    waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        response = self.response
        if response is None or response.complete:
            return
        if response.headers_done and not self.framed:  # a body that ends when the connection does
            response.complete = True
            response._wake()
            return
        where = "before its response" if not response.headers_done else "in the middle of its response"
        reason = f": {exc}" if exc else ""
        response._fail(RemoteProtocolError(f"the upstream closed the connection {where}{reason}"))

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    # ---- httptools callbacks ------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.headers.append((name, value))  # type: ignore[union-attr]
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None and self.parser is not None
        response.status = self.parser.get_status_code()
        if 100 <= response.status < 200:  # an interim response: the real one follows
            response.headers.clear()
            return
        response.headers_done = True
        response._wake()

    def on_body(self, body: bytes) -> None:
        response = self.response  # Response._feed, inlined: this runs once per upstream read
        response.chunks.append(body)  # type: ignore[union-attr]
        response.buffered += len(body)  # type: ignore[union-attr]
        if response.buffered > HIGH_WATER:  # type: ignore[union-attr]
            self.pause()
        if response.sink is None:  # type: ignore[union-attr]
            waiter = response.waiter  # type: ignore[union-attr]
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None or not response.headers_done:
            return
        response.complete = True
        response.keep_alive = self.parser.should_keep_alive()  # type: ignore[union-attr]
        if self.paused:
            self.resume()
        response._wake()


class Pool:
    """Keep-alive connections to one origin (scheme, host, port); requests are paths under the base URL."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        connect_s: float = 10.0,
        read_s: float = 60.0,
        keepalive_s: float = KEEPALIVE_S,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
    ):
        """`ssl_context`: for https, instead of the system's trusted CAs (certificates are always verified);
        `max_connections`: at most this many connections open at once (a request waits up to `connect_s` for one)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self.base_path = parts.path.rstrip("/")
        self.origin = f"{parts.scheme}://{parts.hostname}:{self.port}"
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        fixed = {"host": netloc, **{k.lower(): v for k, v in (headers or {}).items()}}
        self.fixed_headers = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self.connect_s = connect_s
        self.read_s = read_s
        self.keepalive_s = keepalive_s
        self.idle: list[_Connection] = []
        self.max_connections = max_connections
        self.open: set[_Connection] = set()  # every connection not yet closed
        self.connecting = 0  # connections being opened
        self.waiting: list[asyncio.Future] = []  # requests waiting for a connection under max_connections
        self.heads: dict[tuple[str, str], bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # never shows the headers (an API key)
        return f"Pool({self.origin + self.base_path!r})"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def head(self, method: str, path: str) -> bytes:
        """The request line and fixed headers for a method and path (cached)."""
        head = self.heads.get((method, path))
        if head is None:
            line = f"{method} {self.base_path}{path} HTTP/1.1\r\n".encode("latin-1")
            head = self.heads[(method, path)] = line + self.fixed_headers
        return head

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str = "application/json",
        read_s: float = 0.0,
        resend: bool = True,
    ) -> Response:
        """Send a request; returns once the response's status and headers are in (raises HttpError).

        `resend=False`: never send it twice (a POST that may already have reached the upstream): a kept-alive
        connection found closed is then an error, not a retry."""
        data = self.head(method, path)
        if body:
            data += f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
        else:
            data += b"\r\n"
        while True:
            conn = await self._acquire()
            response = Response(conn, read_s or self.read_s)
            conn.send(response, data)
            try:
                await response.start()
                return response
            except RemoteProtocolError:
                response.close()
                if resend and conn.reused and not response.received:
                    continue  # a kept-alive connection the upstream had just closed: again on another one
                raise
            except BaseException:
                response.close()
                raise

    async def _acquire(self) -> _Connection:
        now = self.loop.time()
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > self.keepalive_s:
                conn.close()
                continue
            conn.reused = True
            return conn
        if self.max_connections is not None and len(self.open) + self.connecting >= self.max_connections:
            return await self._wait_for_connection()
        self.connecting += 1
        try:
            async with asyncio.timeout(self.connect_s):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {self.origin} within {self.connect_s:g} s") from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self.origin}: {exc.strerror or exc}") from None
        finally:
            self.connecting -= 1
            if self.waiting and sys.exc_info()[0] is not None:
                self._wake_one()  # a failed connect frees its place
        if not conn.closed:  # type: ignore[attr-defined]
            self.open.add(conn)  # type: ignore[arg-type]
        return conn  # type: ignore[return-value]

    async def _wait_for_connection(self) -> _Connection:
        """Wait (up to connect_s) until a connection is put back or one closes, then acquire again."""
        waiter = self.loop.create_future()
        self.waiting.append(waiter)
        try:
            async with asyncio.timeout(self.connect_s):
                await waiter
        except TimeoutError:
            raise PoolTimeout(
                f"all {self.max_connections} connections to {self.origin} stayed busy for {self.connect_s:g} s"
            ) from None
        finally:
            if waiter in self.waiting:
                self.waiting.remove(waiter)
        return await self._acquire()

    def _wake_one(self) -> None:
        while self.waiting:
            waiter = self.waiting.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def put(self, conn: _Connection) -> None:
        conn.idle_since = self.loop.time()
        conn.reused = False
        self.idle.append(conn)
        if self.waiting:
            self._wake_one()

    def forget(self, conn: _Connection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        if conn in self.open:
            self.open.discard(conn)
            if self.waiting:
                self._wake_one()

    def close(self) -> None:
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()
