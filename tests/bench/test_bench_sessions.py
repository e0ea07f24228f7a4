"""`tokenomy bench` with multi-turn sessions: each turn sends the chat so far (the answers the server gave), and is
sent only after the previous answer arrived plus the think time; against a recording stub and a real twin."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import numpy as np

from tokenomy.bench.client import Endpoint, RequestRecord, new_pool
from tokenomy.bench.load import plan_requests, run_load
from tokenomy.bench.records import all_rows
from tokenomy.bench.runner import BenchPlan, run_bench
from tokenomy.sim.workload import WorkloadSpec, build_workload
from tokenomy.twin.server import running_twin

THINK_S = 0.05


@contextlib.asynccontextmanager
async def recording_server(bodies: list[dict], drop: frozenset[int] = frozenset()) -> AsyncIterator[str]:
    """A chat endpoint that keeps every request body and answers 'answer N' (N counts requests) in two chunks; the
    N-th requests in `drop` get their connection closed without an answer."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
        bodies.append(json.loads(await reader.readexactly(length)))
        n = len(bodies)
        if n in drop:
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        for text, finish in ((f"answer {n}", None), ("", "length")):
            chunk = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
            writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        server.close()


def run_sessions(
    spec: WorkloadSpec, drop: frozenset[int] = frozenset()
) -> tuple[list[dict], list[RequestRecord], np.ndarray]:
    """Bodies the stub received, the records, and each request's session."""
    workload = build_workload(spec)
    bodies: list[dict] = []

    async def go() -> list[RequestRecord]:
        async with recording_server(bodies, drop) as url:
            endpoint = Endpoint(url, "m")
            pool = new_pool(endpoint, 5.0)
            try:
                result = await run_load(pool, endpoint, plan_requests(workload, "chat"), workload.concurrency)
            finally:
                pool.close()
            return result.records

    records = asyncio.run(go())
    assert workload.session_ids is not None
    return bodies, records, workload.session_ids


def test_each_turn_sends_the_chat_so_far_with_the_servers_answers() -> None:
    spec = WorkloadSpec(isl="20", osl="4", turns="3", think_s=str(THINK_S), num_requests=6, rate=50)
    bodies, records, session = run_sessions(spec)
    assert len(bodies) == 6 and all(r.ok for r in records)
    by_answer = {r.index: "".join(r.chunk_text) for r in records}
    for s in (0, 1):
        turns = [r for r in records if session[r.index] == s]
        sent = [next(b for b in bodies if b["messages"][-1]["content"] == plan) for plan in _user_texts(spec, s)]
        assert [len(b["messages"]) for b in sent] == [1, 3, 5]  # user; user, assistant, user; ...
        for k in (1, 2):
            earlier = sent[k - 1]["messages"]
            assert sent[k]["messages"][: len(earlier)] == earlier  # the whole conversation so far
            assert sent[k]["messages"][len(earlier)] == {"role": "assistant", "content": by_answer[turns[k - 1].index]}


def _user_texts(spec: WorkloadSpec, session: int) -> list[str]:
    """The new user message of each turn of one session, as planned."""
    w = build_workload(spec)
    assert w.session_ids is not None
    return [r.prompt for r in plan_requests(w, "chat") if w.session_ids[r.index] == session]


def test_a_turn_is_sent_only_after_the_previous_answer_and_the_think_time() -> None:
    spec = WorkloadSpec(isl="20", osl="4", turns="3", think_s=str(THINK_S), num_requests=9, concurrency=2)
    _, records, session = run_sessions(spec)
    by_index = {r.index: r for r in records}
    for s in set(session.tolist()):
        turns = [by_index[i] for i in np.flatnonzero(session == s)]
        for before, after in zip(turns, turns[1:], strict=False):
            assert after.intended_s >= before.end_s + THINK_S
            assert after.sent_s >= after.intended_s


def test_sessions_against_the_twin_grow_the_prompt_by_each_answer_and_rows_name_the_session() -> None:
    spec = WorkloadSpec(isl="64", osl="16", turns="3", think_s=str(THINK_S), num_requests=6, concurrency=2, seed=2)
    with running_twin("llama-3.1-8b", "H100-SXM", speedup=10.0) as url:
        outcome = run_bench(BenchPlan(Endpoint(url + "/v1", "llama-3.1-8b"), spec))
    rows = all_rows(outcome)
    assert len(rows) == 6 and not any(r["error"] for r in rows)
    for s in {r["session"] for r in rows}:
        turns = sorted((r for r in rows if r["session"] == s), key=lambda r: r["index"])
        for before, after in zip(turns, turns[1:], strict=False):
            # the server counted the earlier prompt, its answer and the new message in the later prompt
            assert after["prompt_tokens"] > before["prompt_tokens"] + before["output_tokens"]
            assert after["intended_s"] >= before["end_s"] + THINK_S


def test_a_dropped_turn_is_an_error_row_and_the_conversation_goes_on_without_its_answer() -> None:
    spec = WorkloadSpec(isl="20", osl="4", turns="3", think_s=str(THINK_S), num_requests=3, concurrency=1)
    bodies, records, _ = run_sessions(spec, drop=frozenset({2}))
    by_index = {r.index: r for r in records}
    assert len(bodies) == 3 and [by_index[i].ok for i in range(3)] == [True, False, True]
    assert by_index[1].error  # the closed connection is reported, not hidden
    roles = [m["role"] for m in bodies[2]["messages"]]
    assert roles == ["user", "assistant", "user", "user"]  # turn 2 got no answer to carry
