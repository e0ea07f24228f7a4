"""Load generation: prompts of the workload's lengths, open-loop schedules and closed loops, on one event loop.

Open loop (rate, trace, offline): a dispatcher sleeps until each request's arrival time and starts it
as a task; the request records when it actually started (its send lag). Closed loop (concurrency C):
C workers each send the next request the moment their previous one ends; that moment is the next
request's intended send time. Sessions (a workload with think times): one task per conversation sends
its turns in order, each with the chat so far (every earlier message and the answer the server gave),
the next turn think_s after the answer arrived; sessions open on the schedule, or C at a time.
A ticker measures the event loop's own lag and feeds the progress display.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokenomy.bench.client import Endpoint, RequestRecord, stream_request
from tokenomy.http1 import Pool
from tokenomy.sim.workload import Workload
from tokenomy.tokenizer import count_chat_tokens, prompt_of

Message = dict[str, str]

TICK_S = 0.02  # ticker period: event-loop lag sampling
WATCH_EVERY_TICKS = 10  # progress callback every 0.2 s
REQUEST_SEED_BASE = 1_000_000_000  # request prompts draw above the prefix-block seeds (trace hash ids)


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the schedule: when (open loop), how long its prompt and output are, and its text."""

    index: int
    intended_s: float
    input_tokens: int
    output_tokens: int
    prompt: str  # a session's turn: only its new message (the conversation so far is sent before it)
    session: int = -1  # its conversation (-1: a request of its own)
    think_s: float = 0.0  # a session's later turn: seconds from the previous answer to this turn


def chat_overhead_tokens() -> int:
    """Prompt tokens a one-message chat adds around its content (template framing), by the bundled tokenizer."""
    return count_chat_tokens([{"role": "user", "content": ""}])


def prompt_text(content_tokens: int, seed: int, prefix_ids: Sequence[int] = (), block_tokens: int = 512) -> str:
    """Text of `content_tokens` tokens: shared prefix blocks first (the same text for the same id), then unique words.

    Each filler word is one token with or without its leading space, so joining pieces with a space keeps counts.
    """
    pieces: list[str] = []
    left = content_tokens
    for pid in prefix_ids:
        if left <= 0:
            break
        take = min(block_tokens, left)
        pieces.append(prompt_of(take, seed=int(pid)))  # first `take` words of block `pid`
        left -= take
    if left > 0:
        pieces.append(prompt_of(left, seed=seed))
    return " ".join(pieces)


def turn_overhead_tokens() -> int:
    """Prompt tokens a later turn adds around its content: the framing of the answer and of the new message."""
    empty = {"role": "user", "content": ""}
    return count_chat_tokens([empty] * 3) - count_chat_tokens([empty])


def plan_requests(workload: Workload, kind: str, seed: int = 0) -> list[PlannedRequest]:
    """The workload as requests with prompts: one unique prompt per request (no accidental prefix-cache hits),
    trace prefix ids as shared text; chat prompts leave room for the chat template's tokens. A session's later turn
    carries only its new message: its input_tokens less the previous turn's prompt and answer (and their framing)."""
    overhead = chat_overhead_tokens() if kind == "chat" else 0
    per_turn = turn_overhead_tokens() if kind == "chat" else 0
    sessions = workload.closed_sessions
    prev = np.full(len(workload), -1, dtype=np.int64)
    nxt = workload.next_turns()
    prev[nxt[nxt >= 0]] = np.flatnonzero(nxt >= 0)
    out = []
    for i in range(len(workload)):
        isl = int(workload.input_tokens[i])
        unique = REQUEST_SEED_BASE + seed * 1_000_003 + i
        j = int(prev[i]) if sessions else -1
        if j >= 0:
            grown = isl - int(workload.input_tokens[j]) - int(workload.output_tokens[j])
            text = prompt_of(max(grown - per_turn, 1), seed=unique)
        else:
            prefix = workload.prefix_ids[i] if workload.prefix_ids is not None else ()
            text = prompt_text(max(isl - overhead, 1), unique, prefix, workload.prefix_block_tokens)
        session = int(workload.session_ids[i]) if sessions and workload.session_ids is not None else -1
        think = float(workload.think_s[i]) if sessions and workload.think_s is not None else 0.0
        out.append(
            PlannedRequest(i, float(workload.arrival_s[i]), isl, int(workload.output_tokens[i]), text, session, think)
        )
    return out


@dataclass
class LiveCounts:
    """Counters the progress display reads while a run goes on."""

    total: int
    done: int = 0
    errors: int = 0
    started_at: float = field(default_factory=time.perf_counter)  # the first request's intended send time
    last_ok_at: float | None = None  # when the latest successful request ended

    def rate_rps(self) -> float:
        """Successful requests per second from the first intended send to the latest success: the summary's
        requests_per_s (completed / (last end − first intended send)), so the bar ends on the final figure.

        (It used to be completions over the last 2 s, which falls towards zero while the last requests drain
        and counts failures: far from the final rate.)"""
        ok = self.done - self.errors
        if not ok or self.last_ok_at is None or self.last_ok_at <= self.started_at:
            return 0.0
        return ok / (self.last_ok_at - self.started_at)


