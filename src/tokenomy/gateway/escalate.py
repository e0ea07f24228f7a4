"""Validate and escalate: on a route with validators, a failed answer is re-asked one tier up.

A route (gateway.yaml `routes:`, keyed by model name or request class) lists validators, `max_escalations`
and `stream_validation`:

- non-streaming: the candidates are tried cheapest first (connect errors, timeouts and 5xx fail over as
  usual). An answer is validated; if it fails, the next tier up is asked, at most `max_escalations` times.
  The client gets the first valid answer, or the last answer with `x-tokenomy-validation: failed`; every
  response carries `x-tokenomy-escalations: k`. Judge validators call their tier through the gateway's own
  upstream client; each judge call is a ledger row (status "judge") and counts in the request's cost.
- streaming, `buffer`: handled like a non-streaming request (the upstream is asked without streaming), then the
  answer is sent as one SSE stream. The client sees its first token only after the whole answer was generated
  and validated: TTFT becomes the end-to-end time of every attempt.
- streaming, `record`: passed through unchanged (`RecordingRelay` keeps the text it relays); the verdict is
  worked out after the stream ended and only recorded. Nothing is escalated.

Rows of a validated request are written when it ends, in attempt order, so the last one the client got its
answer from carries the per-request columns: request_usd (all attempts and judges), final_tier,
escalations and passed. Every attempt row keeps its own cost and its verdict (`validation`: pass / fail).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from tokenomy.gateway.budgets import BudgetsUnavailable, OverBudget, Reservation, reserve_or_release
from tokenomy.gateway.config import RouteConfig
from tokenomy.gateway.schema import upstream_fields
from tokenomy.gateway.upstream import CLIENT_ERRORS, describe
from tokenomy.gateway.validators import JudgeUsage, Verdict, validate

if TYPE_CHECKING:
    from tokenomy.gateway.app import Call, Gateway
    from tokenomy.gateway.router import Route, Tier

VALIDATION_HEADER = "x-tokenomy-validation"
ESCALATIONS_HEADER = "x-tokenomy-escalations"
SSE_MEDIA_TYPE = "text/event-stream"
CHAT_PATH = "/chat/completions"  # judges are asked through the chat endpoint


def policy_for(routes: dict[str, RouteConfig], route: Route) -> RouteConfig | None:
    """The validation policy of a route: by the model the client asked for, else by its request class."""
    return routes.get(route.model) or routes.get(route.request_class)


# ---- ledger rows, written when the request ends ------------------------------------------------------------


@dataclass
class Row:
    """One attempt of a validated request, waiting to be written."""

    tier: Tier
    status: str
    http_status: int
    tokens_in: int = 0
    tokens_out: int = 0
    ttft_s: float | None = None
    e2e_s: float | None = None
    reason: str = ""
    validation: str = ""

    @property
    def cost_usd(self) -> float:
        return self.tier.prices.usd(self.tokens_in, self.tokens_out)


@dataclass
class Outcome:
    """What the client got: the row of the answer (an index into the rows), whether it passed, escalations."""

    final: int | None
    passed: bool | None
    escalations: int


def write_rows(gateway: Gateway, call: Call, rows: list[Row], outcome: Outcome) -> float:
    """Write a validated request's rows (and count them in the metrics); returns the request's total cost."""
    total_usd = sum(r.cost_usd for r in rows)
    for i, r in enumerate(rows):
        final = i == outcome.final
        gateway.write_attempt(
            call,
            r.tier,
            r.status,
            r.http_status,
            r.tokens_in,
            r.tokens_out,
            r.ttft_s,
            r.e2e_s,
            r.reason,
            validation=r.validation,
            request_usd=total_usd if final else None,
            final_tier=r.tier.name if final else None,
            escalations=outcome.escalations if final else None,
            passed=outcome.passed if final else None,
        )
    return total_usd


# ---- one non-streaming attempt ----------------------------------------------------------------------------


@dataclass
class Answer:
    """A tier's 200 answer."""

    tier: Tier
    content: bytes
    body: dict[str, Any]
    text: str
    row: Row
    escalations: int = 0  # tiers asked after the first, up to this answer


