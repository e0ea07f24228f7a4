"""The ledger: one row per attempt, in SQLite (default) or PostgreSQL, written off the request path, never lost.

`Database` opens either store and holds the schema (attempts, API keys, budgets, a version counter for
keys and limits). Durability has two layers:

* `Journal`: an append-only JSON-lines file per gateway process under `state_dir/journal/`. At admission
  the request's reservation goes in as an `open` line (its write-ahead row: one encode and one `write()` to a
  file opened with O_APPEND, on the request path; no fsync: the page cache survives a SIGKILL of the process,
  and `journal_fsync` adds an fsync per line for power loss). The writer adds a `close` line once the request's
  rows are committed. The live process holds an exclusive `flock` on its files, so a file nobody locks belongs
  to a process that is gone.
* `LedgerWriter`: a background thread that group-commits the queued rows to the database (one transaction
  a batch, `INSERT … ON CONFLICT DO NOTHING`, so replaying a row is harmless). A batch the database refuses
  is retried after a reconnect; if the database answers but refuses rows, they are written one by one and
  those refused go to a dead-letter JSON-lines file (with a log line and a metric), never back in front of
  good rows. While the database is down, rows wait in memory up to `max_pending_rows`; past that they are
  written into the journal (`row` lines) and let go from memory, and re-read from it once the database is back.

`recover()` (at start, and every few seconds in the writer) replays the journals of processes that are gone:
the rows they let go from memory are inserted, and each request they left open is billed — at the tokens the
ledger saw for it when its committed rows recorded generated tokens, else at its reservation (less what its
rows billed) — as an attempt row with status `reconciled`. A row queued but not committed at a crash is thus
replaced by its request's reservation, which bounds what the request could cost.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import operator
import os
import socket
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("tokenomy.gateway")


@dataclass
class Attempt:
    """One try of one request on one upstream."""

    request_id: str
    attempt: int  # 0 for the first try, 1 after the first failover… (RECONCILED_ATTEMPT for a crash's bill)
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
    cost_usd: float  # the tier's $/Mtok: docs/design.md "Pricing self-hosted tokens" (the rule replay uses too)
    ttft_s: float | None
    e2e_s: float | None
    status: str  # ok, client_error, upstream_error, stream_error, cancelled, reconciled
    http_status: int
    reason: str  # why this tier (spill / failover) or what went wrong
    # validated routes only (gateway/escalate.py); left empty / NULL elsewhere
    validation: str = ""  # this attempt's answer: "pass" or "fail" ("" when not validated)
    request_usd: float | None = None  # the request's total cost (attempts and judges); on its final row only
    final_tier: str | None = None  # the tier whose answer the client got; on the final row only
    escalations: int | None = None  # tiers asked after the first; on the final row only
    passed: bool | None = None  # whether the answer the client got passed validation; on the final row only
    # from the upstream's usage where it says (NULL where it does not); cost_usd bills cached_tokens_in, a part
    # of tokens_in, at the tier's cached-input rate (router.py `tier_prices`; self-hosted: the input rate)
    cached_tokens_in: int | None = None  # usage.prompt_tokens_details.cached_tokens
    reasoning_tokens_out: int | None = None  # usage.completion_tokens_details.reasoning_tokens, part of tokens_out


RECONCILED_ATTEMPT = 1_000_000  # the attempt number of the row that bills a request a crash left open
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
    "cached_tokens_in": "BIGINT",
    "reasoning_tokens_out": "BIGINT",
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
    "CREATE TABLE IF NOT EXISTS gateway_state (name TEXT PRIMARY KEY, version BIGINT NOT NULL)",
)
ROW_VALUES = operator.attrgetter(*COLUMNS)
INSERT = (
    f"INSERT INTO attempts ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
    "ON CONFLICT (request_id, attempt) DO NOTHING"
)
JSON_LINE = json.JSONEncoder(separators=(",", ":")).encode  # built once: json.dumps with options builds one a call


def usage_details(usage: Any) -> dict[str, int]:
    """The cached input and reasoning tokens of an OpenAI-style `usage` object, as Attempt columns; a count the
    upstream does not give (or gives as something other than a non-negative integer) is left out (NULL)."""
    out: dict[str, int] = {}
    if not isinstance(usage, dict):
        return out
    for column, details, key in (
        ("cached_tokens_in", "prompt_tokens_details", "cached_tokens"),
        ("reasoning_tokens_out", "completion_tokens_details", "reasoning_tokens"),
    ):
        part = usage.get(details)
        value = part.get(key) if isinstance(part, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[column] = value
    return out


def row_values(row: Attempt, postgres: bool) -> tuple:
    """The row as SQL parameters: booleans as 0/1; on PostgreSQL, NUL characters (refused in text) as U+FFFD."""
    values = tuple(int(v) if v is True or v is False else v for v in ROW_VALUES(row))
    if postgres:
        values = tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v else v for v in values)
    return values


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
        self.lock = threading.Lock()  # the main connection is shared by the threads that call execute()
        try:
            self.conn = self.connect()
        except (OSError, sqlite3.Error) as exc:
            raise RuntimeError(f"ledger.url: cannot open the ledger database: {exc}") from None
        except Exception as exc:  # psycopg.OperationalError: PostgreSQL not reachable
            if type(exc).__module__.startswith("psycopg"):
                raise RuntimeError(f"ledger.url: cannot connect to PostgreSQL: {str(exc).splitlines()[0]}") from None
            raise
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
        """Run one statement on the main connection and commit; returns the rows it yields.

        Blocking: the gateway calls it from threads, never from its event loop. A broken connection
        (the database restarted) is replaced and the statement tried once more."""
        with self.lock:
            for tries_left in (1, 0):
                try:
                    return self._execute(self.conn, statement, params)
                except Exception:
                    if tries_left and not self.alive(self.conn):
                        with contextlib.suppress(Exception):
                            self.conn.close()
                        self.conn = self.connect()
                        continue
                    raise
        raise AssertionError("unreachable")

    def _execute(self, conn: Any, statement: str, params: tuple) -> list[tuple]:
        cur = conn.cursor()
        try:
            cur.execute(self.sql(statement), params)
            rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows
        except Exception:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def alive(self, conn: Any) -> bool:
        """Whether a connection still answers (False after a database restart or a network error)."""
        try:
            self._execute(conn, "SELECT 1", ())
            return True
        except Exception:  # noqa: BLE001 - any driver error means: reconnect
            return False

    def transient(self, exc: BaseException) -> bool:
        """Whether a failed write may succeed later as it is (locked, restarting, unreachable), not a refused row."""
        if self.postgres:
            import psycopg

            return isinstance(exc, psycopg.OperationalError | OSError)
        return isinstance(exc, sqlite3.OperationalError | OSError)

    def insert_attempts(self, conn: Any, rows: list[Attempt]) -> None:
        """Insert rows in one transaction; a row already there (same request and attempt) is left as it is."""
        cur = conn.cursor()
        try:
            cur.executemany(self.sql(INSERT), [row_values(r, self.postgres) for r in rows])
            conn.commit()
        except Exception:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
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

    def bump_version(self) -> None:
        """Count a change to keys or limits, so every running gateway on this database reloads them."""
        self.execute(
            "INSERT INTO gateway_state (name, version) VALUES ('config', 1) "
            "ON CONFLICT (name) DO UPDATE SET version = gateway_state.version + 1"
        )

    def version(self) -> int:
        """The keys-and-limits version (0 before any change)."""
        rows = self.execute("SELECT version FROM gateway_state WHERE name = 'config'")
        return int(rows[0][0]) if rows else 0

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
        with contextlib.suppress(Exception):
            self.conn.close()


# ---- the journal ----------------------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~5×, and this is built per request
class Admission:
    """A request's write-ahead row: what it reserved, written before any upstream is called."""

    request_id: str
    ts_s: float
    key_id: str
    team: str
    model: str
    request_class: str
    tier: str  # the priciest tier it may reach (its reservation's price)
    upstream_model: str
    stream: bool
    tokens_in: int  # prompt tokens reserved
    tokens_out: int  # output tokens reserved (max_tokens × choices × prompts)
    usd: float  # the reservation


