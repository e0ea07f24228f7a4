"""tokenomy.http1 against scripted servers: framing, keep-alive reuse, stale connections, timeouts."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tokenomy.http1 import HIGH_WATER, ConnectError, Pool, ReadTimeout, RemoteProtocolError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


class Scripted:
    """A TCP server answering each request with `handler(reader, writer, n)`; it keeps a connection open while the
    handler returns True. Counts connections and requests, and keeps the raw requests."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0, ssl=self.tls)
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aexit__(self, *_: object) -> None:
        self.server.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                if not await self.handler(reader, writer, len(self.requests)):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def sse_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    for i in range(3):
        writer.write(b"%x\r\n%s\r\n" % (len(b"data: %d\n\n" % i), b"data: %d\n\n" % i))
        await writer.drain()
        await asyncio.sleep(0.02)
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True


def run(coro: Awaitable) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_streams_chunked_bodies_as_they_arrive_and_reuses_the_connection() -> None:
    async def main() -> None:
        server = Scripted(sse_answer)
        async with server as url:
            pool = Pool(url, {"authorization": "Bearer sk-secret"}, connect_s=2, read_s=5)
            for _ in range(3):
                r = await pool.request("POST", "/chat/completions", b'{"x": 1}')
                assert r.status == 200 and (b"content-type", b"text/event-stream") in r.headers
                reads = []
                while chunk := await r.read_chunk():
                    reads.append(chunk)
                assert b"".join(reads) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
                assert len(reads) == 3  # each event as it arrived, not the body at the end
                r.release()
            pool.close()
        assert server.connections == 1 and len(server.requests) == 3  # one kept-alive connection
        first = server.requests[0]
        assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"authorization: Bearer sk-secret\r\n" in first and first.endswith(b'\r\n\r\n{"x": 1}')
        assert "sk-secret" not in repr(pool)

    run(main())


def test_content_length_and_read_until_close_bodies() -> None:
    async def answer(reader, writer, n: int) -> bool:  # noqa: ANN001
        if n == 1:
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnope!")
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()
        return False

    async def main() -> None:
        server = Scripted(answer)
        async with server as url:
            pool = Pool(url, connect_s=2, read_s=5)
            r = await pool.request("GET", "/models")
            assert (r.status, await r.read()) == (404, b"nope!")
            r.release()
            r = await pool.request("GET", "/models")
            assert (r.status, await r.read()) == (200, b"until the end")
            r.release()
            assert pool.idle == []  # "connection: close" is not kept
        assert server.connections == 1

    run(main())


def test_a_kept_alive_connection_the_upstream_closed_is_not_used() -> None:
    async def answer_then_close(reader, writer, n: int) -> bool:  # noqa: ANN001
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        return False  # closes the connection after answering, without saying so

    async def main() -> None:
        server = Scripted(answer_then_close)
        async with server as url:
            pool = Pool(url, connect_s=2, read_s=5)
            for _ in range(3):
                r = await pool.request("POST", "/completions", b"{}")
                assert await r.read() == b"ok"
                r.release()
                await asyncio.sleep(0.05)  # the close arrives while the connection idles
        assert server.connections == 3

    run(main())


def test_a_request_racing_the_upstreams_close_is_sent_again_on_a_new_connection() -> None:
    async def answer(reader, writer, n: int) -> bool:  # noqa: ANN001
        if n == 2:
            return False  # reads the request on the kept-alive connection and closes it without a byte
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        return True

    async def main() -> None:
        server = Scripted(answer)
        async with server as url:
            pool = Pool(url, connect_s=2, read_s=5)
            for _ in range(2):
                r = await pool.request("POST", "/completions", b"{}")
                assert await r.read() == b"ok"
                r.release()
        assert server.connections == 2 and len(server.requests) == 3

    run(main())


def test_a_fresh_connection_closed_before_the_response_is_an_error_not_a_retry() -> None:
    async def close(reader, writer, n: int) -> bool:  # noqa: ANN001
        return False

    async def main() -> None:
        server = Scripted(close)
        async with server as url:
            with pytest.raises(RemoteProtocolError, match="before its response"):
                await Pool(url, connect_s=2, read_s=5).request("POST", "/completions", b"{}")
        assert len(server.requests) == 1

    run(main())


def test_cut_stream_stall_and_garbage_are_errors() -> None:
    async def answer(reader, writer, n: int) -> bool:  # noqa: ANN001
        if n == 1:  # a chunked body cut off
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            return False
        if n == 2:  # headers, then nothing
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(5)
            return False
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        return False

    async def main() -> None:
        async with Scripted(answer) as url:
            pool = Pool(url, connect_s=2, read_s=0.3)
            r = await pool.request("POST", "/chat/completions", b"{}")
            assert await r.read_chunk() == b"hello"
            with pytest.raises(RemoteProtocolError, match="in the middle of its response"):
                await r.read_chunk()
            r.release()
            r = await pool.request("POST", "/chat/completions", b"{}")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(ReadTimeout):
                await r.read_chunk()
            assert 0.25 < loop.time() - t0 < 2.0
            r.release()
            with pytest.raises(RemoteProtocolError, match="not valid HTTP"):
                await pool.request("POST", "/chat/completions", b"{}")
            assert pool.idle == []

    run(main())


def test_connect_errors_name_the_origin() -> None:
    async def main() -> None:
        with pytest.raises(ConnectError, match="127.0.0.1:9"):
            await Pool("http://127.0.0.1:9/v1", connect_s=2).request("GET", "/models")

    run(main())


def test_a_slow_reader_pauses_the_upstream_and_loses_nothing() -> None:
    body = bytes(range(256)) * (4 * HIGH_WATER // 256)

    async def answer(reader, writer, n: int) -> bool:  # noqa: ANN001
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        return True

    async def main() -> None:
        async with Scripted(answer) as url:
            pool = Pool(url, connect_s=2, read_s=5)
            r = await pool.request("GET", "/big")
            await asyncio.sleep(0.2)  # the body arrives while nobody reads
            assert r.conn.paused and r.buffered <= 2 * HIGH_WATER
            assert await r.read() == body
            r.release()
            assert len(pool.idle) == 1 and not pool.idle[0].paused

    run(main())


def test_https_verifies_the_upstreams_certificate(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def main() -> None:
        server = Scripted(sse_answer, tls=server_tls)
        async with server as url:
            trusting = Pool(url, ssl_context=ssl.create_default_context(cafile=str(cert)), connect_s=5, read_s=5)
            for _ in range(2):
                r = await trusting.request("POST", "/chat/completions", b"{}")
                assert await r.read() == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
                r.release()
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                await Pool(url, connect_s=5).request("POST", "/chat/completions", b"{}")  # the system's CAs
            trusting.close()
            await asyncio.sleep(0.05)
        assert server.connections == 1 and len(server.requests) == 2  # one kept-alive TLS connection; none untrusted

    run(main())
