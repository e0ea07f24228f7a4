"""The twin's HTTP server: OpenAI-compatible endpoints over a TwinEngine, /metrics, and fault injection.

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics,
GET|POST /twin/fail, GET /twin/stats, POST /twin/stats/reset, GET|POST /twin/speed. The two completion routes
are plain ASGI handlers (the hot path); the rest go through Starlette.

Faults (`--fail` or POST /twin/fail {"mode": ..., "after_tokens": N}; {"mode": null} clears), applied to
requests that arrive while set:
- refuse: 503 with `Retry-After: 1` and an OpenAI error body (also on /health);
- http500: 500 with an OpenAI error body (also on /health);
- cut: after N output tokens the response ends abruptly — no [DONE], no closing chunk, connection closed
  (a non-streaming response is cut half-way through its body);
- stall: after N output tokens nothing more is sent and the response never ends, until the client goes away.

POST /twin/speed {"speedup": K} changes how fast the twin runs from the next engine step on (a drift to inject
under `tokenomy watch`); the simulated clock stays continuous.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import single_stream
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.tokenizer import filler_pieces, token_ids
from tokenomy.twin.answers import answer_book, use_answer
from tokenomy.twin.engine import TwinEngine
from tokenomy.twin.metrics import CONTENT_TYPE, TwinMetrics
from tokenomy.twin.protocol import (
    CHAT,
    COMPLETION,
    LONG_PROMPT_CHARS,
    ApiError,
    ChunkWriter,
    CompletionRequest,
    full_response,
    parse_body,
    parse_request,
    prompt_chars,
    prompt_tokens_and_prefix,
)
from tokenomy.twin.streams import (
    COMPLETE,
    CUT,
    DISCONNECTED,
    SHUTDOWN,
    CollectListener,
    SendQueue,
    StreamListener,
)

FAIL_MODES = ("refuse", "http500", "cut", "stall")
DEFAULT_MAX_TOKENS = 256  # output length when a request gives no max_tokens (finish_reason "stop")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
SWITCH_INTERVAL_S = 0.0005  # GIL hand-over bound while a twin thread runs (Python's default: 5 ms)
CUT_LOG_MESSAGE = "ASGI callable returned without completing response."


@dataclass
class TwinSettings:
    """Server behaviour around the engine."""

    served_model_name: str
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    max_model_len: int = 0  # 0: the model's maximum context
    fail: str | None = None
    after_tokens: int = 0
    answer_pass_rate: float | None = None  # answer evaluation-set prompts, right with this probability
    answer_pass_rate_by_type: dict[str, float] | None = None  # per task type, overriding answer_pass_rate
    answer_seed: int = 0

    def __post_init__(self) -> None:
        check_fail_mode(self.fail)
        if self.default_max_tokens < 1:
            raise ValueError(f"default max tokens must be at least 1, got {self.default_max_tokens}")
        if self.after_tokens < 0:
            raise ValueError(f"after-tokens must be 0 or more, got {self.after_tokens}")


def check_fail_mode(mode: str | None) -> None:
    if mode is not None and mode not in FAIL_MODES:
        raise ValueError(f"unknown fail mode '{mode}'; choose from {', '.join(FAIL_MODES)}")


class _CutFilter(logging.Filter):
    """Drop uvicorn's complaint about a response left incomplete: the twin's `cut` fault does that on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != CUT_LOG_MESSAGE


_CUT_FILTER = _CutFilter()