def instance_id() -> str:
    """This process's journal name: host, pid and start time (unique across restarts)."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{time.time_ns() // 1000}"


class Journal:
    """Append-only JSON lines of this process's admissions (`open`), ends (`close`) and rows let go from memory
    (`row`), in segments it holds locked.

    Every line is one `os.write` under a lock. The event loop writes only `open` lines; the ledger writer writes
    `close` lines once a request's rows are committed (so a closed request never needs its rows from here), and
    `row` lines only while the database is down and memory is full. A segment over `segment_bytes` is replaced
    by a fresh one that starts with the requests still open; the full one is deleted at once, or kept (locked)
    until its rows are replayed when it holds rows that were let go.
    """

    def __init__(self, directory: Path, fsync: bool = False, segment_bytes: int = 8 << 20):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.instance = instance_id()
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.lock = threading.Lock()
        self.open_lines: dict[str, bytes] = {}  # request id → its open line, while the request runs
        self.seq = 0
        self.size = 0
        self.fd = self._new_segment()
        self.retired: list[tuple[Path, int]] = []  # full segments kept (locked) until their rows are replayed
        self.keep_full = False  # set while rows let go from memory wait in the journal
        self.closed = False

    def path(self, seq: int) -> Path:
        return self.directory / f"{self.instance}.{seq:06d}.jsonl"

    def paths(self) -> list[Path]:
        """This process's segments, oldest first."""
        return [p for p, _ in self.retired] + [self.path(self.seq)]

    def _new_segment(self) -> int:
        fd = os.open(self.path(self.seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while this process lives
        return fd

    def _write(self, data: bytes) -> None:
        """Append (lock held); start a new segment when this one is full."""
        os.write(self.fd, data)
        self.size += len(data)
        if self.fsync:
            os.fsync(self.fd)
        if self.size >= self.segment_bytes:
            old_fd, old_path = self.fd, self.path(self.seq)
            self.seq += 1
            self.size = 0
            self.fd = self._new_segment()
            carried = b"".join(self.open_lines.values())
            if carried:
                os.write(self.fd, carried)
                self.size += len(carried)
            if self.keep_full:
                self.retired.append((old_path, old_fd))
            else:
                with contextlib.suppress(OSError):
                    old_path.unlink()
                os.close(old_fd)

    def admit(self, a: Admission) -> None:
        """The write-ahead row of a request (on the request path: one encode, one write)."""
        entry = {
            "o": "open",
            "id": a.request_id,
            "ts": a.ts_s,
            "key": a.key_id,
            "team": a.team,
            "model": a.model,
            "cls": a.request_class,
            "tier": a.tier,
            "um": a.upstream_model,
            "stream": a.stream,
            "tin": a.tokens_in,
            "tout": a.tokens_out,
            "usd": a.usd,
        }
        try:
            line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)  # ~15× JSON_LINE; the same JSON values
        except TypeError:  # a string orjson refuses (a lone surrogate in a client's model name)
            line = JSON_LINE(entry).encode() + b"\n"
        with self.lock:
            if self.closed:
                return
            self.open_lines[a.request_id] = line
            self._write(line)

    def close_many(self, request_ids: list[str], rows: list[Attempt] = ()) -> None:
        """`row` lines for rows let go from memory, then `close` lines for requests whose rows are recorded
        (committed, dead-lettered, or in those row lines): one write."""
        parts = [b'{"o":"row","r":' + JSON_LINE(ROW_VALUES(r)).encode() + b"}\n" for r in rows]
        with self.lock:
            if self.closed:
                return
            for rid in request_ids:
                if self.open_lines.pop(rid, None) is not None:
                    parts.append(b'{"o":"close","id":' + JSON_LINE(rid).encode() + b"}\n")
            if rows:
                self.keep_full = True
            if parts:
                self._write(b"".join(parts))

    def replayed(self) -> None:
        """The rows let go from memory are in the database now: full segments may go."""
        with self.lock:
            self.keep_full = False
            for p, fd in self.retired:
                with contextlib.suppress(OSError):
                    p.unlink()
                os.close(fd)
            self.retired.clear()

    def open_requests(self) -> int:
        return len(self.open_lines)

    def close(self, committed: bool) -> None:
        """At shutdown: delete the segments when every row is committed and no request is open, else keep them
        for the next start to replay."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            keep = not committed or bool(self.open_lines) or self.keep_full
            for p, fd in [*self.retired, (self.path(self.seq), self.fd)]:
                if not keep:
                    with contextlib.suppress(OSError):
                        p.unlink()
                os.close(fd)
            self.retired.clear()


@dataclass
class Recovered:
    """What `recover` found in the journals of processes that are gone."""

    files: int = 0
    rows: int = 0  # rows let go from memory, replayed (already in the database or not)
    reconciled: int = 0  # requests left open, billed by a reconciled row
    reconciled_usd: float = 0.0
    reconciled_tokens: int = 0


def read_journal(path: Path) -> tuple[list[Attempt], dict[str, dict[str, Any]], set[str]]:
    """Rows, open requests and closed request ids of one journal file; a torn last line is skipped."""
    rows: list[Attempt] = []
    opens: dict[str, dict[str, Any]] = {}
    closed: set[str] = set()
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                entry = json.loads(raw)
                kind = entry["o"]
                if kind == "row":
                    rows.append(Attempt(*entry["r"]))
                elif kind == "open":
                    opens[entry["id"]] = entry
                elif kind == "close":
                    closed.add(entry["id"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ledger journal %s line %d skipped: %s", path.name, number, exc)
    return rows, opens, closed


def reconciled_row(entry: dict[str, Any], seen_in: int, seen_out: int, seen_usd: float) -> Attempt:
    """The bill of a request a crash left open, given what its committed rows recorded: nothing more when they
    saw generated tokens (its answer was recorded; only the end was not), else its reservation less what its rows
    already billed."""
    if seen_out > 0:
        usd, t_in, t_out = 0.0, 0, 0
        how = f"billed at the {seen_in + seen_out} tokens its attempt rows recorded"
    else:
        usd = max(float(entry["usd"]) - seen_usd, 0.0)
        t_in, t_out = int(entry["tin"]), int(entry["tout"])
        how = f"billed at its reservation (${float(entry['usd']):.6f}, {t_in} + {t_out} tokens)"
    return Attempt(
        request_id=entry["id"],
        attempt=RECONCILED_ATTEMPT,
        ts_s=float(entry["ts"]),
        key_id=entry["key"],
        team=entry["team"],
        model=entry["model"],
        request_class=entry["cls"],
        p_complex=None,
        tier=entry["tier"],
        upstream_model=entry["um"],
        stream=bool(entry["stream"]),
        tokens_in=t_in,
        tokens_out=t_out,
        cost_usd=usd,
        ttft_s=None,
        e2e_s=None,
        status="reconciled",
        http_status=0,
        reason=f"the gateway stopped before this request ended (crash); {how}",
    )


def _seen(db: Database, conn: Any, request_ids: list[str]) -> dict[str, tuple[int, int, float]]:
    """(tokens in, tokens out, $) the ledger holds for each request (its rows other than a reconciled one)."""
    seen: dict[str, tuple[int, int, float]] = {}
    cur = conn.cursor()
    try:
        for i in range(0, len(request_ids), 500):
            chunk = request_ids[i : i + 500]
            cur.execute(
                db.sql(
                    "SELECT request_id, SUM(tokens_in), SUM(tokens_out), SUM(cost_usd) FROM attempts "
                    f"WHERE attempt <> {RECONCILED_ATTEMPT} AND request_id IN ({', '.join('?' for _ in chunk)}) "
                    "GROUP BY request_id"
                ),
                tuple(chunk),
            )
            for rid, t_in, t_out, usd in cur.fetchall():
                seen[rid] = (int(t_in or 0), int(t_out or 0), float(usd or 0.0))
        conn.commit()
    finally:
        cur.close()
    return seen


def recover(db: Database, conn: Any, directory: Path, skip: frozenset[str] = frozenset()) -> Recovered:
    """Replay the journals nobody holds (their process is gone): insert the rows they kept, then bill each
    request they left open (`reconciled_row`)."""
    found = Recovered()
    if not directory.is_dir():
        return found
    by_instance: dict[str, list[Path]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        instance = path.name.rsplit(".", 2)[0]
        if instance not in skip:
            by_instance.setdefault(instance, []).append(path)
    for paths in by_instance.values():
        fds = []
        try:
            for path in paths:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its process is alive
                    os.close(fd)
                    raise
                fds.append(fd)
        except BlockingIOError:
            for fd in fds:
                os.close(fd)
            continue
        try:
            rows: list[Attempt] = []
            opens: dict[str, dict[str, Any]] = {}
            closed: set[str] = set()
            for path in paths:
                if path.exists():
                    r, o, c = read_journal(path)
                    rows += r
                    opens.update(o)
                    closed |= c
            if rows:
                db.insert_attempts(conn, rows)
            left_open = [rid for rid in opens if rid not in closed]
            seen = _seen(db, conn, left_open) if left_open else {}
            bills = [reconciled_row(opens[rid], *seen.get(rid, (0, 0, 0.0))) for rid in left_open]
            if bills:
                db.insert_attempts(conn, bills)
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            found.files += len(paths)
            found.rows += len(rows)
            found.reconciled += len(bills)
            found.reconciled_usd += sum(b.cost_usd for b in bills)
            found.reconciled_tokens += sum(b.tokens_in + b.tokens_out for b in bills)
            if bills:
                log.warning(
                    "ledger: %d requests left open by a stopped gateway were billed (status 'reconciled'): $%.6f",
                    len(bills),
                    sum(b.cost_usd for b in bills),
                )
        finally:
            for fd in fds:
                os.close(fd)
    return found


# ---- the writer -----------------------------------------------------------------------------------------------


class Close:
    """A marker in the writer's queue: this request's rows are all before it."""

    __slots__ = ("request_id",)

    def __init__(self, request_id: str):
        self.request_id = request_id


class LedgerWriter:
    """A background thread writing attempt rows in batches; `record` and `close_request` are deque appends.

    The thread wakes every `flush_interval_s`, or as soon as `batch_rows` rows are waiting, writes what is
    waiting in one transaction, then journals the ends of the requests whose rows it committed (see the module
    docstring for failures).
    """

    def __init__(
        self,
        db: Database,
        flush_interval_s: float = 0.2,
        batch_rows: int = 500,
        journal: Journal | None = None,
        dead_letter: Path | None = None,
        max_pending_rows: int = 100_000,
        recover_every_s: float = 5.0,
    ):
        self.db = db
        self.flush_interval_s = flush_interval_s
        self.batch_rows = batch_rows
        self.journal = journal
        self.dead_letter = dead_letter
        self.max_pending_rows = max_pending_rows
        self.recover_every_s = recover_every_s
        self.rows: deque[Attempt | Close] = deque()  # append and popleft are atomic: no lock needed
        self.wake = threading.Event()
        self.closing = False
        self.written = 0
        self.failed_batches = 0
        self.dead_lettered = 0
        self.reconnects = 0
        self.dropped_to_journal = 0  # rows let go from memory while the database was down (re-read later)
        self.replay_own = False  # rows were let go: re-read this process's journal once the database answers
        self.backlog: list[Attempt | Close] = []  # a batch waiting for the database to come back
        self.recovered = Recovered()
        self.db_up = True
        self.thread = threading.Thread(target=self._run, name="tokenomy-ledger", daemon=True)
        self.thread.start()

    def admit(self, admission: Admission) -> None:
        """The request's write-ahead row, in the journal before the request goes upstream."""
        if self.journal is not None:
            self.journal.admit(admission)

    def close_request(self, request_id: str) -> None:
        """The request ended and all its rows were recorded: journal its end once they are committed."""
        if self.journal is not None:
            self.rows.append(Close(request_id))

    def record(self, row: Attempt) -> None:
        rows = self.rows
        rows.append(row)
        if len(rows) >= self.batch_rows:
            self.wake.set()

    def pending(self) -> int:
        return len(self.rows) + len(self.backlog)  # rows and end markers not yet written

    def _take(self) -> list[Attempt | Close]:
        rows = self.rows
        return [rows.popleft() for _ in range(min(len(rows), 20 * self.batch_rows))]

    def _run(self) -> None:
        conn = self._connect()
        last_recover = 0.0
        failures = 0
        while True:
            self.wake.wait(self.flush_interval_s if not failures else min(0.1 * 2**failures, 2.0))
            self.wake.clear()
            closing = self.closing  # read before taking rows, so nothing recorded before close() is left behind
            if conn is None:
                conn = self._connect()
            if conn is not None and self.replay_own:
                self._replay_own(conn)
            batch = self.backlog + self._take()
            self.backlog = []
            if batch and conn is not None:
                batch, conn = self._write(conn, batch)
            if batch:  # the database is down: keep the batch (bounded), retry with backoff
                self._hold(batch)
                failures += 1
            else:
                failures = 0
            if conn is not None and self.journal is not None and time.monotonic() - last_recover > self.recover_every_s:
                last_recover = time.monotonic()
                self._recover(conn)
            if closing and not self.rows and (not self.backlog or failures > 3):
                break  # the database still down after ~1.5 s of retries: what is left goes to the journal
        if self.backlog and self.journal is not None:  # the database stayed down: keep the rest in the journal
            self._spill(self.backlog)
            self.backlog = []
        committed = not self.backlog and not self.rows and not self.replay_own
        if self.journal is not None:
            self.journal.close(committed)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _connect(self) -> Any:
        try:
            conn = self.db.connect()
        except Exception as exc:  # noqa: BLE001 - any driver error: try again later
            if self.db_up:
                log.error("ledger: cannot connect to the database: %s", exc)
            self.db_up = False
            return None
        if not self.db_up:
            log.warning("ledger: database connection restored")
            self.reconnects += 1
        self.db_up = True
        return conn

    def _hold(self, batch: list[Attempt | Close]) -> None:
        """Keep a batch for the next try; past max_pending_rows, let it go from memory into the journal."""
        if self.journal is not None and len(batch) + len(self.rows) > self.max_pending_rows:
            self._spill(batch)
            return
        self.backlog = batch

    def _spill(self, batch: list[Attempt | Close]) -> None:
        """Rows and ends into the journal (re-read from it once the database answers)."""
        assert self.journal is not None
        rows = [b for b in batch if type(b) is Attempt]
        self.journal.close_many([b.request_id for b in batch if type(b) is Close], rows)
        self.dropped_to_journal += len(rows)
        self.replay_own = True

    def _write(self, conn: Any, batch: list[Attempt | Close]) -> tuple[list[Attempt | Close], Any]:
        """Write a batch; returns (what is left to write because the database is down, the connection to use next)."""
        rows = [b for b in batch if type(b) is Attempt]
        try:
            if rows:
                self.db.insert_attempts(conn, rows)
            self.written += len(rows)
        except Exception as exc:  # noqa: BLE001 - the ledger must survive any driver error
            self.failed_batches += 1
            if self.db.transient(exc) or not self.db.alive(conn):  # locked or gone: reconnect, try again later
                log.error("ledger: database unavailable, %d rows wait: %s", len(rows), exc)
                with contextlib.suppress(Exception):
                    conn.close()
                self.db_up = False
                return batch, self._connect()
            log.error("ledger: the database refused a batch of %d rows (%s); writing them one by one", len(rows), exc)
            for i, item in enumerate(batch):
                if type(item) is not Attempt:
                    continue
                try:
                    self.db.insert_attempts(conn, [item])
                    self.written += 1
                except Exception as row_exc:  # noqa: BLE001
                    if self.db.transient(row_exc) or not self.db.alive(conn):  # down after all: the rest waits
                        with contextlib.suppress(Exception):
                            conn.close()
                        self.db_up = False
                        self._journal_ends(batch[:i])
                        return batch[i:], self._connect()
                    self._dead_letter(item, row_exc)  # refused on its own: never in front of good rows again
        self._journal_ends(batch)
        return [], conn

    def _journal_ends(self, done: list[Attempt | Close]) -> None:
        """The ends of the requests whose rows are recorded, in one journal write."""
        if self.journal is not None:
            ends = [b.request_id for b in done if type(b) is Close]
            if ends:
                self.journal.close_many(ends)

    def _dead_letter(self, row: Attempt, exc: Exception) -> None:
        """A row the database refuses: to the dead-letter file, with a log line (and the metric's count)."""
        self.dead_lettered += 1
        log.error(
            "ledger: row %s/%d refused by the database, kept in the dead-letter file: %s",
            row.request_id,
            row.attempt,
            exc,
        )
        if self.dead_letter is None:
            return
        entry = {"error": str(exc)[:500], "ts_s": time.time(), "row": dict(zip(COLUMNS, ROW_VALUES(row), strict=True))}
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        with self.dead_letter.open("a") as fh:
            fh.write(json.dumps(entry, default=str) + "\n")

    def _replay_own(self, conn: Any) -> None:
        """After rows were let go from memory: insert every row of this process's journal (duplicates are ignored)."""
        journal = self.journal
        assert journal is not None
        rows: list[Attempt] = []
        for path in journal.paths():
            if path.exists():
                rows += read_journal(path)[0]
        try:
            for i in range(0, len(rows), 5000):
                self.db.insert_attempts(conn, rows[i : i + 5000])
        except Exception as exc:  # noqa: BLE001
            log.error("ledger: replaying the journal failed, will retry: %s", exc)
            return
        log.warning("ledger: %d rows re-read from the journal after the database came back", len(rows))
        self.written += len(rows)
        self.replay_own = False
        journal.replayed()

    def _recover(self, conn: Any) -> None:
        assert self.journal is not None
        try:
            found = recover(self.db, conn, self.journal.directory, frozenset({self.journal.instance}))
        except Exception as exc:  # noqa: BLE001
            log.error("ledger: recovering stopped gateways' journals failed, will retry: %s", exc)
            return
        for name in ("files", "rows", "reconciled", "reconciled_usd", "reconciled_tokens"):
            setattr(self.recovered, name, getattr(self.recovered, name) + getattr(found, name))

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything recorded so far, then stop the thread."""
        self.closing = True
        self.wake.set()
        self.thread.join(timeout=timeout_s)
