"""The ledger: one row per attempt, in SQLite (default) or PostgreSQL, written off the request path.

`Database` opens either store and holds the schema (attempts, API keys, budgets). `LedgerWriter`
is a background thread: the request path appends a row to a deque (no I/O, and no thread
wake-up until a batch is full), the thread writes batches in one transaction each. `close()`
drains the deque, so a graceful shutdown loses nothing; after a SIGKILL at most the batch in
flight is missing (SQLite runs in WAL mode and recovers on the next open).
"""

from __future__ import annotations

import logging
import operator
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger("tokenomy.gateway")


@dataclass
class Attempt:
    """One try of one request on one upstream."""

    request_id: str
    attempt: int  # 0 for the first try, 1 after the first failover…
    ts_s: float  # unix time the attempt started
    key_id: str
    team: str
    model: str  # as the client asked
    request_class: str  # simple / complex / named
    p_complex: float | None
    tier: str
    upstream_model: str
    stream: bool
    tokens_in: int
    tokens_out: int
    cost_usd: float
    ttft_s: float | None
    e2e_s: float | None
    status: str  # ok, client_error, upstream_error, stream_error, cancelled
    http_status: int
    reason: str  # why this tier (spill / failover) or what went wrong
    # validated routes only (gateway/escalate.py); left empty / NULL elsewhere
    validation: str = ""  # this attempt's answer: "pass" or "fail" ("" when not validated)
    request_usd: float | None = None  # the request's total cost (attempts and judges); on its final row only
    final_tier: str | None = None  # the tier whose answer the client got; on the final row only
    escalations: int | None = None  # tiers asked after the first; on the final row only
    passed: bool | None = None  # whether the answer the client got passed validation; on the final row only


COLUMNS = tuple(f.name for f in fields(Attempt))
SQL_TYPES = {
    "attempt": "INTEGER",
    "stream": "INTEGER",
    "tokens_in": "BIGINT",
    "tokens_out": "BIGINT",
    "http_status": "INTEGER",
    "ts_s": "DOUBLE PRECISION",
    "p_complex": "DOUBLE PRECISION",
    "cost_usd": "DOUBLE PRECISION",
    "ttft_s": "DOUBLE PRECISION",
    "e2e_s": "DOUBLE PRECISION",
    "request_usd": "DOUBLE PRECISION",
    "escalations": "INTEGER",
    "passed": "INTEGER",
}
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS attempts ("
    + ", ".join(f"{c} {SQL_TYPES.get(c, 'TEXT')}" for c in COLUMNS)
    + ", PRIMARY KEY (request_id, attempt))",
    "CREATE INDEX IF NOT EXISTS attempts_ts ON attempts (ts_s)",
    "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, "
    "team TEXT NOT NULL, name TEXT NOT NULL, created_s DOUBLE PRECISION NOT NULL, revoked INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS budgets (scope TEXT NOT NULL, owner TEXT NOT NULL, period TEXT NOT NULL, "
    "usd DOUBLE PRECISION, tokens BIGINT, PRIMARY KEY (scope, owner, period))",
)
ROW_VALUES = operator.attrgetter(*COLUMNS)
INSERT = f"INSERT INTO attempts ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