def _error_response(err: ApiError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"content-type", b"application/json")]
    if err.status == 503:
        headers.append((b"retry-after", b"1"))
    return err.status, headers, json.dumps(err.body()).encode()


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away before sending its body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _until_disconnect(receive: Any) -> None:
    """Return when the client has gone away (other messages, e.g. an empty trailing body chunk, are skipped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class TwinServer:
    """ASGI app of one twin: the engine, its settings, metrics and fault state."""

    def __init__(self, engine: TwinEngine, settings: TwinSettings):
        self.engine = engine
        self.settings = settings
        self.max_model_len = settings.max_model_len or engine.d.model.max_context_tokens
        self.fail = settings.fail
        self.after_tokens = settings.after_tokens
        self.metrics = TwinMetrics(engine, settings.served_model_name, self.max_model_len)
        self.answers = answer_book(settings)
        self.filler: list[str] = filler_pieces(4096)
        self.waiters: set[asyncio.Future] = set()
        self.driver: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started_wall_s = time.time()
        self.fast_routes = {
            "/v1/chat/completions": CHAT,
            "/v1/completions": COMPLETION,
        }
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/metrics", self.prometheus, methods=["GET"]),
                Route("/twin/fail", self.fail_state, methods=["GET", "POST"]),
                Route("/twin/stats", self.stats, methods=["GET"]),
                Route("/twin/stats/reset", self.reset_stats, methods=["POST"]),
                Route("/twin/speed", self.speed_state, methods=["GET", "POST"]),
            ],
            lifespan=self.lifespan,
        )
        logging.getLogger("uvicorn.error").addFilter(_CUT_FILTER)  # added once however many twins run

    # ---- lifecycle -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> Any:
        self.start()
        try:
            yield
        finally:
            await self.stop()

    def start(self) -> None:
        """Start the engine's driver on the running loop."""
        token_ids("warm up the word cache")  # loads the vocabulary's words now, not during the first request
        self.loop = asyncio.get_running_loop()
        self.driver = self.loop.create_task(self.engine.run())

    def release_waiters(self) -> None:
        """End every open response (stalled ones included): the server is going down."""
        self.engine.close()
        for waiter in list(self.waiters):
            if not waiter.done():
                waiter.set_result(SHUTDOWN)

    async def stop(self) -> None:
        self.release_waiters()
        if self.driver is not None:
            self.driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.driver

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = self.fast_routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            await _respond(send, 405, [(b"allow", b"POST")], b"Method Not Allowed")
        else:
            await self.completion(kind, scope, receive, send)

    # ---- completions ---------------------------------------------------------------------------

    def _pieces(self, n_tokens: int) -> list[str]:
        if n_tokens > len(self.filler):
            self.filler = filler_pieces(max(n_tokens, 2 * len(self.filler)))
        return self.filler

    async def _prepare(self, kind: str, receive: Any) -> CompletionRequest:
        """Read, validate and size a request; ApiError when it cannot be served."""
        if self.fail == "refuse":
            raise ApiError(503, "twin: refusing requests (fault injection: refuse)", "service_unavailable")
        if self.fail == "http500":
            raise ApiError(500, "twin: internal error (fault injection: http500)", "internal_error")
        req = parse_request(parse_body(await _read_body(receive)), kind, self.settings.served_model_name)
        block = self.engine.prefix_block_tokens
        if prompt_chars(req) > LONG_PROMPT_CHARS:
            req.prompt_tokens, req.prefix_ids = await asyncio.to_thread(prompt_tokens_and_prefix, req, block)
        else:
            req.prompt_tokens, req.prefix_ids = prompt_tokens_and_prefix(req, block)
        room = self.max_model_len - req.prompt_tokens
        if req.max_tokens is None:
            req.output_tokens = min(self.settings.default_max_tokens, room)
            req.finish_reason = "stop"
        else:
            req.output_tokens = req.max_tokens
        if self.answers is not None and kind == CHAT:
            use_answer(req, self.answers, self.settings.default_max_tokens)
        if room < 1 or req.output_tokens > room:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{req.prompt_tokens + max(req.output_tokens, 1)} tokens ({req.prompt_tokens} in the messages, "
                f"{max(req.output_tokens, 1)} in the completion). Please reduce the length of the messages or "
                "completion.",
                param="messages" if kind == CHAT else "prompt",
            )
        why = self.engine.rejection(req.prompt_tokens, req.output_tokens)
        if why:
            raise ApiError(400, f"request cannot be served by this deployment: {why}")
        return req

    async def completion(self, kind: str, scope: dict[str, Any], receive: Any, send: Any) -> None:
        fault, after_tokens = self.fail, self.after_tokens
        try:
            req = await self._prepare(kind, receive)
        except ApiError as err:
            await _respond(send, *_error_response(err))
            return
        except ConnectionError:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self.waiters.add(done)
        fault = fault if fault in ("cut", "stall") else None
        try:
            if req.stream:
                await self._stream(req, receive, send, done, fault, after_tokens)
            else:
                await self._collect(req, receive, send, done, fault)
        finally:
            self.waiters.discard(done)

    async def _wait(self, done: asyncio.Future, receive: Any) -> str:
        """The request's outcome: COMPLETE, CUT, SHUTDOWN, or DISCONNECTED if the client leaves first."""
        disconnect = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await asyncio.wait((done, disconnect), return_when=asyncio.FIRST_COMPLETED)
        finally:
            disconnect.cancel()
        return done.result() if done.done() else DISCONNECTED

    async def _stream(
        self, req: CompletionRequest, receive: Any, send: Any, done: asyncio.Future, fault: str | None, after: int
    ) -> None:
        writer = ChunkWriter(req)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        out = SendQueue(send)
        opening = writer.opening()
        if opening:
            out.write(opening)
        pieces = req.pieces if req.pieces is not None else self._pieces(req.output_tokens)
        listener = StreamListener(out, writer, pieces, done, fault, after)
        live = self.engine.add(req.prompt_tokens, req.output_tokens, listener, req.prefix_ids)
        outcome = await self._wait(done, receive)
        self.engine.cancel(live)
        if outcome == COMPLETE:
            await out.flushed()
            self._observe(req, live)
        elif outcome == CUT:
            await out.flushed()  # then return with the response incomplete: the server drops the connection

    async def _collect(
        self, req: CompletionRequest, receive: Any, send: Any, done: asyncio.Future, fault: str | None
    ) -> None:
        live = self.engine.add(req.prompt_tokens, req.output_tokens, CollectListener(done, fault), req.prefix_ids)
        outcome = await self._wait(done, receive)
        self.engine.cancel(live)
        if outcome != COMPLETE:
            return
        pieces = req.pieces if req.pieces is not None else self._pieces(req.output_tokens)
        text = "".join(pieces[: req.output_tokens])
        body = json.dumps(full_response(req, text, req.output_tokens)).encode()
        self._observe(req, live)
        if fault == "cut":
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            return
        await _respond(send, 200, [(b"content-type", b"application/json")], body)

    def _observe(self, req: CompletionRequest, live: Any) -> None:
        ttft_s = live.first_token_wall_s - live.arrival_wall_s
        e2e_s = live.finish_wall_s - live.arrival_wall_s
        self.metrics.request_done(ttft_s, e2e_s, req.finish_reason, req.prompt_tokens, req.output_tokens)

    # ---- other routes --------------------------------------------------------------------------

    async def models(self, _request: Request) -> Response:
        model = {
            "id": self.settings.served_model_name,
            "object": "model",
            "created": int(self.started_wall_s),
            "owned_by": "tokenomy-twin",
            "root": self.engine.d.model.id,
            "max_model_len": self.max_model_len,
        }
        return JSONResponse({"object": "list", "data": [model]})

    async def health(self, _request: Request) -> Response:
        if self.fail == "refuse":
            return Response(status_code=503, headers={"retry-after": "1"})
        if self.fail == "http500":
            return Response(status_code=500)
        return Response(status_code=200)

    async def prometheus(self, _request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def fail_state(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = json.loads(await request.body())
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                mode = body.get("mode")
                check_fail_mode(mode)
                after = body.get("after_tokens", 0)
                if isinstance(after, bool) or not isinstance(after, int) or after < 0:
                    raise ValueError(f"after_tokens must be an integer ≥ 0, got {after!r}")
            except ValueError as exc:
                return JSONResponse(ApiError(400, str(exc)).body(), status_code=400)
            self.fail, self.after_tokens = mode, after
        return JSONResponse({"mode": self.fail, "after_tokens": self.after_tokens})

    def set_speedup(self, speedup: float) -> None:
        """Run `speedup` × faster than the cost model from now on; the simulated clock stays continuous
        (wall = origin + sim / speedup, with the origin moved so that now maps to the same simulated time)."""
        if not (isinstance(speedup, int | float) and not isinstance(speedup, bool) and 0 < speedup < math.inf):
            raise ValueError(f"speedup must be a positive number, got {speedup!r}")
        e = self.engine
        now_s = e.clock()
        sim_now_s = e.sim_of(now_s)
        e.speedup = float(speedup)
        e.origin_wall_s = now_s - sim_now_s / e.speedup
        e.last_target_wall_s = math.nan
        e.wake.set()

    async def speed_state(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = json.loads(await request.body())
                if not isinstance(body, dict) or "speedup" not in body:
                    raise ValueError('body must be a JSON object like {"speedup": 2.0}')
                self.set_speedup(body["speedup"])
            except ValueError as exc:
                return JSONResponse(ApiError(400, str(exc)).body(), status_code=400)
        return JSONResponse({"speedup": self.engine.speedup})

    async def stats(self, _request: Request) -> Response:
        return JSONResponse(self.stats_dict())

    async def reset_stats(self, _request: Request) -> Response:
        self.engine.lateness.reset()
        self.engine.delay_variation.reset()
        return JSONResponse(self.stats_dict())

    def stats_dict(self) -> dict[str, Any]:
        """Engine counters, emission lateness (seconds), and the deployment's unloaded prediction."""
        e, d = self.engine, self.engine.d
        ttft_s, itl_s = single_stream(d, 512, 256)
        return {
            "model": d.model.id,
            "served_model_name": self.settings.served_model_name,
            "gpu": d.gpu.id,
            "tp": d.tp,
            "pp": d.pp,
            "precision": d.fmt.name,
            "engine": d.profile.name,
            "speedup": e.speedup,
            "busy_wait": e.busy_wait,
            "write_cost_s": e.write_cost_s,
            "running": e.running,
            "waiting": e.waiting,
            "kv_usage": e.kv_usage,
            "kv_capacity_tokens": e.replica.kv.total_blocks * e.replica.kv.block_tokens,
            "max_num_seqs": e.replica.max_seqs,
            "steps": e.replica.stats.steps,
            "counters": vars(e.counters),
            "emission_lateness_s": e.lateness.summary(),
            "emission_delay_variation_s": e.delay_variation.summary(),
            "predicted_unloaded": {"isl": 512, "osl": 256, "ttft_s": ttft_s, "itl_s": itl_s},
            "fail": {"mode": self.fail, "after_tokens": self.after_tokens},
        }


# ---- building and running --------------------------------------------------------------------

_REPLICA_FIELDS = {f.name for f in fields(ReplicaConfig)} - {"exact", "sample_interval_s", "spec"}
_SETTINGS_FIELDS = {
    "default_max_tokens",
    "max_model_len",
    "after_tokens",
    "answer_pass_rate",
    "answer_pass_rate_by_type",
    "answer_seed",
}
_DEPLOYMENT_FIELDS = {"pp", "kv_precision", "accelerators_file"}


def build_twin(
    d: Deployment,
    *,
    speedup: float = 1.0,
    served_model_name: str | None = None,
    fail: str | None = None,
    seed: int = 0,
    replica: ReplicaConfig | None = None,
    busy_wait: bool = False,
    **settings: Any,
) -> TwinServer:
    """A twin server for deployment `d` (not yet listening); `busy_wait`: spin between steps (see twin/engine.py)."""
    engine = TwinEngine(d, replica, speedup=speedup, seed=seed, busy_wait=busy_wait)
    settings.setdefault("answer_seed", seed)
    return TwinServer(engine, TwinSettings(served_model_name or d.model.id, fail=fail, **settings))


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split `running_twin`'s keyword options into (deployment, replica config, server settings)."""
    deployment, replica, settings = {}, {}, {}
    for name, value in options.items():
        if name in _DEPLOYMENT_FIELDS:
            deployment[name] = value
        elif name in _REPLICA_FIELDS:
            replica[name] = value
        elif name in _SETTINGS_FIELDS:
            settings[name] = value
        else:
            known = sorted(_DEPLOYMENT_FIELDS | _REPLICA_FIELDS | _SETTINGS_FIELDS)
            raise TypeError(f"unknown twin option '{name}'; known: {', '.join(known)}")
    return deployment, replica, settings


def uvicorn_config(app: TwinServer, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )


class AddressInUse(OSError):
    """The twin's host:port cannot be bound (another server holds it, or the address is not this machine's)."""


def check_can_listen(host: str, port: int) -> None:
    """Bind host:port once (with SO_REUSEADDR, as uvicorn does) and let go; AddressInUse naming it if that fails."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise AddressInUse(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class TwinThread:
    """A twin served by uvicorn on a background thread.

    While any twin thread runs, the interpreter's GIL switch interval is at most SWITCH_INTERVAL_S (default
    5 ms), so that a client busy in the main thread delays the twin's token writes by less than a millisecond.
    """

    _running = 0
    _previous_switch_interval_s = 0.0
    _lock = threading.Lock()

    def __init__(self, twin: TwinServer, host: str = "127.0.0.1", port: int = 0):
        self.twin = twin
        self.host = host
        self.server = uvicorn.Server(uvicorn_config(twin, host, port))
        self.thread = threading.Thread(target=self.server.run, name="tokenomy-twin", daemon=True)
        self.counted = False

    def start(self, timeout_s: float = 20.0) -> str:
        """Start serving; the base URL once the socket is bound (AddressInUse when the port is taken)."""
        check_can_listen(self.host, self.server.config.port)
        with TwinThread._lock:
            if TwinThread._running == 0:
                TwinThread._previous_switch_interval_s = sys.getswitchinterval()
                sys.setswitchinterval(min(SWITCH_INTERVAL_S, TwinThread._previous_switch_interval_s))
            TwinThread._running += 1
            self.counted = True
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the twin did not start on {self.host}")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    def stop(self) -> None:
        loop = self.twin.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.twin.release_waiters)
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        with TwinThread._lock:
            if self.counted:
                self.counted = False
                TwinThread._running -= 1
                if TwinThread._running == 0:
                    sys.setswitchinterval(TwinThread._previous_switch_interval_s)


@contextlib.contextmanager
def running_twin(
    model: str = "llama-3.1-8b",
    gpu: str = "H100-SXM",
    *,
    speedup: float = 1.0,
    fail: str | None = None,
    served_model_name: str | None = None,
    precision: str = "native",
    engine: str = "vllm",
    tp: int | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **replica_options: Any,
) -> Iterator[str]:
    """Serve a twin on a background thread for the duration of the block; yields its base URL.

    Extra options: pp, kv_precision, accelerators_file (deployment); scheduler, kv, block_tokens,
    max_num_seqs, max_num_batched_tokens, prefix_caching (replica); default_max_tokens, max_model_len,
    after_tokens, answer_pass_rate, answer_pass_rate_by_type, answer_seed (server: see twin/answers.py).
    """
    from tokenomy.costmodel.resolve import DeploymentSpec, resolve

    dep, rep, settings = split_options(replica_options)
    d = resolve(DeploymentSpec(model=model, gpu=gpu, tp=tp, precision=precision, engine=engine, **dep)).deployment
    twin = build_twin(
        d, speedup=speedup, served_model_name=served_model_name, fail=fail, replica=ReplicaConfig(**rep), **settings
    )
    runner = TwinThread(twin, host, port)
    url = runner.start()
    try:
        yield url
    finally:
        runner.stop()
