"""How uvicorn serves the gateway: limits for slow or idle clients, and the "listening on" line.

uvicorn closes idle keep-alive connections (`timeouts.keep_alive_s`) but has no timeout on a request's
headers, so a client trickling them byte by byte holds its connection for ever. `GatewayHttpProtocol`
(uvicorn's httptools protocol) closes a connection whose request line and headers have not all arrived
within `timeouts.client_header_s`; the body is bounded by `timeouts.client_body_s` in the app
(Gateway.read_body, a 408), the requests in flight by `limits.max_concurrent` (GatewayApp, a 503).
`h11_max_incomplete_event_size` caps a request's head at 64 KiB should uvicorn run h11 instead.
It also puts uvicorn's request-response cycle in the scope (`tokenomy.cycle`), so the stream relay can
write the token reads of a started response straight to the connection (app.Relay.forward), and calls the
cycle's `tokenomy_on_disconnect` (when the app set one) as the connection is lost before the response ended,
so the app needs no task per request waiting on `receive` for the disconnect.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tokenomy.gateway.config import GatewayConfig

MAX_HEADER_BYTES = 64 * 1024
DISCONNECT_HOOK = "tokenomy_on_disconnect"  # the cycle's attribute: called once if the client goes before the end


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's line and headers."""

    # One gateway config per process: set by server_options (and by build_app, for `--workers` processes, which
    # get this class by name, not its attributes).
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = False  # a request's line and headers have begun to arrive and are not complete
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # A request whose head did not come whole in this read gets its deadline now, from its first bytes (a head
        # that came whole, the usual case, never needs a timer).
        if self._in_head and self._header_timer is None and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        cycle = self.cycle
        super().connection_lost(exc)
        # The app's disconnect callback (app.Watch, app.SSEResponse) instead of a task per request waiting on receive.
        hook = getattr(cycle, DISCONNECT_HOOK, None) if cycle is not None and not cycle.response_complete else None
        if hook is not None:
            setattr(cycle, DISCONNECT_HOOK, None)
            hook()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._stop_header_timer()  # idle until the next request: uvicorn's keep-alive timeout applies

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # The gateway's stream relay writes the common token reads straight to this connection (app.Relay.forward),
        # keeping uvicorn's cycle informed; an app that does not look for the cycle never sees a difference.
        cycle.scope["tokenomy.cycle"] = cycle
        setattr(cycle, DISCONNECT_HOOK, None)  # set by the app while it watches for the client leaving
        super()._start_asgi_task(cycle, app)

    def _stop_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def server_options(config: GatewayConfig) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run / uvicorn.Config that bound what slow or idle clients can hold."""
    GatewayHttpProtocol.header_timeout_s = config.timeouts.client_header_s
    return {
        "http": GatewayHttpProtocol,
        "timeout_keep_alive": config.timeouts.keep_alive_s,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,  # the gateway never uses the client's address
        "timeout_graceful_shutdown": 10,
    }


class ListeningServer(uvicorn.Server):
    """uvicorn's server, printing `listening_line` once its sockets accept connections."""

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            for sock in self.servers[0].sockets:
                host, port = sock.getsockname()[:2]
                print(listening_line(host, port), flush=True)


def run_server(app: Any, options: dict[str, Any]) -> None:
    """Serve `app` with uvicorn (options as for uvicorn.run) until SIGINT/SIGTERM."""
    ListeningServer(uvicorn.Config(app, **options)).run()


def listening_line(host: str, port: int) -> str:
    """What the gateway prints once it accepts connections."""
    shown = f"[{host}]" if ":" in host else host
    return f"tokenomy gateway listening on http://{shown}:{port} (OpenAI API under /v1, metrics at /metrics)"
