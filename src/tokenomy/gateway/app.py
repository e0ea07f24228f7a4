"""The gateway's HTTP app: OpenAI-compatible endpoints in front of the tiers, /metrics, /healthz, admin API.

A completion request goes: authenticate the virtual key → read the body (size- and time-limited) →
check it against the schema's allow-list and bound what it may cost (schema.py: one output cap ×
sequences × prompts, and an upper bound on its prompt tokens) → route (classify `auto`, pick eligible
tiers cheapest first) → reserve that worst case against the budgets → try the tiers in order, each
sent exactly the cap. Before the first byte reaches the client, a connect error, timeout, 3xx, 5xx
or 429 fails over to the next tier; a streamed response is passed through as the upstream's bytes
arrive (whole SSE events, one send per upstream read), and if the upstream fails after that the
stream ends with an error event (`data: {"error": …}`), never a truncated success. Each attempt is
one ledger row; one whose usage passes its reservation is flagged there and in the metrics. A client
that disconnects at any point cancels the upstream request and releases the reservation. Every
error the client gets is OpenAI's JSON shape, {"error": {"message", "type", "code", "param"}}.

The completion endpoints are the hot path: `GatewayApp` serves them without Starlette's routing and
middleware, the upstream client is a lean HTTP/1.1 client (tokenomy/http1.py), and per chunk the relay only
looks for a few byte markers (the first token, [DONE], an error event, the usage event); the ledger row,
budget settlement and metrics are done once per attempt, after the stream. Under uvicorn (serve.py) the
reads that carry only tokens are written to the client's connection from the upstream read's callback
(`Relay.forward`: no task switch, no ASGI message), one HTTP chunk per read as the ASGI path would send; the
status line, headers and first bytes go out in one write (`SSEResponse.start_direct`); a body that arrived with
its headers is read without arming a timer; and the server calls back when the client's connection is lost
(`Watch`, `SSEResponse`) instead of a task per request waiting on `receive`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from tokenomy.gateway.budgets import (
    BudgetsUnavailable,
    Limit,
    OverBudget,
    Reservation,
    period_start_s,
    reserve_or_release,
)
from tokenomy.gateway.classifier import CLASSES, default_classifier
from tokenomy.gateway.config import GatewayConfig
from tokenomy.gateway.escalate import policy_for, respond
from tokenomy.gateway.keys import ApiKey, same_secret
from tokenomy.gateway.ledger import Attempt, usage_details
from tokenomy.gateway.metrics import GatewayMetrics
from tokenomy.gateway.router import Route, Router, Tier, UnknownModel, self_hosted_deployment, tier_prices
from tokenomy.gateway.schema import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    EMBEDDINGS_PATH,
    SchemaError,
    Shape,
    shape,
    tokenized_prompt_bound,
    upstream_fields,
)
from tokenomy.gateway.state import GatewayState, LedgerCollector, open_state
from tokenomy.gateway.upstream import CLIENT_ERRORS, Upstream, counts_against_upstream, describe, unreachable
from tokenomy.http1 import Response as UpstreamResponse

log = logging.getLogger("tokenomy.gateway")


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DIRECT_CYCLE = "tokenomy.cycle"  # the scope key under which serve.GatewayHttpProtocol gives uvicorn's cycle
DISCONNECT_HOOK = "tokenomy_on_disconnect"  # the cycle's attribute serve.GatewayHttpProtocol calls when the client goes
DRAIN_S = 1.0  # after [DONE], how long to wait for the upstream to end its response (to reuse the connection)


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None, **extra: Any) -> dict:
    """An OpenAI-style error object: {"error": {"message", "type", "code", "param"}}."""
    return {"error": {"message": message, "type": kind, "code": code or kind, "param": param, **extra}}


def error_response(status: int, message: str, kind: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(message, kind, **extra), status_code=status)


def sse_error(message: str, kind: str = "upstream_error") -> bytes:
    """The event that ends a stream whose upstream failed after the first byte."""
    return b"data: " + json.dumps(error_body(message, kind)).encode() + b"\n\n"


class BadRequest(ValueError):
    """A request the gateway refuses before routing; carries the HTTP status and the field at fault."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.param = param

    def response(self) -> JSONResponse:
        return error_response(self.status, str(self), self.kind, param=self.param)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: a number no upstream can be sent as JSON
        raise ValueError(f"{text} is not a finite number")
    return value


# NaN, Infinity and numbers that overflow to them are refused, not forwarded
JSON_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
# A run of 19 digits (a number orjson may read as a float: past 64 bits), found as 19 "0"s in the body with every
# digit mapped to "0" and every other byte to "x" (Gateway.parse_body): ~0.6 µs on a chat body, ~6× faster than
# the regular expression \d{19} (timeit).
DIGITS_AS_ZERO = bytes(48 if 48 <= b <= 57 else 120 for b in range(256))
LONG_NUMBER = b"0" * 19


def json_bytes(value: Any) -> bytes:
    """`value` (parsed from JSON: no NaN or infinity) as compact JSON bytes: orjson (~15× the standard library's
    json.dumps on a chat body, benchmarks/gateway_overhead.py), the standard library for what orjson refuses
    (integers past 64 bits, strings with lone surrogates)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


class RequestIds:
    """Request ids as `"req_" + secrets.token_hex(8)` makes them (64 random bits from os.urandom), drawn `batch` at
    a time: one getrandom system call per `batch` requests instead of one per request."""

    def __init__(self, batch: int = 256):
        self.batch = batch
        self.ready: list[str] = []

    def __call__(self) -> str:
        ready = self.ready
        if not ready:
            digits = os.urandom(8 * self.batch).hex()
            ready.extend("req_" + digits[i : i + 16] for i in range(0, len(digits), 16))
        return ready.pop()


def hot_headers(scope: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(authorization, content-length, x-tokenomy-class) of a request, in one pass over its raw ASGI headers (names
    are lower case in ASGI); "" and None when absent."""
    auth, length, forced = "", None, None
    for name, value in scope["headers"]:
        if name == b"authorization":
            auth = value.decode("latin-1")
        elif name == b"content-length":
            length = value.decode("latin-1")
        elif name == b"x-tokenomy-class":
            forced = value.decode("latin-1")
    return auth, length, forced


