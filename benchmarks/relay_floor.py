"""The thinnest streaming relay on the gateway's own stack, for benchmarks/gateway_overhead.py `--floor`.

uvicorn (uvloop, httptools, one worker, access log off, as the gateway runs) serves a bare ASGI app that sends
each POST body upstream with tokenomy's HTTP/1.1 client (tokenomy/http1.py, the gateway's) and relays the answer
to the client read by read as it arrives, one client write per upstream read, as the gateway's relay does. It
has no keys, budgets, classifier, routing, usage parsing, ledger or metrics: its CPU per request is what the
stack alone costs for the same streamed request, so the gateway's CPU above it is the gateway's own work.

    python benchmarks/relay_floor.py --port P --upstream http://127.0.0.1:TWIN/v1
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from tokenomy.http1 import HttpError, Pool

STREAM_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def relay_app(upstream: str) -> Any:
    """The ASGI app: /healthz answers ok; any POST goes to the upstream's /chat/completions and streams back."""
    pool: Pool | None = None

    async def app(scope: dict, receive: Any, send: Any) -> None:
        nonlocal pool
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        pool = pool or Pool(upstream)
        try:
            response = await pool.request("POST", "/chat/completions", body, resend=False)
        except HttpError:
            await send({"type": "http.response.start", "status": 502, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": response.status, "headers": STREAM_HEADERS})
        while chunk := await response.read_chunk():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        response.release()
        await send({"type": "http.response.body", "body": b""})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, e.g. http://127.0.0.1:8000/v1")
    args = parser.parse_args()
    uvicorn.run(
        relay_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