class Refused(Exception):
    """The upstream refused the request itself (4xx): its answer goes to the client."""

    def __init__(self, status: int, content: bytes):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.content = content


def upstream_body(call: Call, tier: Tier) -> bytes:
    """The body sent to a tier: the client's, with the tier's model and max_tokens, never streaming."""
    return json.dumps(upstream_fields(call.body, tier.config.model, call.max_tokens, False)).encode()


def answer_text(body: dict[str, Any]) -> str:
    """The text of a chat or completions answer ("" when there is none)."""
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text if isinstance(text, str) else ""


def failed_attempt(gateway: Gateway, call: Call, tier: Tier, http_status: int, what: str) -> Row:
    """An attempt that failed before an answer: its row, then the gateway's `fail_over`."""
    reason = "; ".join(r for r in ("; ".join(call.notes), what) if r)
    row = Row(tier, "upstream_error", http_status, e2e_s=time.perf_counter() - call.started, reason=reason)
    gateway.fail_over(call, tier, what)
    return row


async def ask(gateway: Gateway, call: Call, tier: Tier, rows: list[Row]) -> Answer | None:
    """One non-streaming attempt on one tier: its answer, or None after a failure (its row appended)."""
    try:
        reply = await gateway.exchange(call, tier, upstream_body(call, tier))
    except asyncio.CancelledError:
        rows.append(Row(tier, "cancelled", 499, reason="client went away"))
        raise
    if reply.status == "upstream_error":
        rows.append(failed_attempt(gateway, call, tier, reply.http_status, reply.reason))
        return None
    if reply.status == "client_error":
        rows.append(Row(tier, "client_error", reply.http_status, reason=reply.reason))
        raise Refused(reply.http_status, reply.content)
    e2e_s = time.perf_counter() - call.started
    row = Row(tier, "ok", 200, reply.tokens_in, reply.tokens_out, e2e_s=e2e_s, reason="; ".join(call.notes))
    return Answer(tier, reply.content, reply.answer, answer_text(reply.answer), row)


# ---- validation, judges included --------------------------------------------------------------------------


def judge_caller(gateway: Gateway, call: Call, rows: list[Row]):  # noqa: ANN201 - a JudgeCall
    """A JudgeCall that asks a gateway tier through its upstream client; a failed call leaves a row and raises."""
    tiers = {t.name: t for t in gateway.tiers}

    async def judge(tier_name: str, body: dict[str, Any]) -> dict[str, Any]:
        tier = tiers[tier_name]
        up = tier.upstream
        try:
            async with asyncio.timeout(gateway.config.timeouts.total_s):
                total_s = gateway.config.timeouts.total_s
                resp = await up.post(CHAT_PATH, json.dumps({"model": tier.config.model, **body}).encode(), total_s)
                try:
                    status, content = resp.status, await resp.read()
                finally:
                    resp.release()
            if status != 200:
                raise ValueError(f"HTTP {status}")
            return json.loads(content)
        except (*CLIENT_ERRORS, ValueError) as exc:
            up.failed(None, f"judge call failed: {describe(exc)}")  # the gateway's own request: nobody's key
            rows.append(Row(tier, "upstream_error", 0, reason=f"judge call failed: {describe(exc)}"))
            raise

    return judge


async def check(gateway: Gateway, call: Call, policy: RouteConfig, text: str, rows: list[Row]) -> Verdict:
    """The route's verdict on an answer; each judge call becomes a row. A failed judge call fails the answer."""
    try:
        verdict = await validate(text, call.body, policy.validators, judge_caller(gateway, call, rows))
    except (*CLIENT_ERRORS, ValueError) as exc:
        return Verdict(False, [f"judge call failed: {describe(exc)}"])
    rows.extend(judge_row(gateway, usage, call) for usage in verdict.judge_usage)
    return verdict


def judge_row(gateway: Gateway, usage: JudgeUsage, call: Call) -> Row:
    tier = next(t for t in gateway.tiers if t.name == usage.tier)
    e2e_s = time.perf_counter() - call.started
    return Row(tier, "judge", 200, usage.prompt_tokens, usage.completion_tokens, e2e_s=e2e_s, reason="judge call")


# ---- the escalation loop ----------------------------------------------------------------------------------


