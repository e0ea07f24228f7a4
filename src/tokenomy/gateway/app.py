"""The gateway's HTTP app: OpenAI-compatible endpoints in front of the tiers, /metrics, /healthz, admin API.

A completion request goes: authenticate the virtual key → read the body (size-limited) → check
max_tokens → route (classify `auto`, pick eligible tiers cheapest first) → reserve its worst-case
cost against the budgets → try the tiers in order. Before the first byte reaches the client, a
connect error, timeout, 5xx or 429 fails over to the next tier; a streamed response is passed
through as the upstream's bytes arrive (whole SSE events, one send per upstream read), and if the
upstream fails after that the stream ends with an error event (`data: {"error": …}`), never a
truncated success. Each attempt is one ledger row.

The completion endpoints are the hot path: `GatewayApp` serves them without Starlette's routing and
middleware, the upstream client is a lean HTTP/1.1 client (tokenomy/http1.py), and per chunk the relay only
looks for a few byte markers (the first token, [DONE], an error event, the usage event); the ledger row,
budget settlement and metrics are done once per attempt, after the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from tokenomy.gateway.budgets import Budgets, Limit, OverBudget, Reservation, period_start_s
from tokenomy.gateway.classifier import default_classifier
from tokenomy.gateway.config import GatewayConfig
from tokenomy.gateway.escalate import policy_for, respond
from tokenomy.gateway.keys import ApiKey, KeyStore, same_secret
from tokenomy.gateway.ledger import Attempt, Database, LedgerWriter
from tokenomy.gateway.metrics import GatewayMetrics
from tokenomy.gateway.router import Route, Router, Tier, UnknownModel, self_hosted_deployment, tier_prices
from tokenomy.gateway.upstream import CLIENT_ERRORS, Upstream, describe
from tokenomy.http1 import Response as UpstreamResponse

log = logging.getLogger("tokenomy.gateway")

CHAT_PATH, COMPLETIONS_PATH = "/chat/completions", "/completions"
CLASSES = ("simple", "complex")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DRAIN_S = 1.0  # after [DONE], how long to wait for the upstream to end its response (to reuse the connection)


def error_body(message: str, kind: str, code: str | None = None, **extra: Any) -> dict[str, Any]:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": kind, "code": code or kind, **extra}}


def error_response(status: int, message: str, kind: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(message, kind, **extra), status_code=status)


def sse_error(message: str, kind: str = "upstream_error") -> bytes:
    """The event that ends a stream whose upstream failed after the first byte."""
    return b"data: " + json.dumps(error_body(message, kind)).encode() + b"\n\n"


class BadRequest(ValueError):
    """A request the gateway refuses before routing; carries the HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.kind = kind


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """An upper-leaning estimate of prompt tokens (≈3 characters a token, plus per-message framing)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        chars = 0
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
        return math.ceil(chars / 3) + 4 * len(messages) + 3
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return sum(math.ceil(len(p) / 3) if isinstance(p, str) else 1 for p in prompt) + 1
    return math.ceil(len(prompt) / 3) + 1 if isinstance(prompt, str) else 1


@dataclass
class Call:
    """One client request on its way through the gateway."""

    request_id: str
    key: ApiKey
    path: str
    body: dict[str, Any]
    stream: bool
    client_wants_usage: bool
    prompt_tokens: int
    max_tokens: int
    route: Route
    reservation: Reservation
    started_s: float  # time.time()
    started: float  # perf_counter()
    attempt: int = 0
    notes: list[str] = field(default_factory=list)  # spills and failovers so far

    def upstream_body(self, tier: Tier) -> bytes:
        body = dict(self.body)
        body["model"] = tier.config.model
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            body["max_tokens"] = self.max_tokens  # what was reserved bounds what is generated
        if self.stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return json.dumps(body).encode()


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


class Gateway:
    """A running gateway: tiers, router, keys, budgets, ledger and metrics."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.db = Database(config.ledger.url, config.state_dir)
        self.keys = KeyStore(self.db, config.state_dir)
        self.budgets = Budgets()
        for b in config.budgets:
            scope, owner = ("team", b.team) if b.team is not None else ("key", b.key)
            self.store_limit(Limit(scope, owner or "", b.period, b.usd, b.tokens))
        for scope, owner, period, usd, tokens in self.db.execute(
            "SELECT scope, owner, period, usd, tokens FROM budgets"
        ):
            self.budgets.set_limit(Limit(scope, owner, period, usd, tokens))
        for period in ("day", "month"):
            self.budgets.load_spend(period, self.db.spend_since(period_start_s(period, time.time())))
        self.ledger = LedgerWriter(self.db, config.ledger.flush_interval_s, config.ledger.batch_rows)
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
        self.admin_key = config.admin_key()
        self.keys_refreshed = 0.0

    def store_limit(self, limit: Limit) -> None:
        self.budgets.set_limit(limit)
        self.db.execute(
            "INSERT INTO budgets (scope, owner, period, usd, tokens) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (scope, owner, period) DO UPDATE SET usd = excluded.usd, tokens = excluded.tokens",
            (limit.scope, limit.owner, limit.period, limit.usd, limit.tokens),
        )

    async def start(self) -> None:
        for tier in self.tiers:
            tier.upstream.start_polling(self.config.metrics_poll_s)
        # What was loaded to get here (catalogue, cost model, numpy, pydantic…) lives as long as the process:
        # keep it out of the collector's full passes, which would otherwise stall requests for tens of ms.
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        """Graceful shutdown: close upstream clients, write every queued ledger row."""
        for tier in self.tiers:
            await tier.upstream.close()
        await asyncio.to_thread(self.ledger.close)
        self.db.close()

    # ---- admission ------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> ApiKey | None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        key = self.keys.verify(token) if token else None
        if key is None and token and time.monotonic() - self.keys_refreshed > 1.0:
            self.keys_refreshed = time.monotonic()  # keys created by another process (the CLI)
            self.keys = KeyStore(self.db, self.config.state_dir)
            key = self.keys.verify(token)
        return key

    async def read_body(self, request: Request) -> dict[str, Any]:
        limit = self.config.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        chunks, size = [], 0
        receive = request.receive
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise BadRequest(499, "the client went away while sending its request")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            body = json.loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "the body must be a JSON object")
        return body

    def check_body(self, body: dict[str, Any], path: str) -> int:
        """Validate what the gateway relies on; returns the max_tokens to reserve."""
        if path == CHAT_PATH:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
                raise BadRequest(400, "'messages' must be a non-empty list of message objects")
        elif not isinstance(body.get("prompt"), str | list):
            raise BadRequest(400, "'prompt' must be a string or a list")
        limits = self.config.limits
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is None:
            return limits.default_max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise BadRequest(400, "'max_tokens' must be a positive integer")
        if max_tokens > limits.max_tokens:
            raise BadRequest(400, f"'max_tokens' {max_tokens} exceeds this gateway's limit of {limits.max_tokens}")
        n = body.get("n", 1)
        if n != 1:
            raise BadRequest(400, "this gateway serves n=1 only")
        return max_tokens

    async def completion(self, request: Request, path: str) -> Response:
        started, started_s = time.perf_counter(), time.time()
        key = self.authenticate(request)
        if key is None:
            self.metrics.child(self.metrics.rejected, "auth").inc()
            return error_response(
                401, "missing or unknown API key (Authorization: Bearer tk-…)", "authentication_error"
            )
        try:
            body = await self.read_body(request)
            max_tokens = self.check_body(body, path)
        except BadRequest as exc:
            self.metrics.child(self.metrics.rejected, "bad_request").inc()
            return error_response(exc.status, str(exc), exc.kind)
        prompt_tokens = estimate_prompt_tokens(body)
        forced = request.headers.get("x-tokenomy-class")
        try:
            route = self.router.route(body, prompt_tokens, max_tokens, forced if forced in CLASSES else None)
        except UnknownModel as exc:
            self.metrics.child(self.metrics.rejected, "unknown_model").inc()
            return error_response(404, str(exc), "model_not_found")
        if not route.candidates:
            return error_response(503, f"no tier is configured for class '{route.request_class}'", "no_tier")
        worst_usd = max(t.prices.usd(prompt_tokens, max_tokens) for t in route.candidates)
        try:
            reservation = self.budgets.reserve(key.key_id, key.team, worst_usd, prompt_tokens + max_tokens)
        except OverBudget as exc:
            self.metrics.child(self.metrics.rejected, "budget").inc()
            return JSONResponse(exc.body, status_code=429, headers={"retry-after": str(exc.retry_after_s)})
        stream = body.get("stream") is True
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        call = Call(
            request_id="req_" + secrets.token_hex(8),
            key=key,
            path=path,
            body=body,
            stream=stream,
            client_wants_usage=wants_usage,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            route=route,
            reservation=reservation,
            started_s=started_s,
            started=started,
        )
        try:
            if self.config.routes and (policy := policy_for(self.config.routes, route)) is not None:
                return await respond(self, call, policy)  # validate and escalate (escalate.py)
            if stream:
                return await self.stream(call)
            return await self.once(call)
        except BaseException:
            self.budgets.settle(reservation, 0.0, 0)
            raise

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
    ) -> float:
        """Write the attempt's ledger row, ending now and noting the request's spills and failovers so far."""
        reason = "; ".join(r for r in ("; ".join(call.notes), reason) if r)
        e2e_s = time.perf_counter() - call.started
        return self.write_attempt(call, tier, status, http_status, tokens_in, tokens_out, ttft_s, e2e_s, reason)

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
        cost = tier.prices.usd(tokens_in, tokens_out)
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
        m = self.metrics
        m.child(m.attempts, tier.name, status).inc()
        if cost:
            m.child(m.cost, tier.name).inc(cost)
            m.child(m.tokens, tier.name, "input").inc(tokens_in)
            m.child(m.tokens, tier.name, "output").inc(tokens_out)
        return cost

    def failed(self, call: Call, tier: Tier, http_status: int, what: str) -> None:
        """An attempt that failed before the first byte: its ledger row, then `fail_over`."""
        self.record(call, tier, "upstream_error", http_status, reason=what)
        self.fail_over(call, tier, what)

    def fail_over(self, call: Call, tier: Tier, what: str) -> None:
        """After a failed attempt's row: the breaker hears of it, the next attempt's row carries a note of it."""
        tier.upstream.breaker.failure()
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
        try:
            async with asyncio.timeout(self.config.timeouts.total_s):
                resp = await up.post(call.path, body)
                try:
                    status, content = resp.status, await resp.read()
                finally:
                    resp.release()
        except CLIENT_ERRORS as exc:
            return Reply("upstream_error", 0, reason=describe(exc))
        except asyncio.CancelledError:
            up.breaker.release()
            raise
        finally:
            up.finished(load_tokens, True)
        if status in RETRYABLE_STATUS or status >= 500:
            return Reply("upstream_error", status, reason=f"HTTP {status}")
        up.breaker.success()
        if status >= 400:  # the request itself is wrong: the client gets the upstream's answer
            return Reply("client_error", status, content, reason=content[:200].decode(errors="replace"))
        try:
            answer = json.loads(content)
            usage = (answer.get("usage") if isinstance(answer, dict) else None) or {}
        except (ValueError, UnicodeDecodeError):
            return Reply("upstream_error", status, reason="the upstream's answer is not JSON")
        tokens_in = int(usage.get("prompt_tokens") or call.prompt_tokens)
        tokens_out = int(usage.get("completion_tokens") or 0)
        up.learn_prompt_tokens(call.prompt_tokens, int(usage.get("prompt_tokens") or 0))
        return Reply("ok", status, content, answer, tokens_in, tokens_out)

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
                self.failed(call, tier, reply.http_status, reply.reason)
                continue
            if reply.status == "client_error":
                self.record(call, tier, "client_error", reply.http_status, reason=reply.reason)
                self.finish(call, tier, "client_error", 0.0, 0)
                return Response(reply.content, reply.http_status, self.headers(call, tier), "application/json")
            cost = self.record(call, tier, "ok", 200, reply.tokens_in, reply.tokens_out)
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
                self.failed(call, tier, exc.http_status, str(exc))
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
            headers = [(k.encode(), v.encode()) for k, v in self.headers(call, tier).items()]
            return SSEResponse(relay, first, SSE_HEADERS + headers)
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