class Database:
    """SQLite file or PostgreSQL URL; SQL is written with '?' placeholders and adapted for psycopg."""

    def __init__(self, url: str, state_dir: Path):
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            self.target = url
        else:
            path = Path(url) if url not in ("sqlite", "") else state_dir / "ledger.sqlite"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.target = str(path)
        self.conn = self.connect()
        for statement in SCHEMA:
            self.execute(statement)
        self.add_missing_columns()

    def connect(self) -> Any:
        """A new connection (one per thread)."""
        if self.postgres:
            try:
                import psycopg
            except ImportError as exc:
                raise RuntimeError("a PostgreSQL ledger needs psycopg: pip install 'tokenomy[postgres]'") from exc
            return psycopg.connect(self.target, connect_timeout=5)
        conn = sqlite3.connect(self.target, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    def execute(self, statement: str, params: tuple = ()) -> list[tuple]:
        """Run one statement on the main connection and commit; returns the rows it yields."""
        cur = self.conn.cursor()
        try:
            cur.execute(self.sql(statement), params)
            rows = cur.fetchall() if cur.description else []
            self.conn.commit()
            return rows
        except Exception:
            self.conn.rollback()
            raise
        finally:
            cur.close()

    def insert_attempts(self, conn: Any, rows: list[Attempt]) -> None:
        cur = conn.cursor()
        try:
            values = [tuple(int(v) if v is True or v is False else v for v in ROW_VALUES(r)) for r in rows]
            cur.executemany(self.sql(INSERT), values)
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        finally:
            cur.close()

    def add_missing_columns(self) -> None:
        """Bring a ledger made by an older version up to date: add the attempt columns it lacks."""
        if self.postgres:
            rows = self.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'attempts' AND table_schema = current_schema()"
            )
            present = {r[0] for r in rows}
        else:
            present = {r[1] for r in self.execute("PRAGMA table_info(attempts)")}
        for column in COLUMNS:
            if column not in present:
                self.execute(f"ALTER TABLE attempts ADD COLUMN {column} {SQL_TYPES.get(column, 'TEXT')}")

    def count_attempts(self) -> int:
        return int(self.execute("SELECT COUNT(*) FROM attempts")[0][0])

    def spend_since(self, ts_s: float) -> list[tuple[str, str, float, int]]:
        """(key_id, team, usd, tokens) summed over attempts since a time."""
        rows = self.execute(
            "SELECT key_id, team, SUM(cost_usd), SUM(tokens_in + tokens_out) FROM attempts WHERE ts_s >= ? "
            "GROUP BY key_id, team",
            (ts_s,),
        )
        return [(k, t, float(u or 0.0), int(n or 0)) for k, t, u, n in rows]

    def attempts(self, since_s: float = 0.0) -> list[dict[str, Any]]:
        """Every attempt since a time, as dicts (for reports)."""
        rows = self.execute(f"SELECT {', '.join(COLUMNS)} FROM attempts WHERE ts_s >= ? ORDER BY ts_s", (since_s,))
        return [dict(zip(COLUMNS, r, strict=True)) for r in rows]

    def close(self) -> None:
        self.conn.close()


class LedgerWriter:
    """A background thread writing attempt rows in batches; `record` is a deque append, never blocking.

    The thread wakes every `flush_interval_s`, or as soon as `batch_rows` rows are waiting, and writes
    what is waiting in one transaction.
    """

    def __init__(self, db: Database, flush_interval_s: float = 0.2, batch_rows: int = 500):
        self.db = db
        self.flush_interval_s = flush_interval_s
        self.batch_rows = batch_rows
        self.rows: deque[Attempt] = deque()  # append and popleft are atomic: no lock needed
        self.wake = threading.Event()
        self.closing = False
        self.written = 0
        self.failed_batches = 0
        self.thread = threading.Thread(target=self._run, name="tokenomy-ledger", daemon=True)
        self.thread.start()

    def record(self, row: Attempt) -> None:
        rows = self.rows
        rows.append(row)
        if len(rows) >= self.batch_rows:
            self.wake.set()

    def pending(self) -> int:
        return len(self.rows)

    def _take(self) -> list[Attempt]:
        rows = self.rows
        return [rows.popleft() for _ in range(len(rows))]

    def _run(self) -> None:
        conn = self.db.connect()
        unwritten: list[Attempt] = []  # a batch the database refused, tried again next round
        while True:
            self.wake.wait(self.flush_interval_s)
            self.wake.clear()
            closing = self.closing  # read before taking rows, so nothing recorded before close() is left behind
            batch = unwritten + self._take()
            if batch:
                unwritten = self._write(conn, batch, retry=not closing)
            if closing:
                break
        conn.close()

    def _write(self, conn: Any, batch: list[Attempt], retry: bool) -> list[Attempt]:
        """Write a batch; on a database error keep it for the next round (or give up at shutdown)."""
        for _ in range(1 if retry else 3):
            try:
                self.db.insert_attempts(conn, batch)
                self.written += len(batch)
                return []
            except Exception as exc:  # noqa: BLE001 - the ledger must survive any driver error
                self.failed_batches += 1
                log.error("ledger: could not write %d rows: %s", len(batch), exc)
                time.sleep(0.5)
        return batch if retry else []

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything recorded so far, then stop the thread."""
        self.closing = True
        self.wake.set()
        self.thread.join(timeout=timeout_s)