async def escalated(gateway: Gateway, call: Call, policy: RouteConfig) -> Answer | Response | None:
    """Ask tiers cheapest first until an answer passes or `max_escalations` re-asks are spent.

    Returns the answer to send (the first valid one, else the last), a Response (an upstream's 4xx, passed on)
    or None when no tier answered. Settles the budget and writes the ledger rows either way.
    """
    rows: list[Row] = []
    last: Answer | None = None
    final: int | None = None
    passed: bool | None = None
    escalations = 0
    extra: list[Reservation] = []  # each escalation reserves its tier's worst case on top of the first
    cancelled = False
    try:
        for tier in gateway.order(call):
            if last is not None and escalations >= policy.max_escalations:
                break
            if not tier.upstream.breaker.allow():
                call.notes.append(f"skip: {tier.name}: circuit open")
                continue
            if last is not None:  # the previous answer failed: escalate if affordable
                try:
                    extra.append(await reserve(gateway, call, tier))
                except (OverBudget, BudgetsUnavailable) as exc:
                    why = "over budget" if isinstance(exc, OverBudget) else "the shared budget store is unavailable"
                    call.notes.append(f"no escalation to {tier.name}: {why}")
                    tier.upstream.breaker.release()
                    break
                escalations += 1
            try:
                answer = await ask(gateway, call, tier, rows)
            except Refused as exc:
                last, final, passed = None, len(rows) - 1, None
                return Response(exc.content, exc.status, gateway.headers(call, tier), "application/json")
            if answer is None:
                continue
            rows.append(answer.row)
            verdict = await check(gateway, call, policy, answer.text, rows)
            answer.row.validation = "pass" if verdict.passed else "fail"
            if not verdict.passed:
                answer.row.reason = "; ".join(r for r in (answer.row.reason, *verdict.reasons) if r)
                call.notes.append(f"escalate: {tier.name}: failed validation")
            answer.escalations = escalations
            last, final, passed = answer, rows.index(answer.row), verdict.passed
            if verdict.passed:
                break
        return last
    except asyncio.CancelledError:
        cancelled = True  # the app settles the admission reservation
        raise
    finally:
        total_usd = write_rows(gateway, call, rows, Outcome(final, passed, escalations))
        if not cancelled:
            final_tier = rows[final].tier if final is not None else None
            tokens = sum(r.tokens_in + r.tokens_out for r in rows)
            status = "ok" if last is not None else ("client_error" if final is not None else "upstream_error")
            gateway.finish(call, final_tier, status, total_usd, tokens)
        for reservation in extra:
            gateway.budgets.settle(reservation, 0.0, 0)


async def reserve(gateway: Gateway, call: Call, tier: Tier) -> Reservation:
    """Reserve one more attempt's worst case, as the admission does: awaited, never a blocking call on the event loop
    (raises OverBudget, or BudgetsUnavailable when shared budgets cannot be reached)."""
    usd, tokens = call.reserved(tier)
    return await reserve_or_release(gateway.budgets, call.key.key_id, call.key.team, usd, tokens)


def outcome_headers(gateway: Gateway, call: Call, answer: Answer) -> dict[str, str]:
    """The usual gateway headers plus the validation verdict and the number of escalations."""
    return {
        **gateway.headers(call, answer.tier),
        VALIDATION_HEADER: "passed" if answer.row.validation == "pass" else "failed",
        ESCALATIONS_HEADER: str(answer.escalations),
    }


def no_answer(call: Call) -> Response:
    """No tier answered (the budget is already settled): 502 after failed attempts, 503 when none was made."""
    tried = "; ".join(call.notes) or "every eligible tier's circuit breaker is open"
    body = {"error": {"message": f"no upstream could answer: {tried}", "type": "upstream_unavailable"}}
    body["error"]["code"] = "upstream_unavailable"
    return Response(
        json.dumps(body), 502 if call.attempt else 503, {"x-request-id": call.request_id}, "application/json"
    )