def bearer_token(header: str) -> str:
    """The token of an `Authorization: Bearer …` header ("" if it is not one)."""
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A central estimate of prompt tokens (≈3 characters a token, plus per-message framing), for routing and load;
    reservations use the upper bound of schema.shape instead."""
    messages = body.get("messages")
    if isinstance(messages, list):
        chars = 0
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(t) for p in content if isinstance(p, dict) and isinstance(t := p.get("text"), str))
        return math.ceil(chars / 3) + 4 * len(messages) + 3
    prompt = body.get("prompt", body.get("input"))
    if isinstance(prompt, list):
        return sum(math.ceil(len(p) / 3) if isinstance(p, str) else 1 for p in prompt) + 1
    return math.ceil(len(prompt) / 3) + 1 if isinstance(prompt, str) else 1


def count_answer_tokens(answer: Any) -> int:
    """Output tokens of a non-streamed answer without usage, counted with the bundled tokenizer (tokenizer.py)."""
    from tokenomy.tokenizer import count_tokens

    total = 0
    for choice in (answer.get("choices") if isinstance(answer, dict) else None) or []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        texts = [choice.get("text"), message.get("content"), message.get("reasoning_content")]
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                texts += [call["function"].get("name"), call["function"].get("arguments")]
        total += sum(count_tokens(t) for t in texts if isinstance(t, str))
    return total


def count_prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a request without usage, counted with the bundled tokenizer (chat framing included)."""
    from tokenomy.tokenizer import count_chat_tokens, count_tokens

    messages = body.get("messages")
    if isinstance(messages, list):
        extra = sum(count_tokens(json.dumps(body[f])) for f in ("tools", "functions", "response_format") if body.get(f))
        return count_chat_tokens([m for m in messages if isinstance(m, dict)]) + extra
    prompt = body.get("prompt", body.get("input"))
    prompts = prompt if isinstance(prompt, list) and not all(isinstance(p, int) for p in prompt) else [prompt]
    return sum(count_tokens(p) if isinstance(p, str) else len(p) if isinstance(p, list) else 0 for p in prompts)


@dataclass
class Call:
    """One client request on its way through the gateway."""

    request_id: str
    key: ApiKey
    path: str
    body: dict[str, Any]
    stream: bool
    client_wants_usage: bool
    prompt_tokens: int  # a central estimate (routing, load)
    max_tokens: int  # the output cap per sequence, sent upstream
    route: Route
    reservation: Reservation
    started_s: float  # time.time()
    started: float  # perf_counter()
    prompt_bound: int = 0  # an upper bound on prompt tokens (schema.shape): what is reserved
    output_bound: int = 0  # the most it may generate: cap × sequences × prompts
    attempt: int = 0
    notes: list[str] = field(default_factory=list)  # spills and failovers so far
    billed_usd: float = 0.0  # what its ledger rows so far cost (settled if the request ends abruptly)
    billed_tokens: int = 0

    def upstream_body(self, tier: Tier) -> bytes:
        if self.path == EMBEDDINGS_PATH:
            return json_bytes({**self.body, "model": tier.config.model})
        return json_bytes(upstream_fields(self.body, tier.config.model, self.max_tokens, self.stream))

    def reserved(self, tier: Tier) -> tuple[float, int]:
        """What one attempt on `tier` may cost at most: ($, tokens)."""
        return tier.prices.usd(self.prompt_bound, self.output_bound), self.prompt_bound + self.output_bound


@dataclass
class Reply:
    """What one non-streaming attempt got: an answer ("ok"), a refusal ("client_error") or a failure to fail over
    from ("upstream_error"); `reason` says what went wrong."""

    status: str  # as in the ledger
    http_status: int  # 0 when no response came
    content: bytes = b""
    answer: Any = None  # the parsed JSON of an "ok" answer
    tokens_in: int = 0
    tokens_out: int = 0
    reason: str = ""
    keyless: bool = False  # a failure no request could have caused (upstream.keyless)
    counts: bool = True  # a failure the breaker should hear of


