"""The ledger cannot lose or stall: refused rows go to a dead-letter file (never in front of good rows), the writer
reconnects after the database drops it, memory stays bounded while it is down, and a gateway killed with SIGKILL
leaves a journal from which the next start bills every request it had admitted."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.gateway import services
from tests.gateway.conftest import api_tier, chat
from tests.gateway.services import (
    free_port,
    offline_key,
    signal_during,
    start_gateway,
    terminate_connections,
    write_gateway_config,
)
from tokenomy.gateway.budgets import period_start_s
from tokenomy.gateway.config import parse_config
from tokenomy.gateway.ledger import RECONCILED_ATTEMPT, Attempt, Database, Journal, LedgerWriter, recover
from tokenomy.gateway.state import open_state

pg_url = services.pg_url  # fixture


def attempt(i: int, **changes: object) -> Attempt:
    row = Attempt(
        request_id=f"req_{i:06d}",
        attempt=0,
        ts_s=time.time(),
        key_id="key_abc",
        team="team-a",
        model="auto",
        request_class="simple",
        p_complex=0.1,
        tier="small",
        upstream_model="m",
        stream=False,
        tokens_in=10,
        tokens_out=5,
        cost_usd=1e-5,
        ttft_s=None,
        e2e_s=0.1,
        status="ok",
        http_status=200,
        reason="",
    )
    return replace(row, **changes)


def wait_for(predicate, timeout_s: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_refused_row_goes_to_the_dead_letter_file_and_later_rows_are_written(backend, tmp_path, request) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else "sqlite"
    db = Database(url, tmp_path)
    dead = tmp_path / "dead.jsonl"
    writer = LedgerWriter(db, flush_interval_s=0.02, batch_rows=10, journal=Journal(tmp_path / "j"), dead_letter=dead)
    for i in range(25):  # row 7 cannot be stored: its token count does not fit a 64-bit integer
        writer.record(attempt(i, tokens_out=2**70) if i == 7 else attempt(i))
    wait_for(lambda: writer.written == 24)
    for i in range(25, 40):  # rows after the refused one are not held behind it
        writer.record(attempt(i))
    writer.close()
    assert db.count_attempts() == 39 and writer.dead_lettered == 1
    kept = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [k["row"]["request_id"] for k in kept] == ["req_000007"] and kept[0]["error"]
    assert not list((tmp_path / "j").iterdir())  # everything committed: the journal is gone after a clean close


def test_nul_characters_are_stored_on_postgres(pg_url: str, tmp_path: Path) -> None:
    db = Database(pg_url, tmp_path)
    writer = LedgerWriter(db, flush_interval_s=0.02, dead_letter=tmp_path / "dead.jsonl")
    writer.record(attempt(1, reason="upstream said: bad\x00byte", status="upstream_error"))
    writer.close()
    assert writer.dead_lettered == 0 and db.attempts()[0]["reason"] == "upstream said: bad\ufffdbyte"


def test_the_writer_reconnects_after_postgres_drops_its_connections(pg_url: str, tmp_path: Path) -> None:
    db = Database(pg_url, tmp_path)
    writer = LedgerWriter(db, flush_interval_s=0.02, journal=Journal(tmp_path / "j"))
    for i in range(10):
        writer.record(attempt(i))
    wait_for(lambda: writer.written == 10)
    assert terminate_connections(pg_url) >= 1  # what a database restart does to every client
    for i in range(10, 30):
        writer.record(attempt(i))
    wait_for(lambda: writer.written >= 30)
    writer.close()
    assert db.count_attempts() == 30 and writer.dead_lettered == 0


def test_while_the_database_is_down_memory_is_bounded_and_rows_come_back_from_the_journal(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path)
    down = [True]
    real_insert, real_alive = db.insert_attempts, db.alive

    def insert(conn, rows):  # noqa: ANN001, ANN202
        if down[0]:
            raise OSError("database unavailable (simulated outage)")
        return real_insert(conn, rows)

    db.insert_attempts = insert  # type: ignore[method-assign]
    db.alive = lambda conn: not down[0] and real_alive(conn)  # type: ignore[method-assign]
    journal = Journal(tmp_path / "j")
    writer = LedgerWriter(db, flush_interval_s=0.01, batch_rows=50, journal=journal, max_pending_rows=200)
    for i in range(2000):
        writer.record(attempt(i))
        if i % 100 == 0:
            time.sleep(0.02)
    wait_for(lambda: writer.pending() <= 200 + 50)
    assert writer.dropped_to_journal > 0 and writer.written == 0
    down[0] = False
    wait_for(lambda: db.count_attempts() == 2000)
    writer.close()
    assert db.count_attempts() == 2000 and writer.dead_lettered == 0


def test_at_shutdown_with_the_database_down_rows_wait_in_the_journal_for_the_next_start(tmp_path: Path) -> None:
    db = Database("sqlite", tmp_path)
    real_insert = db.insert_attempts

    def refuse(conn, rows):  # noqa: ANN001, ANN202
        raise OSError("database unavailable (simulated outage)")

    db.insert_attempts = refuse  # type: ignore[method-assign]
    db.alive = lambda conn: False  # type: ignore[method-assign]
    journal = Journal(tmp_path / "journal")
    writer = LedgerWriter(db, flush_interval_s=0.01, journal=journal)
    for i in range(50):
        writer.record(attempt(i))
        writer.close_request(f"req_{i:06d}")
    writer.close(timeout_s=60)  # the database never answered: nothing written, nothing dropped
    assert writer.written == 0 and writer.dropped_to_journal == 50
    db.insert_attempts = real_insert  # type: ignore[method-assign]
    found = recover(db, db.connect(), tmp_path / "journal")  # what the next start does
    assert found.rows == 50 and found.reconciled == 0 and db.count_attempts() == 50


CRASHER = """
import os, signal, sys, time
from pathlib import Path
from tokenomy.gateway.ledger import Admission, Attempt, Journal
j = Journal(Path(sys.argv[1]))
def adm(rid, usd):
    return Admission(rid, time.time(), "key_abc", "team-a", "auto", "simple", "big", "m", True, 100, 400, usd)