def sse_body(call: Call, answer: Answer) -> bytes:
    """A buffered answer as one SSE stream: (chat: the role event), the text, the finish, usage if asked, [DONE]."""
    body = answer.body
    chat = call.path == CHAT_PATH
    head = {
        "id": body.get("id", call.request_id),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": body.get("created", int(call.started_s)),
        "model": body.get("model", answer.tier.config.model),
    }
    choices = body.get("choices") or [{}]
    finish_reason = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None

    def event(choice: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps({**head, "choices": [{"index": 0, **choice}]}).encode() + b"\n\n"

    if chat:
        events = [
            event({"delta": {"role": "assistant", "content": ""}, "finish_reason": None}),
            event({"delta": {"content": answer.text}, "finish_reason": None}),
            event({"delta": {}, "finish_reason": finish_reason}),
        ]
    else:
        events = [
            event({"text": answer.text, "finish_reason": None}),
            event({"text": "", "finish_reason": finish_reason}),
        ]
    if call.client_wants_usage and body.get("usage"):
        events.append(b"data: " + json.dumps({**head, "choices": [], "usage": body["usage"]}).encode() + b"\n\n")
    return b"".join(events) + b"data: [DONE]\n\n"


# ---- the entry point --------------------------------------------------------------------------------------


async def respond(gateway: Gateway, call: Call, policy: RouteConfig) -> Response:
    """Serve a request on a validated route (see the module docstring)."""
    if call.stream and policy.stream_validation == "record":
        return await gateway.stream(call, functools.partial(recording_relay_type(), policy=policy))
    result = await escalated(gateway, call, policy)
    if isinstance(result, Response):
        return result
    if result is None:
        return no_answer(call)
    headers = outcome_headers(gateway, call, result)
    if call.stream:
        return Response(sse_body(call, result), 200, headers, SSE_MEDIA_TYPE)
    return Response(result.content, 200, headers, "application/json")


# ---- record mode: the stream passes through, the verdict is only recorded ---------------------------------

_pending: set[asyncio.Task] = set()  # verdicts being worked out after their stream ended


def streamed_text(events: bytes) -> str:
    """The generated text in relayed SSE bytes (chat deltas or completion texts)."""
    parts = []
    for event in events.split(b"\n\n"):
        if not event.startswith(b"data: {"):
            continue
        try:
            choices = json.loads(event[6:]).get("choices") or []
        except ValueError:
            continue
        for choice in choices:
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


@functools.cache
def recording_relay_type() -> type:
    """Relay, keeping what it relays; at the end the answer is validated and its row written with the verdict."""
    from tokenomy.gateway.app import Relay

    class RecordingRelay(Relay):
        def __init__(self, gateway: Gateway, call: Call, tier: Tier, policy: RouteConfig):
            super().__init__(gateway, call, tier)
            self.policy = policy
            self.relayed: list[bytes] = []

        def feed(self, chunk: bytes) -> bytes:
            out = super().feed(chunk)
            self.relayed.append(out)
            return out

        def settle(self) -> None:
            """Account the stream as Relay does, then validate off the response path and write the row."""
            gateway, call, tier = self.gateway, self.call, self.tier
            status, reason, tokens_in, tokens_out = self.account()
            e2e_s = time.perf_counter() - call.started
            reason = "; ".join(r for r in ("; ".join(call.notes), reason) if r)
            row = Row(tier, status, 200, tokens_in, tokens_out, self.ttft_s, e2e_s, reason)
            task = asyncio.get_running_loop().create_task(record_verdict(gateway, call, self.policy, row, self.relayed))
            _pending.add(task)
            task.add_done_callback(_pending.discard)

    return RecordingRelay


async def record_verdict(gateway: Gateway, call: Call, policy: RouteConfig, row: Row, relayed: list[bytes]) -> None:
    """Validate a streamed answer after the fact and write its rows (the stream's, then any judge's)."""
    rows = [row]
    passed = None
    if row.status == "ok":
        verdict = await check(gateway, call, policy, streamed_text(b"".join(relayed)), rows)
        passed = verdict.passed
        row.validation = "pass" if passed else "fail"
        row.reason = "; ".join(r for r in (row.reason, "validated after the stream", *verdict.reasons) if r)
    total_usd = write_rows(gateway, call, rows, Outcome(0, passed, 0))
    gateway.finish(call, row.tier, row.status, total_usd, sum(r.tokens_in + r.tokens_out for r in rows))