class Gateway:
    """A running gateway: tiers, router, keys, budgets, ledger and metrics."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        # issue 14 (ledger durability, shared state): database, journal, keys, budgets and their upkeep (state.py)
        self.state: GatewayState = open_state(config)
        state = self.state
        self.db, self.keys, self.budgets, self.ledger = state.db, state.keys, state.budgets, state.ledger
        self.tiers: list[Tier] = []
        for t in config.tiers:
            api_key = None
            if t.api_key_env:
                api_key = os.environ.get(t.api_key_env)
                if not api_key:
                    log.warning("tier %s: $%s is not set; calling it without an API key", t.name, t.api_key_env)
            deployment = self_hosted_deployment(t) if t.self_hosted else None
            upstream = Upstream(t, config.timeouts, config.circuit, api_key)
            self.tiers.append(Tier(t, upstream, deployment, tier_prices(t, deployment)))
        self.router = Router(config, self.tiers, default_classifier(config.complexity_threshold))
        self.metrics = GatewayMetrics(self)
        self.metrics.registry.register(LedgerCollector(self.state))  # issue 14: dead-letter rows etc.
        self.admin_key = config.admin_key()
        self.request_id = RequestIds()

    def store_limit(self, limit: Limit) -> None:
        """Set a limit here and in the database, for every replica (blocking: the admin API calls it in a thread)."""
        self.state.store_limit(limit)

    async def start(self) -> None:
        for tier in self.tiers:
            tier.upstream.start_polling(self.config.metrics_poll_s)
        self.state.start()  # issue 14: the thread reloading keys and limits (and Redis upkeep)
        # What was loaded to get here (catalogue, cost model, numpy, pydantic…) lives as long as the process:
        # keep it out of the collector's full passes, which would otherwise stall requests for tens of ms.
        gc.collect()
        gc.freeze()
        # A request in flight holds a few hundred container objects; with the default thresholds (700, 10, 10)
        # they are scanned again by every young and middle pass while the stream lasts. Fewer, larger young passes
        # cost ~0.1 ms less CPU per streamed request (benchmarks/gateway_overhead.py); cycles are still collected.
        gc.set_threshold(20_000, 20, 20)

    async def stop(self) -> None:
        """Graceful shutdown: close upstream clients, write every queued ledger row."""
        for tier in self.tiers:
            await tier.upstream.close()
        await self.state.stop()  # issue 14: settlements, ledger rows, journal

    # ---- admission ------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> ApiKey | None:
        token = bearer_token(request.headers.get("authorization", ""))
        return self.keys.verify(token) if token else None

    async def read_body(self, request: Request, declared: str | None = None) -> tuple[dict[str, Any], int]:
        """The request's JSON object and its size in bytes (size-limited, time-limited; raises BadRequest);
        `declared`: its Content-Length header."""
        limit = self.config.limits.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        cycle = request.scope.get(DIRECT_CYCLE)
        if cycle is not None and not cycle.more_body and not cycle.disconnected:
            # The whole body came with the headers (the usual case): uvicorn's receive hands it over without
            # waiting, so no timer is armed for it.
            message = await request.receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                raw = message.get("body", b"")
                if len(raw) > limit:
                    raise BadRequest(413, f"request body exceeds the limit of {limit} bytes")
                return self.parse_body(raw), len(raw)
            raw, size = await self.receive_body(request.receive, [message])
        else:
            raw, size = await self.receive_body(request.receive, [])
        return self.parse_body(raw), size

    async def receive_body(self, receive: Any, messages: list[dict[str, Any]]) -> tuple[bytes, int]:
        """The rest of a request's body after `messages` (size- and time-limited; raises BadRequest)."""
        limit = self.config.limits.max_body_bytes
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.config.timeouts.client_body_s):
                while True:
                    message = messages.pop() if messages else await receive()
                    if message["type"] != "http.request":
                        raise BadRequest(499, "the client went away while sending its request")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise BadRequest(413, f"request body exceeds the limit of {limit} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            s = self.config.timeouts.client_body_s
            raise BadRequest(408, f"the request body did not arrive within {s:g} s", "timeout") from None
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), size

    @staticmethod
    def parse_body(raw: bytes) -> dict[str, Any]:
        """A request body's JSON object (raises BadRequest). orjson where it gives the same value (with the check
        for long numbers, ~2× faster than the standard library on the benchmark's chat body, timeit): it refuses
        NaN, infinities, lone surrogates, invalid UTF-8 and nesting past 1,024 levels, and reads an integer past 64
        bits as a float, so a body it refuses or one with a run of 19 digits goes to the standard library's
        decoder, whose answer (or error) is the one the client gets."""
        if raw.translate(DIGITS_AS_ZERO).find(LONG_NUMBER) < 0:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
            else:
                if not isinstance(body, dict):
                    raise BadRequest(400, "the body must be a JSON object")
                return body
        try:
            body = JSON_DECODER.decode(raw.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(400, f"the body is not valid JSON: {exc}") from None
        except RecursionError:
            raise BadRequest(400, "the body is not usable JSON: it is nested too deeply") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "the body must be a JSON object")
        return body

    def check_body(self, body: dict[str, Any], path: str, body_bytes: int) -> Shape:
        """Check the body against the schema (schema.py); returns what it may cost."""
        limits = self.config.limits
        try:
            return shape(body, path, body_bytes, limits.default_max_tokens, limits.max_tokens, limits.max_n)
        except SchemaError as exc:
            raise BadRequest(exc.status, str(exc), param=exc.param) from None

    async def completion(self, request: Request, path: str) -> Response:
        started, started_s = time.perf_counter(), time.time()
        authorization, declared, forced = hot_headers(request.scope)
        token = bearer_token(authorization)
        key = self.keys.verify(token) if token else None
        if key is None and token:  # not in memory (made by another process?): the keys are reloaded in a thread
            key = await self.state.authenticate_fresh(token)
        if key is None:
            self.metrics.child(self.metrics.rejected, "auth").inc()
            return error_response(
                401, "missing or unknown API key (Authorization: Bearer tk-…)", "authentication_error"
            )
        try:
            body, body_bytes = await self.read_body(request, declared)
            cost = self.check_body(body, path, body_bytes)
            if path == EMBEDDINGS_PATH and body.get("model") == self.router.virtual_model:
                raise BadRequest(400, "embeddings need a named model, not the virtual model", param="model")
        except BadRequest as exc:
            self.metrics.child(self.metrics.rejected, "bad_request").inc()
            return exc.response()
        prompt_tokens = estimate_prompt_tokens(body)
        try:
            route = self.router.route(body, prompt_tokens, cost.cap, forced if forced in CLASSES else None)
        except UnknownModel as exc:
            self.metrics.child(self.metrics.rejected, "unknown_model").inc()
            return error_response(404, str(exc), "invalid_request_error", code="model_not_found", param="model")
        if not route.candidates:
            return error_response(503, f"no tier is configured for class '{route.request_class}'", "no_tier")
        if all(t.config.tokenizer for t in route.candidates):  # every tier's tokenizer known: a tighter bound
            counted = await asyncio.to_thread(tokenized_prompt_bound, body, path, cost.parts)
            if counted is not None:
                cost = dataclasses.replace(cost, prompt_tokens=min(counted, cost.prompt_tokens))
        worst_usd = max(t.prices.usd(cost.prompt_tokens, cost.output_tokens) for t in route.candidates)
        try:
            reservation = await reserve_or_release(
                self.budgets, key.key_id, key.team, worst_usd, cost.prompt_tokens + cost.output_tokens
            )
        except OverBudget as exc:
            self.metrics.child(self.metrics.rejected, "budget").inc()
            exc.body["error"].setdefault("param", None)
            return JSONResponse(exc.body, status_code=429, headers={"retry-after": str(exc.retry_after_s)})
        except BudgetsUnavailable as exc:  # issue 14: shared budgets (Redis) unreachable: refuse, never overspend
            return error_response(503, str(exc), "service_unavailable")
        stream = body.get("stream") is True
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        call = Call(
            request_id=self.request_id(),
            key=key,
            path=path,
            body=body,
            stream=stream,
            client_wants_usage=wants_usage,
            prompt_tokens=prompt_tokens,
            max_tokens=cost.cap,
            route=route,
            reservation=reservation,
            started_s=started_s,
            started=started,
            prompt_bound=cost.prompt_tokens,
            output_bound=cost.output_tokens,
        )
        self.state.admitted(call)  # issue 14: the write-ahead journal row, closed when the reservation settles
        # Until a response is ready, a client that leaves cancels the work: the upstream request is dropped and
        # the reservation released (a started stream has its own watcher, SSEResponse).
        task = asyncio.current_task()
        watch = Watch(task)
        watcher = watch.start(request.scope.get(DIRECT_CYCLE), request.receive)
        try:
            if self.config.routes and (policy := policy_for(self.config.routes, route)) is not None:
                return await respond(self, call, policy)  # validate and escalate (escalate.py)
            if stream:
                return await self.stream(call)
            return await self.once(call)
        except asyncio.CancelledError:
            self.budgets.settle(reservation, call.billed_usd, call.billed_tokens)  # no-op if already settled
            if watch.gone and task is not None and task.uncancel() == 0:
                self.metrics.child(self.metrics.requests, "", route.request_class, "cancelled").inc()
                return error_response(499, "the client went away", "client_closed_request")
            raise
        except BaseException:
            self.budgets.settle(reservation, call.billed_usd, call.billed_tokens)
            raise
        finally:
            watch.stop(watcher)

    # ---- trying tiers ---------------------------------------------------------------------------

    def order(self, call: Call) -> list[Tier]:
        """Candidates not spilling first (cheapest first), then those that spill, as a last resort."""
        ready, spilling = [], []
        for tier in call.route.candidates:
            why = tier.spill_reason()
            if why is None:
                ready.append(tier)
            else:
                spilling.append(tier)
                call.notes.append(f"spill: {why}")
                self.metrics.child(self.metrics.spills, tier.name).inc()
        return ready + spilling

    def record(
        self,
        call: Call,
        tier: Tier,
        status: str,
        http_status: int,
        tokens_in: int = 0,
        tokens_out: int = 0,
        ttft_s: float | None = None,
        reason: str = "",
        usage: Any = None,
    ) -> float:
        """Write the attempt's ledger row, ending now and noting the request's spills and failovers so far; `usage`
        (the upstream's) gives its cached input and reasoning tokens (ledger.py `usage_details`)."""
        reason = "; ".join(r for r in ("; ".join(call.notes), reason) if r)
        e2e_s = time.perf_counter() - call.started
        details = usage_details(usage)
        args = (call, tier, status, http_status, tokens_in, tokens_out, ttft_s, e2e_s, reason)
        return self.write_attempt(*args, **details)

    def write_attempt(
        self,
        call: Call,
        tier: Tier,
        status: str,
        http_status: int,
        tokens_in: int,
        tokens_out: int,
        ttft_s: float | None,
        e2e_s: float | None,
        reason: str,
        **validated: Any,
    ) -> float:
        """Write the request's next ledger row and count it in the metrics; returns its cost. `validated` holds
        the validation columns of Attempt (validated routes only, escalate.py)."""
        cost = tier.prices.usd(tokens_in, tokens_out, validated.get("cached_tokens_in") or 0)
        if (tokens_in or tokens_out) and status != "judge":
            reason = self.check_reservation(call, tier, tokens_in, tokens_out, cost, reason)
        self.ledger.record(
            Attempt(
                request_id=call.request_id,
                attempt=call.attempt,
                ts_s=call.started_s,
                key_id=call.key.key_id,
                team=call.key.team,
                model=call.route.model,
                request_class=call.route.request_class,
                p_complex=call.route.p_complex,
                tier=tier.name,
                upstream_model=tier.config.model,
                stream=call.stream,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost_usd=cost,
                ttft_s=ttft_s,
                e2e_s=e2e_s,
                status=status,
                http_status=http_status,
                reason=reason,
                **validated,
            )
        )
        call.attempt += 1
        call.billed_usd += cost
        call.billed_tokens += tokens_in + tokens_out
        m = self.metrics
        m.child(m.attempts, tier.name, status).inc()
        if cost:
            m.child(m.cost, tier.name).inc(cost)
            m.child(m.tokens, tier.name, "input").inc(tokens_in)
            m.child(m.tokens, tier.name, "output").inc(tokens_out)
        return cost

    def check_reservation(
        self, call: Call, tier: Tier, tokens_in: int, tokens_out: int, cost: float, reason: str
    ) -> str:
        """The row's reason, with a flag (and a metric, and a log line) when the attempt used more than one
        attempt's reservation, or more prompt or output tokens than their bounds: a bound did not hold."""
        reserved_usd, reserved_tokens = call.reserved(tier)
        within = tokens_in <= call.prompt_bound and tokens_out <= call.output_bound
        if within and cost <= reserved_usd * (1 + 1e-9) + 1e-12:
            return reason
        self.metrics.child(self.metrics.over_reservation, tier.name).inc()
        flag = (
            f"over_reservation: used {tokens_in}+{tokens_out} tokens (${cost:.6f}), "
            f"reserved {reserved_tokens} tokens (${reserved_usd:.6f})"
        )
        log.warning("request %s on tier %s: %s", call.request_id, tier.name, flag)
        return "; ".join(r for r in (reason, flag) if r)

    def failed(
        self, call: Call, tier: Tier, http_status: int, what: str, keyless: bool = False, counts: bool = True
    ) -> None:
        """An attempt that failed before the first byte: its ledger row, then `fail_over`."""
        self.record(call, tier, "upstream_error", http_status, reason=what)
        self.fail_over(call, tier, what, keyless, counts)

    def fail_over(self, call: Call, tier: Tier, what: str, keyless: bool = False, counts: bool = True) -> None:
        """After a failed attempt's row: the breaker hears of it (as this key's failure, or nobody's when no request
        could have caused it; not at all when `counts` is false), the next attempt's row carries a note of it."""
        if counts:
            tier.upstream.failed(None if keyless else call.key.key_id, what)
        else:
            tier.upstream.breaker.release()
        call.notes.append(f"failover: {tier.name}: {what}")
        self.metrics.child(self.metrics.failovers, tier.name).inc()

    def finish(self, call: Call, tier: Tier | None, status: str, cost: float, tokens: int) -> None:
        self.budgets.settle(call.reservation, cost, tokens)
        self.metrics.child(self.metrics.requests, tier.name if tier else "", call.route.request_class, status).inc()

    def all_failed(self, call: Call) -> JSONResponse:
        self.finish(call, None, "upstream_error", 0.0, 0)
        tried = "; ".join(call.notes) or "every eligible tier's circuit breaker is open"
        return error_response(
            502 if call.attempt else 503, f"no upstream could answer: {tried}", "upstream_unavailable"
        )

    def headers(self, call: Call, tier: Tier) -> dict[str, str]:
        return {
            "x-request-id": call.request_id,
            "x-tokenomy-tier": tier.name,
            "x-tokenomy-class": call.route.request_class,
        }

    async def exchange(self, call: Call, tier: Tier, body: bytes) -> Reply:
        """One non-streaming attempt on one tier: send the body, read the answer, account the tier's load.

        The breaker hears of an answer (200 or 4xx), and of nothing when the client goes away; a failure is
        left to the caller, which writes the attempt's row and fails over (`failed`).
        """
        up = tier.upstream
        load_tokens = up.scaled(call.prompt_tokens)
        up.sent(load_tokens)
        up.first_token(load_tokens)  # no first-token signal without streaming: count it as decoding
        total_s = self.config.timeouts.total_s  # a non-streamed answer sends nothing until it is done
        try:
            async with asyncio.timeout(total_s):
                resp = await up.post(call.path, body, read_s=total_s)
                try:
                    status, content = resp.status, await resp.read()
                finally:
                    resp.release()
        except CLIENT_ERRORS as exc:
            return Reply(
                "upstream_error", 0, reason=describe(exc), keyless=unreachable(exc), counts=counts_against_upstream(exc)
            )
        except asyncio.CancelledError:
            up.breaker.release()
            raise
        finally:
            up.finished(load_tokens, True)
        if status in RETRYABLE_STATUS or status >= 500 or status < 200 or 300 <= status < 400:
            return Reply("upstream_error", status, reason=f"HTTP {status}" + redirect_note(status))
        up.breaker.success()
        if status >= 400:  # the request itself is wrong: the client gets the upstream's answer
            content = upstream_error_body(status, content, tier.name)
            return Reply("client_error", status, content, reason=content[:200].decode(errors="replace"))
        try:
            answer = json.loads(content)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return Reply("upstream_error", status, reason="the upstream's answer is not JSON")
        usage = answer.get("usage") if isinstance(answer, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        reason = ""
        tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(tokens_in, int) or (not isinstance(tokens_out, int) and call.path != EMBEDDINGS_PATH):
            reason = "tokens counted by the gateway: no usage from the upstream"
            if not isinstance(tokens_in, int):
                tokens_in = await asyncio.to_thread(count_prompt_tokens, call.body)
            if not isinstance(tokens_out, int):
                tokens_out = await asyncio.to_thread(count_answer_tokens, answer)
        else:
            up.learn_prompt_tokens(call.prompt_tokens, tokens_in)
        if call.path == EMBEDDINGS_PATH:
            tokens_out = 0
        return Reply("ok", status, content, answer, tokens_in, tokens_out or 0, reason=reason)

    async def once(self, call: Call) -> Response:
        """A non-streaming request: the first tier that answers wins."""
        for tier in self.order(call):
            if not tier.upstream.breaker.allow():
                call.notes.append(f"skip: {tier.name}: circuit open")
                continue
            self.metrics.admission.observe(time.perf_counter() - call.started)
            try:
                reply = await self.exchange(call, tier, call.upstream_body(tier))
            except asyncio.CancelledError:
                self.record(call, tier, "cancelled", 499, reason="client went away")
                raise
            if reply.status == "upstream_error":
                self.failed(call, tier, reply.http_status, reply.reason, reply.keyless, reply.counts)
                continue
            if reply.status == "client_error":
                self.record(call, tier, "client_error", reply.http_status, reason=reply.reason)
                self.finish(call, tier, "client_error", 0.0, 0)
                return Response(reply.content, reply.http_status, self.headers(call, tier), "application/json")
            usage = reply.answer.get("usage") if isinstance(reply.answer, dict) else None
            cost = self.record(call, tier, "ok", 200, reply.tokens_in, reply.tokens_out, None, reply.reason, usage)
            self.finish(call, tier, "ok", cost, reply.tokens_in + reply.tokens_out)
            return Response(reply.content, 200, self.headers(call, tier), "application/json")
        return self.all_failed(call)

    async def stream(self, call: Call, relay_type: Any = None) -> Response:
        """A streaming request: fail over until a tier sends its first token, then relay its stream."""
        for tier in self.order(call):
            up = tier.upstream
            if not up.breaker.allow():
                call.notes.append(f"skip: {tier.name}: circuit open")
                continue
            relay = (relay_type or Relay)(self, call, tier)
            up.sent(relay.load_tokens)
            try:
                self.metrics.admission.observe(time.perf_counter() - call.started)
                first = await relay.open()
            except UpstreamFailed as exc:
                up.finished(relay.load_tokens, False)
                self.failed(call, tier, exc.http_status, str(exc), exc.keyless, exc.counts)
                continue
            except ClientError as exc:
                up.finished(relay.load_tokens, False)
                up.breaker.success()
                self.record(call, tier, "client_error", exc.http_status, reason=exc.body[:200].decode(errors="replace"))
                self.finish(call, tier, "client_error", 0.0, 0)
                return Response(exc.body, exc.http_status, self.headers(call, tier), "application/json")
            except asyncio.CancelledError:
                up.finished(relay.load_tokens, False)
                up.breaker.release()
                relay.close()
                self.record(call, tier, "cancelled", 499, reason="client went away")
                raise
            up.first_token(relay.load_tokens)
            headers = [
                *SSE_HEADERS,
                (b"x-request-id", call.request_id.encode()),
                (b"x-tokenomy-tier", tier.name.encode()),
                (b"x-tokenomy-class", call.route.request_class.encode()),
            ]  # self.headers, as bytes
            return SSEResponse(relay, first, headers)
        return self.all_failed(call)

    # ---- the rest of the API --------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        if self.authenticate(request) is None:
            return error_response(401, "missing or unknown API key", "authentication_error")
        now = int(time.time())
        data = [{"id": self.router.virtual_model, "object": "model", "created": now, "owned_by": "tokenomy"}]
        seen = {self.router.virtual_model}
        for t in self.tiers:
            if t.config.model not in seen:
                seen.add(t.config.model)
                data.append({"id": t.config.model, "object": "model", "created": now, "owned_by": t.name})
        return JSONResponse({"object": "list", "data": data})

    async def healthz(self, _request: Request) -> Response:
        tiers = {t.name: {"breaker": t.upstream.breaker.state, "spilling": t.spilling} for t in self.tiers}
        return JSONResponse({"status": "ok", "tiers": tiers, "ledger_pending_rows": self.ledger.pending()})

    async def prometheus(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class Watch:
    """Watches a request until its response is ready; a disconnect cancels the request.

    Under uvicorn (serve.py gives its request-response cycle) the server calls `disconnected` when the connection
    is lost: no task per request. Under any other ASGI server a task waits on the receive channel instead.
    """

    __slots__ = ("gone", "done", "task", "cycle")

    def __init__(self, task: asyncio.Task | None) -> None:
        self.gone = False
        self.done = False
        self.task = task
        self.cycle: Any = None

    def start(self, cycle: Any, receive: Any) -> asyncio.Task | None:
        """Begin watching; returns the watcher task, None when the server's callback does the watching."""
        if cycle is not None and hasattr(cycle, DISCONNECT_HOOK):
            self.cycle = cycle
            if cycle.disconnected:
                self.disconnected()
            else:
                setattr(cycle, DISCONNECT_HOOK, self.disconnected)
                cycle.flow.resume_reading()  # a connection not read from would not tell of its end
            return None
        return asyncio.get_running_loop().create_task(self.run(receive))

    def stop(self, watcher: asyncio.Task | None) -> None:
        self.done = True
        if watcher is not None:
            watcher.cancel()
        elif self.cycle is not None and getattr(self.cycle, DISCONNECT_HOOK) == self.disconnected:
            setattr(self.cycle, DISCONNECT_HOOK, None)

    def disconnected(self) -> None:
        if not self.done and self.task is not None:
            self.gone = True
            self.task.cancel()

    async def run(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected()


def upstream_error_body(status: int, content: bytes, tier: str) -> bytes:
    """An upstream's 4xx body as the client gets it: as sent when it is an OpenAI error object (its missing
    fields filled in), else wrapped in one that quotes it."""
    try:
        answer = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        answer = None
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        if ERROR_KEYS <= error.keys():
            return content
        kind = error.get("type") if isinstance(error.get("type"), str) else "invalid_request_error"
        filled = {"type": kind, "code": error.get("code") or kind, "param": error.get("param"), **error}
        return json.dumps({**answer, "error": filled}).encode()
    text = content[:300].decode(errors="replace").strip() or "(no body)"
    message = f"upstream {tier} answered HTTP {status}: {text}"
    return json.dumps(error_body(message, "invalid_request_error", code=f"upstream_http_{status}")).encode()


ERROR_KEYS = frozenset({"message", "type", "code", "param"})


def redirect_note(status: int) -> str:
    """Why an upstream's 1xx/3xx answer is an error: the gateway follows no redirects."""
    return " (a redirect: the gateway follows none; check the tier's url)" if 300 <= status < 400 else ""


class UpstreamFailed(Exception):
    """The upstream failed before its first token: fail over."""

    def __init__(self, message: str, http_status: int = 0, keyless: bool = False, counts: bool = True):
        super().__init__(message)
        self.http_status = http_status
        self.keyless = keyless
        self.counts = counts


class ClientError(Exception):
    """The upstream refused the request itself (4xx): pass its answer to the client."""

    def __init__(self, http_status: int, body: bytes):
        super().__init__(f"HTTP {http_status}")
        self.http_status = http_status
        self.body = body


# MARKERS_NOTE: the relay looks for byte markers with bytes.find, not `in`: on CPython 3.11 `marker in chunk` first
# tries the marker as an integer (a byte value) and raises and clears a TypeError before it searches (~1,700
# instructions each under callgrind; find: half the time of `in` on a token event, timeit), and the relay does
# four such checks per upstream read.


def _is_opening(event: bytes) -> bool:
    """A chat stream's first event carries the role and no text yet."""
    find = event.find  # not `in`: see MARKERS_NOTE
    return find(b'"role"') >= 0 and (find(b'"content":""') >= 0 or find(b'"content": ""') >= 0)


class Relay:
    """One upstream SSE stream, passed on as its bytes arrive: whole events, one client send per upstream read.

    Per read it looks only for byte markers: content events (for the first token and, without usage,
    the output count), `[DONE]`, an error event, and the usage event (parsed once, and dropped when
    the gateway asked for it but the client did not).
    """

    def __init__(self, gateway: Gateway, call: Call, tier: Tier):
        self.gateway = gateway
        self.call = call
        self.tier = tier
        self.response: UpstreamResponse | None = None
        self.buffer = b""  # an incomplete event held until its end arrives
        self.done = False
        self.usage: dict[str, Any] | None = None
        self.content_events = 0
        self.ttft_s: float | None = None
        self.upstream_error = ""
        self.client_gone = False
        self.deadline = call.started + gateway.config.timeouts.total_s
        self.load_tokens = tier.upstream.scaled(call.prompt_tokens)  # the prompt as counted in the tier's load
        self.cycle: Any = None  # uvicorn's request-response cycle of the client (serve.py), when the server gives it

    async def open(self) -> bytes:
        """Send the request and read until the first token; returns the bytes to send the client first."""
        up = self.tier.upstream
        timeouts = self.gateway.config.timeouts
        try:
            self.response = response = await up.post(
                self.call.path, self.call.upstream_body(self.tier), read_s=timeouts.first_byte_s
            )
        except CLIENT_ERRORS as exc:
            raise UpstreamFailed(describe(exc), 0, unreachable(exc), counts_against_upstream(exc)) from None
        status = response.status
        if status != 200:
            body = await self._read_error_body(response)
            if status in RETRYABLE_STATUS or status >= 500 or status < 400:
                raise UpstreamFailed(f"HTTP {status}" + redirect_note(status), status)
            body = upstream_error_body(status, body, self.tier.name)
            raise ClientError(status, body)
        held = b""
        try:
            while True:
                chunk = await response.read_chunk()
                if not chunk:
                    raise UpstreamFailed("the stream ended before its first token")
                out = self.feed(chunk)
                if self.upstream_error:
                    raise UpstreamFailed(f"error event before the first token: {self.upstream_error}")
                if self.content_events or self.done:
                    self.ttft_s = time.perf_counter() - self.call.started
                    response.set_read_timeout(timeouts.read_s)  # from now on: the longest wait between reads
                    return held + out if held else out
                held += out
        except CLIENT_ERRORS as exc:
            self.close()
            raise UpstreamFailed(describe(exc), 0, unreachable(exc), counts_against_upstream(exc)) from None
        except BaseException:
            self.close()
            raise

    @staticmethod
    async def _read_error_body(response: UpstreamResponse) -> bytes:
        try:
            return await response.read()
        except CLIENT_ERRORS:
            return b""
        finally:
            response.release()

    def feed(self, chunk: bytes) -> bytes:
        """Complete SSE events out of the bytes received so far, as they go to the client."""
        if chunk.find(b"\r") >= 0:  # not `in`: see MARKERS_NOTE
            chunk = chunk.replace(b"\r\n", b"\n")
        if self.buffer:
            chunk = self.buffer + chunk
            self.buffer = b""
        if not chunk.endswith(b"\n\n"):
            end = chunk.rfind(b"\n\n")
            if end < 0:
                self.buffer = chunk
                return b""
            self.buffer = chunk[end + 2 :]
            chunk = chunk[: end + 2]
        find = chunk.find
        if (
            find(b"[DONE]") < 0 and find(b'"error"') < 0 and find(b'"usage":{') < 0 and find(b'"usage": {') < 0
        ):  # the common case: only content events
            events = chunk.count(b"\n\n")
            if not self.content_events and _is_opening(chunk):
                events -= 1
            self.content_events += events
            return chunk
        out = []
        for event in chunk.split(b"\n\n")[:-1]:
            event += b"\n\n"
            if event.startswith(b"data: [DONE]"):
                self.done = True
            elif event.startswith(b'data: {"error"'):
                self.upstream_error = event[6:200].decode(errors="replace").strip()
            elif event.find(b'"usage":{') >= 0 or event.find(b'"usage": {') >= 0:
                self._read_usage(event)
                no_choices = event.find(b'"choices":[]') >= 0 or event.find(b'"choices": []') >= 0
                if no_choices and not self.call.client_wants_usage:
                    continue  # the client did not ask for the usage event the gateway asked for
            elif not _is_opening(event):
                self.content_events += 1
            out.append(event)
        return b"".join(out)

    def _read_usage(self, event: bytes) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            self.usage = orjson.loads(event[5:]).get("usage") or self.usage

    def forward(self, response: UpstreamResponse) -> bool:
        """Pass on what one upstream read brought, straight to the client's connection, while `pump` waits
        (the upstream connection calls this: no task switch, no ASGI message per token). Only the common case:
        whole content events, client connected and taking bytes, within the deadline; anything else (the end,
        an error or usage event, a partial event, a paused or gone client) returns False and `pump` handles it.
        It runs after the first token (`pump` sets it), so the opening event is behind it.
        The bytes the client gets are those `pump` would send: one HTTP chunk per upstream read."""
        cycle = self.cycle
        if self.client_gone or self.buffer or cycle.disconnected or cycle.flow.write_paused:
            return False
        chunks = response.chunks
        chunk = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        find = chunk.find  # not `in`: see MARKERS_NOTE
        if find(b"[DONE]") >= 0 or find(b'"error"') >= 0 or find(b'"usage"') >= 0 or find(b"\r") >= 0:
            return False
        if perf_counter() > self.deadline:
            return False
        response.drop_taken()  # `chunk` holds them
        if chunk.endswith(b"\n\n"):
            # Whole content events (feed's common case, its checks done above); the opening event came before the
            # first token, so every event here counts.
            self.content_events += chunk.count(b"\n\n")
            out = chunk
        else:
            out = self.feed(chunk)
        if out:
            cycle.transport.write(b"%x\r\n%b\r\n" % (len(out), out))  # uvicorn's chunked framing (httptools_impl)
        return True

    def direct(self) -> bool:
        """Whether `forward` may write to the client's connection: uvicorn's cycle is known (serve.py) and its
        response started, chunked, not complete."""
        cycle = self.cycle
        return (
            cycle is not None
            and cycle.response_started
            and cycle.chunked_encoding is True
            and not cycle.response_complete
            and cycle.scope.get("method") == "POST"
        )

    async def pump(self, send: Any) -> None:
        """Send the client the stream after its first bytes, ending the response body.

        If the upstream fails after the first byte the stream ends with an error event, never a
        truncated success. While it waits for the upstream, `forward` passes on the common reads itself.
        """
        response = self.response
        assert response is not None
        take, wait = response.take, response.wait
        if self.direct():
            response.sink = self.forward
        try:
            while not self.done:
                chunk = take()
                if chunk is None:  # what usually happens: wait for the next token
                    await wait()
                    if self.client_gone:
                        return
                    continue
                if self.client_gone:
                    return
                if not chunk:
                    self.upstream_error = "the upstream closed the stream before [DONE]"
                    break
                out = self.feed(chunk)
                if self.done or self.upstream_error:  # the last bytes: the upstream's [DONE] or its own error event
                    await send({"type": "http.response.body", "body": out, "more_body": False})
                    return
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if time.perf_counter() > self.deadline:
                    raise TimeoutError(f"the request took longer than {self.gateway.config.timeouts.total_s:g} s")
        except CLIENT_ERRORS as exc:
            self.upstream_error = describe(exc)
        finally:
            response.sink = None
        if self.upstream_error:
            message = f"upstream {self.tier.name} failed mid-stream: {self.upstream_error}"
            await send({"type": "http.response.body", "body": sse_error(message), "more_body": False})

    async def release(self) -> None:
        """Give the upstream connection back to the pool after a complete stream (close it otherwise)."""
        response = self.response
        if response is None:
            return
        if not self.done or self.upstream_error:
            response.close()
            return
        if not response.at_eof():  # the chunked encoding's end follows [DONE]: read it so the connection is reusable
            response.set_read_timeout(DRAIN_S)  # the response's own read timer: no second timer for this wait
            until = perf_counter() + DRAIN_S
            try:
                while await response.read_chunk():
                    if perf_counter() > until:  # bytes keep coming after [DONE]: not a connection to reuse
                        response.close()
                        return
            except CLIENT_ERRORS:
                response.close()
                return
        response.release()

    def close(self) -> None:
        if self.response is not None:
            self.response.close()

    def abandon(self) -> None:
        """The client left: stop relaying now (the relay's wait for the next upstream read ends at once)."""
        self.client_gone = True
        if self.response is not None:
            self.response._wake()

    def account(self) -> tuple[str, str, int, int]:
        """Account the finished stream with its upstream (load, prompt size, breaker) and in the TTFT metric;
        returns the attempt's status, what went wrong ("" if nothing), and its input and output tokens."""
        call, up = self.call, self.tier.upstream
        usage = self.usage or {}
        tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        tokens_in = tokens_in if isinstance(tokens_in, int) else count_prompt_tokens(call.body)
        tokens_out = tokens_out if isinstance(tokens_out, int) else self.content_events
        up.finished(self.load_tokens, True, tokens_out)
        up.learn_prompt_tokens(call.prompt_tokens, int(usage.get("prompt_tokens") or 0))
        if self.done and not self.upstream_error:
            status, reason = "ok", ""
            up.breaker.success()
        elif self.client_gone:  # whatever happened upstream after the client left says nothing of it
            status, reason = "cancelled", "client went away mid-stream"
            up.breaker.release()
        else:
            status, reason = "stream_error", self.upstream_error
            up.failed(call.key.key_id, self.upstream_error)
        if self.ttft_s is not None:
            metrics = self.gateway.metrics
            metrics.child(metrics.ttft, self.tier.name).observe(self.ttft_s)
        return status, reason, tokens_in, tokens_out

    def settle(self) -> None:
        """Account the finished stream: breaker, load, ledger row, budget."""
        status, reason, tokens_in, tokens_out = self.account()
        if not self.usage:
            reason = "; ".join(r for r in (reason, "tokens estimated: no usage from the upstream") if r)
        cost = self.gateway.record(
            self.call, self.tier, status, 200, tokens_in, tokens_out, self.ttft_s, reason, usage=self.usage
        )
        self.gateway.finish(self.call, self.tier, status, cost, tokens_in + tokens_out)


class SSEResponse:
    """A plain ASGI response relaying a stream; the client leaving (the server's disconnect callback, or a watcher
    task on `receive` under another server) stops the relay.

    Under uvicorn the status line, headers and first bytes go out in one write (`start_direct`, as uvicorn's
    `send` would frame them); the rest goes through `send`, or `Relay.forward` for the token reads.
    """

    def __init__(self, relay: Relay, first: bytes, headers: list[tuple[bytes, bytes]]):
        self.relay = relay
        self.first = first
        self.headers = headers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        relay = self.relay
        cycle = relay.cycle = scope.get(DIRECT_CYCLE)
        watcher = None
        if cycle is not None and hasattr(cycle, DISCONNECT_HOOK):
            if cycle.disconnected:
                relay.abandon()
            else:
                setattr(cycle, DISCONNECT_HOOK, relay.abandon)
        else:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                relay.abandon()

            watcher = asyncio.create_task(watch())
        try:
            if relay.done or not self.start_direct(cycle):
                await send({"type": "http.response.start", "status": 200, "headers": self.headers})
                await send({"type": "http.response.body", "body": self.first, "more_body": not relay.done})
            if not relay.done:
                await relay.pump(send)
        finally:
            if watcher is not None:
                watcher.cancel()
            elif cycle is not None and getattr(cycle, DISCONNECT_HOOK, None) == relay.abandon:
                setattr(cycle, DISCONNECT_HOOK, None)
            relay.settle()
            await relay.release()

    def start_direct(self, cycle: Any) -> bool:
        """Write the status line, headers and first bytes to uvicorn's connection in one write, as its `send` would
        (its default headers, chunked encoding, `connection: close` when not kept alive), updating its cycle; False
        (nothing written) when the cycle is not in the plain state this expects."""
        if (
            cycle is None
            or cycle.response_started
            or cycle.disconnected
            or cycle.access_log
            or cycle.flow.write_paused
            or cycle.scope.get("method") != "POST"
        ):
            return False
        head = [b"HTTP/1.1 200 OK\r\n"]
        for name, value in (*cycle.default_headers, *self.headers):
            if value.find(b"\r") >= 0 or value.find(b"\n") >= 0 or name.find(b":") >= 0:  # uvicorn refuses these
                return False
            head += [name.lower(), b": ", value, b"\r\n"]
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"transfer-encoding: chunked\r\n\r\n")
        first = self.first
        if first:
            head += [b"%x\r\n" % len(first), first, b"\r\n"]
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        cycle.chunked_encoding = True
        cycle.expected_content_length = 0
        cycle.transport.write(b"".join(head))
        return True


def admin_routes(gateway: Gateway) -> list[HttpRoute]:
    """Keys, budgets and spend, behind the admin key."""

    def authorised(request: Request) -> Response | None:
        if gateway.admin_key is None:
            return error_response(
                403, f"the admin API is off: set ${gateway.config.admin_key_env} to enable it", "permission_error"
            )
        if not same_secret(bearer_token(request.headers.get("authorization", "")), gateway.admin_key):
            return error_response(401, "admin key required", "authentication_error")
        return None

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "the body must be a JSON object")
        return body

    async def keys(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        if request.method == "GET":
            listing = [
                {"key_id": k.key_id, "team": k.team, "name": k.name, "created_s": k.created_s}
                for k in gateway.keys.list()
            ]
            return JSONResponse({"keys": listing})
        try:
            body = await json_body(request)
            team = body.get("team")
            if not isinstance(team, str) or not team:
                raise BadRequest(400, "'team' (a non-empty string) is required")
            record, key = await asyncio.to_thread(gateway.keys.create, team, str(body.get("name", "")))
        except BadRequest as exc:
            return error_response(exc.status, str(exc), exc.kind)
        return JSONResponse({"key_id": record.key_id, "key": key, "team": record.team, "name": record.name}, 201)

    async def revoke(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        key_id = request.path_params["key_id"]
        if not await asyncio.to_thread(gateway.keys.revoke, key_id):
            return error_response(404, f"no active key '{key_id}'", "not_found")
        return JSONResponse({"revoked": key_id})

    async def budgets(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        if request.method == "GET":
            return JSONResponse({"budgets": await gateway.budgets.areport()})
        try:
            body = await json_body(request)
            limit = Limit(
                scope=str(body.get("scope")),
                owner=str(body.get("owner", "")),
                period=str(body.get("period", "day")),
                usd=None if body.get("usd") is None else float(body["usd"]),
                tokens=None if body.get("tokens") is None else int(body["tokens"]),
            )
            if not limit.owner or (limit.usd is None and limit.tokens is None):
                raise BadRequest(400, "a budget needs scope (key|team), owner, period (day|month), and usd or tokens")
            await asyncio.to_thread(gateway.store_limit, limit)
        except (BadRequest, ValueError, TypeError) as exc:
            return error_response(getattr(exc, "status", 400), str(exc), "invalid_request_error")
        return JSONResponse({"budget": limit.__dict__})

    async def spend(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        period = request.query_params.get("period", "day")
        if period not in ("day", "month"):
            return error_response(400, "period must be day or month", "invalid_request_error")
        since = period_start_s(period, time.time())
        rows = await asyncio.to_thread(
            gateway.db.execute,
            "SELECT team, tier, request_class, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_usd) "
            "FROM attempts WHERE ts_s >= ? GROUP BY team, tier, request_class ORDER BY team, tier",
            (since,),
        )
        names = ("team", "tier", "class", "attempts", "tokens_in", "tokens_out", "usd")
        return JSONResponse(
            {"period": period, "since_s": since, "spend": [dict(zip(names, r, strict=True)) for r in rows]}
        )

    return [
        HttpRoute("/admin/keys", keys, methods=["GET", "POST"]),
        HttpRoute("/admin/keys/{key_id}", revoke, methods=["DELETE"]),
        HttpRoute("/admin/budgets", budgets, methods=["GET", "PUT"]),
        HttpRoute("/admin/spend", spend, methods=["GET"]),
    ]


class GatewayApp:
    """The gateway's ASGI app: POSTs to the completion endpoints (the hot path) go straight to the Gateway;
    everything else (lifespan, models, metrics, health, admin) through Starlette's routing. Past
    `limits.max_concurrent` requests in flight it answers 503; whatever goes wrong, the client gets an
    OpenAI-shaped JSON error."""

    def __init__(self, gateway: Gateway, starlette: Starlette):
        self.gateway = gateway
        self.starlette = starlette
        self.state = starlette.state
        self.hot = {"/v1" + p: p for p in (CHAT_PATH, COMPLETIONS_PATH, EMBEDDINGS_PATH)}
        self.active = 0
        self.max_active = gateway.config.limits.max_concurrent

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = self.hot.get(scope["path"])
            if path is not None:
                await self.hot_path(scope, receive, send, path)
                return
        await self.starlette(scope, receive, send)

    async def hot_path(self, scope: dict[str, Any], receive: Any, send: Any, path: str) -> None:
        if self.active >= self.max_active:
            self.gateway.metrics.child(self.gateway.metrics.rejected, "overloaded").inc()
            busy = f"the gateway has {self.active} requests in flight (limits.max_concurrent); retry shortly"
            await error_response(503, busy, "overloaded", code="overloaded")(scope, receive, send)
            return
        self.active += 1
        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await self.gateway.completion(Request(scope, receive), path)
            await response(scope, receive, tracked_send)
        except Exception:
            log.exception("internal error on %s", scope["path"])
            cycle = scope.get(DIRECT_CYCLE)
            if not started and not (cycle is not None and cycle.response_started):  # SSEResponse.start_direct
                internal = error_response(500, "internal error in the gateway (logged)", "internal_error")
                await internal(scope, receive, send)
        finally:
            self.active -= 1


def json_error_handlers() -> dict[Any, Any]:
    """Starlette's own errors (404, 405, an exception in a handler) as OpenAI-shaped JSON, not plain text."""

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        if status == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
            return error_response(404, message, "invalid_request_error", code="not_found")
        if status == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
            headers = getattr(exc, "headers", None) or {}
            body = error_body(message, "invalid_request_error", code="method_not_allowed")
            return JSONResponse(body, status_code=405, headers=headers)
        return error_response(status, str(getattr(exc, "detail", "")) or "error", "invalid_request_error")

    async def internal(_request: Request, _exc: Exception) -> Response:
        log.exception("internal error", exc_info=_exc)
        return error_response(500, "internal error in the gateway (logged)", "internal_error")

    return {StarletteHTTPException: http_error, Exception: internal}


def build_app(config: GatewayConfig) -> GatewayApp:
    """The gateway as an ASGI app; `app.state.gateway` is the Gateway (started and stopped with the app)."""
    from tokenomy.gateway.serve import GatewayHttpProtocol

    GatewayHttpProtocol.header_timeout_s = config.timeouts.client_header_s  # what uvicorn serves this process with
    gateway = Gateway(config)

    async def chat(request: Request) -> Response:
        return await gateway.completion(request, CHAT_PATH)

    async def completions(request: Request) -> Response:
        return await gateway.completion(request, COMPLETIONS_PATH)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    async def embeddings(request: Request) -> Response:
        return await gateway.completion(request, EMBEDDINGS_PATH)

    routes = [
        HttpRoute("/v1/chat/completions", chat, methods=["POST"]),
        HttpRoute("/v1/completions", completions, methods=["POST"]),
        HttpRoute("/v1/embeddings", embeddings, methods=["POST"]),
        HttpRoute("/v1/models", gateway.models, methods=["GET"]),
        HttpRoute("/healthz", gateway.healthz, methods=["GET"]),
        HttpRoute("/metrics", gateway.prometheus, methods=["GET"]),
        *admin_routes(gateway),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=json_error_handlers())
    app.state.gateway = gateway
    return GatewayApp(gateway, app)