def row(rid, tokens_out, cost):
    return Attempt(rid, 0, time.time(), "key_abc", "team-a", "auto", "simple", None, "big", "m", True, 100,
                   tokens_out, cost, None, None, "ok", 200, "")
for rid in ("req_done", "req_rowed", "req_open", "req_spilled"):
    j.admit(adm(rid, 0.5))
j.close_many(["req_done"])  # its row committed, then its end journaled
j.close_many(["req_spilled"], [row("req_spilled", 40, 0.03)])  # its row let go into the journal (database down)
os.kill(os.getpid(), signal.SIGKILL)  # req_rowed: its row committed, its end not yet; req_open: in flight
"""


def test_requests_a_killed_process_left_open_are_billed_at_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    db = Database("sqlite", state_dir)
    db.insert_attempts(db.conn, [attempt(0, request_id="req_done", cost_usd=0.01, team="team-a")])
    db.insert_attempts(db.conn, [attempt(0, request_id="req_rowed", tokens_out=30, cost_usd=0.02, team="team-a")])
    db.close()
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(state_dir / "journal")], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    tiers = [api_tier("api", "http://127.0.0.1:9", ["simple", "complex"], 1, 2)]
    state = open_state(parse_config({"state_dir": str(state_dir), "tiers": tiers}))  # a new gateway, same state
    rows = {(r["request_id"], r["attempt"]): r for r in state.db.attempts()}
    assert set(rows) == {
        ("req_done", 0),
        ("req_rowed", 0),
        ("req_rowed", RECONCILED_ATTEMPT),
        ("req_open", RECONCILED_ATTEMPT),
        ("req_spilled", 0),
    }
    open_bill = rows[("req_open", RECONCILED_ATTEMPT)]
    assert open_bill["status"] == "reconciled" and open_bill["cost_usd"] == pytest.approx(0.5)
    assert (open_bill["tokens_in"], open_bill["tokens_out"]) == (100, 400) and "reservation" in open_bill["reason"]
    seen_bill = rows[("req_rowed", RECONCILED_ATTEMPT)]  # billed at the tokens its row saw: nothing more to add
    assert seen_bill["status"] == "reconciled" and seen_bill["cost_usd"] == 0.0 and "recorded" in seen_bill["reason"]
    assert rows[("req_spilled", 0)]["tokens_out"] == 40
    spent = {u["owner"]: u["spent_usd"] for u in state.budgets.report() if u["period"] == "day"}
    assert spent["team-a"] == pytest.approx(0.01 + 0.02 + 0.5 + 0.03)  # spend reloaded at restart includes the bills
    assert state.recovered.reconciled == 2
    assert [p.name for p in (state_dir / "journal").iterdir()] == [state.journal.path(0).name]  # only its own
    again = recover(state.db, state.db.connect(), state_dir / "journal", frozenset({state.journal.instance}))
    assert again.files == 0  # replayed once, then deleted
    asyncio.run(state.stop())


async def _load(url: str, key: str, seconds: float, seen: set[str], done: set[str]) -> None:
    """16 clients streaming for a while; `seen` gets every request id the gateway answered, `done` those that ended."""
    stop_at = time.monotonic() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            try:
                async with client.stream("POST", "/v1/chat/completions", json=chat(max_tokens=64, stream=True)) as r:
                    rid = r.headers.get("x-request-id")
                    if rid:
                        seen.add(rid)
                    async for _ in r.aiter_bytes():
                        pass
                    if rid and r.status_code == 200:
                        done.add(rid)
            except httpx.HTTPError:
                return

    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=10) as client:
        await asyncio.gather(*(loop(client) for _ in range(16)))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_gateway_stopped_mid_load_leaves_no_request_unbilled(sig: int, twins, tmp_path: Path) -> None:
    api = twins("api", speedup=5.0)  # slow enough that streams are in flight when the signal comes
    config = write_gateway_config(tmp_path, api)
    state = tmp_path / "state"
    key = offline_key(state)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_gateway(config, port)
    seen: set[str] = set()
    done: set[str] = set()
    asyncio.run(signal_during(_load(url, key, 30.0, seen, done), proc.pid, sig))
    proc.wait(timeout=30)
    assert len(done) > 16
    proc = start_gateway(config, port)  # restart on the same state: the journal is replayed
    db = Database("sqlite", state)
    rows = db.attempts()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    billed = {r["request_id"] for r in rows if r["status"] in ("ok", "reconciled")}
    assert seen <= billed  # every request the gateway started answering is billed
    reconciled = [r for r in rows if r["status"] == "reconciled"]
    if sig == signal.SIGKILL:  # in flight, or finished with its row not yet committed: billed at its reservation
        assert reconciled and all(r["cost_usd"] > 0 or "recorded" in r["reason"] for r in reconciled)
        assert all(r["tokens_out"] >= 64 for r in reconciled if r["cost_usd"] > 0)  # ≥ what it could generate
    else:  # graceful: the streams in flight finish, every one is recorded as answered, nothing needs reconciling
        assert done <= {r["request_id"] for r in rows if r["status"] == "ok"} and not reconciled
    spent = db.execute("SELECT SUM(cost_usd) FROM attempts WHERE ts_s >= ?", (period_start_s("day", time.time()),))
    assert spent[0][0] > 0


def test_a_sqlite_lock_held_by_another_process_never_blocks_requests(twins, gateway, tmp_path: Path) -> None:
    import sqlite3

    api = twins("api")
    g = gateway({"tiers": [api_tier("api", api, ["simple", "complex"], 1.0, 2.0)]}, tmp_path / "state")
    _, key = g.new_key("team-l")
    h = {"authorization": f"Bearer {key}"}
    holder = sqlite3.connect(tmp_path / "state" / "ledger.sqlite", timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing to the ledger file holds its lock
    try:
        with httpx.Client(base_url=g.url, headers=h, timeout=10) as client:  # well under SQLite's 30 s busy wait
            statuses = [
                client.post("/v1/chat/completions", json=chat(stream=i % 2 == 1)).status_code for i in range(20)
            ]
            unknown = client.post(
                "/v1/chat/completions", json=chat(), headers={"authorization": "Bearer tk-unknown"}
            ).status_code
        assert statuses == [200] * 20 and unknown == 401  # answered while the lock is held
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_for(lambda: g.gateway.db.count_attempts() == 20)  # the rows waited, none was refused
    assert g.gateway.ledger.dead_lettered == 0