@dataclass
class LoadResult:
    records: list[RequestRecord]
    loop_lag_s: np.ndarray
    wall_s: float


async def _ticker(counts: LiveCounts, lags: list[float], watch: Callable[[LiveCounts], None] | None) -> None:
    """Sample the event loop's lag every TICK_S and call `watch` every WATCH_EVERY_TICKS ticks, until cancelled."""
    perf = time.perf_counter
    ticks = 0
    last = perf()
    while True:
        await asyncio.sleep(TICK_S)
        now = perf()
        lags.append(now - last - TICK_S)  # includes whatever held the loop since the last tick (a slow watch too)
        last = now
        ticks += 1
        if watch is not None and ticks % WATCH_EVERY_TICKS == 0:
            watch(counts)


async def run_load(
    pool: Pool,
    endpoint: Endpoint,
    requests: Sequence[PlannedRequest],
    concurrency: int | None = None,
    watch: Callable[[LiveCounts], None] | None = None,
) -> LoadResult:
    """Send `requests` on their schedule (open loop) or C at a time (closed loop); records in request order."""
    perf = time.perf_counter
    counts = LiveCounts(total=len(requests))
    lags: list[float] = []
    records: list[RequestRecord | None] = [None] * len(requests)
    # No collector pauses mid-run (a full collection took 30+ ms here): requests leave almost no cyclic
    # garbage (a few hundred objects per thousand requests), collected when the run ends.
    gc.collect()
    gc.freeze()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    t0 = perf()
    counts.started_at = t0 + (0.0 if concurrency or not requests else min(r.intended_s for r in requests))
    ticker = asyncio.create_task(_ticker(counts, lags, watch))

    async def one(pos: int, req: PlannedRequest, intended_s: float, prompt: str | list[Message] | None = None) -> Any:
        rec = RequestRecord(req.index, intended_s, req.input_tokens, req.output_tokens)
        records[pos] = rec
        await stream_request(pool, endpoint, rec, req.prompt if prompt is None else prompt, t0)
        counts.done += 1
        if rec.ok:
            counts.last_ok_at = t0 + rec.end_s
        else:
            counts.errors += 1
        return rec

    try:
        if any(r.session >= 0 for r in requests):
            await _run_sessions(requests, concurrency, one, endpoint.kind, t0)
        elif concurrency:
            queue = iter(enumerate(requests))

            async def worker() -> None:
                intended = 0.0
                for pos, req in queue:  # a shared iterator: each worker takes the next request
                    await one(pos, req, intended)
                    intended = perf() - t0

            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
        else:
            tasks = []
            for pos, req in enumerate(requests):
                while (delay := req.intended_s - (perf() - t0)) > 0:  # again if a loop timer fired early
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(pos, req, req.intended_s)))
            await asyncio.gather(*tasks)
    finally:
        ticker.cancel()
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()
        if watch is not None:
            watch(counts)
    return LoadResult([r for r in records if r is not None], np.asarray(lags), perf() - t0)


async def _run_sessions(
    requests: Sequence[PlannedRequest], concurrency: int | None, one: Callable[..., Any], kind: str, t0: float
) -> None:
    """Every conversation as one task: its turns in order, each sent with the messages so far think_s after the
    previous answer arrived; conversations open at their first turn's intended_s, or C at a time."""
    perf = time.perf_counter
    turns: dict[int, list[tuple[int, PlannedRequest]]] = {}
    for pos, req in enumerate(requests):
        turns.setdefault(req.session if req.session >= 0 else -1 - pos, []).append((pos, req))

    async def converse(session: list[tuple[int, PlannedRequest]], opened_s: float) -> None:
        messages: list[Message] = []
        intended = opened_s
        for k, (pos, req) in enumerate(session):
            if k:
                intended = perf() - t0 + req.think_s
            while (delay := intended - (perf() - t0)) > 0:
                await asyncio.sleep(delay)
            messages.append({"role": "user", "content": req.prompt})
            prompt = list(messages) if kind == "chat" else " ".join(m["content"] for m in messages)
            rec = await one(pos, req, intended, prompt)
            if rec.ok:
                messages.append({"role": "assistant", "content": "".join(rec.chunk_text)})

    if concurrency:
        queue = iter(turns.values())

        async def user() -> None:
            opened = 0.0
            for session in queue:  # the next conversation opens when this user's last one ends
                await converse(session, opened)
                opened = perf() - t0

        await asyncio.gather(*(user() for _ in range(min(concurrency, len(turns)))))
        return
    tasks = []
    for session in sorted(turns.values(), key=lambda s: s[0][1].intended_s):
        opens = session[0][1].intended_s
        while (delay := opens - (perf() - t0)) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(converse(session, opens)))
    await asyncio.gather(*tasks)