class UpstreamFailed(Exception):
    """The upstream failed before its first token: fail over."""

    def __init__(self, message: str, http_status: int = 0):
        super().__init__(message)
        self.http_status = http_status


class ClientError(Exception):
    """The upstream refused the request itself (4xx): pass its answer to the client."""

    def __init__(self, http_status: int, body: bytes):
        super().__init__(f"HTTP {http_status}")
        self.http_status = http_status
        self.body = body


def _is_opening(event: bytes) -> bool:
    """A chat stream's first event carries the role and no text yet."""
    return b'"role"' in event and (b'"content":""' in event or b'"content": ""' in event)


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

    async def open(self) -> bytes:
        """Send the request and read until the first token; returns the bytes to send the client first."""
        up = self.tier.upstream
        try:
            self.response = response = await up.post(self.call.path, self.call.upstream_body(self.tier))
        except CLIENT_ERRORS as exc:
            raise UpstreamFailed(describe(exc)) from None
        status = response.status
        if status != 200:
            body = await self._read_error_body(response)
            if status in RETRYABLE_STATUS or status >= 500:
                raise UpstreamFailed(f"HTTP {status}", status)
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
                    return held + out if held else out
                held += out
        except CLIENT_ERRORS as exc:
            self.close()
            raise UpstreamFailed(describe(exc)) from None
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
        if b"\r" in chunk:
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
        if (
            b"[DONE]" not in chunk
            and b'"error"' not in chunk
            and b'"usage":{' not in chunk
            and b'"usage": {' not in chunk
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
            elif b'"usage":{' in event or b'"usage": {' in event:
                self._read_usage(event)
                if (b'"choices":[]' in event or b'"choices": []' in event) and not self.call.client_wants_usage:
                    continue  # the client did not ask for the usage event the gateway asked for
            elif not _is_opening(event):
                self.content_events += 1
            out.append(event)
        return b"".join(out)

    def _read_usage(self, event: bytes) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            self.usage = json.loads(event[5:]).get("usage") or self.usage

    async def pump(self, send: Any) -> None:
        """Send the client the stream after its first bytes, ending the response body.

        If the upstream fails after the first byte the stream ends with an error event, never a
        truncated success.
        """
        response = self.response
        assert response is not None
        take, wait = response.take, response.wait
        try:
            while not self.done:
                chunk = take()
                if chunk is None:  # what usually happens: wait for the next token
                    await wait()
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
            try:
                async with asyncio.timeout(DRAIN_S):
                    while await response.read_chunk():
                        pass
            except CLIENT_ERRORS:
                response.close()
                return
        response.release()

    def close(self) -> None:
        if self.response is not None:
            self.response.close()

    def account(self) -> tuple[str, str, int, int]:
        """Account the finished stream with its upstream (load, prompt size, breaker) and in the TTFT metric;
        returns the attempt's status, what went wrong ("" if nothing), and its input and output tokens."""
        call, up = self.call, self.tier.upstream
        usage = self.usage or {}
        tokens_in = int(usage.get("prompt_tokens") or call.prompt_tokens)
        tokens_out = int(usage.get("completion_tokens") or self.content_events)
        up.finished(self.load_tokens, True, tokens_out)
        up.learn_prompt_tokens(call.prompt_tokens, int(usage.get("prompt_tokens") or 0))
        if self.done and not self.upstream_error:
            status, reason = "ok", ""
            up.breaker.success()
        elif self.client_gone and not self.upstream_error:
            status, reason = "cancelled", "client went away mid-stream"
            up.breaker.release()
        else:
            status, reason = "stream_error", self.upstream_error
            up.breaker.failure()
        if self.ttft_s is not None:
            metrics = self.gateway.metrics
            metrics.child(metrics.ttft, self.tier.name).observe(self.ttft_s)
        return status, reason, tokens_in, tokens_out

    def settle(self) -> None:
        """Account the finished stream: breaker, load, ledger row, budget."""
        status, reason, tokens_in, tokens_out = self.account()
        if not self.usage:
            reason = "; ".join(r for r in (reason, "tokens estimated: no usage from the upstream") if r)
        cost = self.gateway.record(self.call, self.tier, status, 200, tokens_in, tokens_out, self.ttft_s, reason)
        self.gateway.finish(self.call, self.tier, status, cost, tokens_in + tokens_out)


class SSEResponse:
    """A plain ASGI response relaying a stream; a watcher notices the client leaving so the relay stops."""

    def __init__(self, relay: Relay, first: bytes, headers: list[tuple[bytes, bytes]]):
        self.relay = relay
        self.first = first
        self.headers = headers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        relay = self.relay

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            relay.client_gone = True

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            await send({"type": "http.response.body", "body": self.first, "more_body": not relay.done})
            if not relay.done:
                await relay.pump(send)
        finally:
            watcher.cancel()
            relay.settle()
            await relay.release()


def admin_routes(gateway: Gateway) -> list[HttpRoute]:
    """Keys, budgets and spend, behind the admin key."""

    def authorised(request: Request) -> Response | None:
        if gateway.admin_key is None:
            return error_response(
                403, f"the admin API is off: set ${gateway.config.admin_key_env} to enable it", "permission_error"
            )
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not same_secret(token, gateway.admin_key):
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
            record, key = gateway.keys.create(team, str(body.get("name", "")))
        except BadRequest as exc:
            return error_response(exc.status, str(exc), exc.kind)
        return JSONResponse({"key_id": record.key_id, "key": key, "team": record.team, "name": record.name}, 201)

    async def revoke(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        key_id = request.path_params["key_id"]
        if not gateway.keys.revoke(key_id):
            return error_response(404, f"no active key '{key_id}'", "not_found")
        return JSONResponse({"revoked": key_id})

    async def budgets(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        if request.method == "GET":
            return JSONResponse({"budgets": gateway.budgets.report()})
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
            gateway.store_limit(limit)
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
        rows = gateway.db.execute(
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
    everything else (lifespan, models, metrics, health, admin) through Starlette's routing."""

    def __init__(self, gateway: Gateway, starlette: Starlette):
        self.gateway = gateway
        self.starlette = starlette
        self.state = starlette.state
        self.hot = {"/v1" + CHAT_PATH: CHAT_PATH, "/v1" + COMPLETIONS_PATH: COMPLETIONS_PATH}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = self.hot.get(scope["path"])
            if path is not None:
                response = await self.gateway.completion(Request(scope, receive), path)
                await response(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


def build_app(config: GatewayConfig) -> GatewayApp:
    """The gateway as an ASGI app; `app.state.gateway` is the Gateway (started and stopped with the app)."""
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

    routes = [
        HttpRoute("/v1/chat/completions", chat, methods=["POST"]),
        HttpRoute("/v1/completions", completions, methods=["POST"]),
        HttpRoute("/v1/models", gateway.models, methods=["GET"]),
        HttpRoute("/healthz", gateway.healthz, methods=["GET"]),
        HttpRoute("/metrics", gateway.prometheus, methods=["GET"]),
        *admin_routes(gateway),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return GatewayApp(gateway, app)
