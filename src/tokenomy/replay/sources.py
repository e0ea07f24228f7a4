"""Rebuild a workload from what happened: a gateway ledger (SQLite file or PostgreSQL URL), a bench
`--requests-jsonl` file, or a trace (sim/workload.py `read_trace` formats: a Mooncake trace's `hash_ids` become
prefix ids, so the simulator's prefix cache sees the blocks requests share).

Sessions are kept where the source names them (a tokenomy JSONL trace's `session_id`, a bench file's `session`):
their prompts then get prefix ids block by block (sim.workload.conversation_prefix_ids), the conversation so far
being each turn's shared prefix. Where the source also says when each answer arrived (a bench file's `e2e_s`), the
sessions replay closed loop: a later turn is sent its recorded think time (its recorded send time less the recorded
answer to the turn before) after the alternative's answer, as the user would have, so a slower alternative delays
the conversation instead of piling its turns up. A trace gives no answer times: its turns arrive at their recorded
times (`Replayed.arrivals` says which).

Ledger: one request per `request_id`; its arrival is its first attempt's `ts_s`; its lengths, class and team
come from its last attempt that returned tokens (`status` ok); what it actually cost is the sum of its
attempts' `cost_usd` (or `request_usd` on its final row, when an escalating route wrote one); its TTFT and
e2e are those of that attempt, and so are its cached input and reasoning tokens (0 in ledgers without those
columns); it was spilled when that attempt's `reason` says "spill". Columns are read by
name from whatever the table has (another version may add some); a request that cannot be replayed is
skipped with its reason counted, never silently.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tokenomy.sim.workload import TraceError, Workload, conversation_prefix_ids, json_record, read_trace

NO_TEAM = "(none)"
NO_CLASS = "*"
LISTED_BAD_LINES = 10  # bad trace lines named one by one (file:line: reason); the rest are counted together


class SourceError(ValueError):
    """A source that cannot be read: the message names it and what is wrong."""


@dataclass
class Replayed:
    """The requests to replay (sorted by arrival) and what actually happened to them, where known."""

    kind: str  # "ledger", "bench" or "trace"
    source: str
    workload: Workload  # arrivals from 0
    teams: np.ndarray  # per request, str
    actual_usd: np.ndarray | None = None  # per request (ledger only)
    actual_ttft_s: np.ndarray | None = None  # per request, NaN where unknown
    actual_e2e_s: np.ndarray | None = None
    actual_spilled: np.ndarray | None = None  # per request, bool (ledger only)
    actual_tiers: np.ndarray | None = None  # per request, the tier that answered (ledger only)
    cached_input_tokens: np.ndarray | None = None  # per request, input tokens the provider read from its cache
    reasoning_tokens: np.ndarray | None = None  # per request, output tokens spent reasoning (ledger only)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.workload)

    @property
    def arrivals(self) -> str:
        """How the replayed requests arrive under every alternative (shown with the figures)."""
        w = self.workload
        if w.session_ids is None:
            return "every request at its recorded time"
        sessions = len(np.unique(w.session_ids))
        if w.closed_sessions:
            return (
                f"{sessions:,} sessions, closed loop: each later turn its recorded think time after the alternative's "
                "answer to the turn before"
            )
        return (
            f"{sessions:,} sessions, every turn at its recorded time (the source does not say when every answer came)"
        )


def _skip(skipped: dict[str, int], reason: str) -> None:
    skipped[reason] = skipped.get(reason, 0) + 1


def _num(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def _count(value: Any) -> int:
    """A token count column: 0 where missing (older ledgers) or not a number."""
    x = _num(value)
    return int(x) if math.isfinite(x) and x > 0 else 0


# The attempt columns replay reads, in this order (a column an older ledger lacks reads as NULL).
LEDGER_COLUMNS = (
    "request_id",
    "attempt",
    "ts_s",
    "status",
    "tokens_in",
    "tokens_out",
    "request_usd",
    "cost_usd",
    "request_class",
    "team",
    "ttft_s",
    "e2e_s",
    "reason",
    "tier",
    "cached_tokens_in",
    "reasoning_tokens_out",
)
_RID, _ATTEMPT, _TS, _STATUS, _TIN, _TOUT, _REQUEST_USD, _COST = range(8)
_CLASS, _TEAM, _TTFT, _E2E, _REASON, _TIER, _CACHED, _REASONING = range(8, 16)


def _select(present: list[str]) -> str:
    """The query for LEDGER_COLUMNS, NULL for those the table lacks."""
    cols = [c if c in present else f"NULL AS {c}" for c in LEDGER_COLUMNS]
    return f"SELECT {', '.join(cols)} FROM attempts"


def _ledger_rows(source: str) -> list[tuple]:
    """Every attempt row of a ledger as a tuple of LEDGER_COLUMNS (read only)."""
    probe = "SELECT * FROM attempts LIMIT 0"
    if source.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError as exc:
            raise SourceError(f"{source}: reading a PostgreSQL ledger needs psycopg (pip install psycopg)") from exc
        try:
            with psycopg.connect(source, connect_timeout=5) as conn, conn.cursor() as cur:
                cur.execute(probe)
                cur.execute(_select([d[0] for d in cur.description]))
                return cur.fetchall()
        except psycopg.Error as exc:
            raise SourceError(f"{source}: {' '.join(str(exc).split())}") from exc
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"{source}: no such file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            present = [d[0] for d in conn.execute(probe).description]
            return conn.execute(_select(present)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SourceError(f"{source}: not a gateway ledger ({exc})") from exc


def _request(attempts: list[tuple], skipped: dict[str, int]) -> tuple | None:
    """One request's record from its attempt rows (None, its reason counted, when it cannot be replayed)."""
    if len(attempts) > 1:
        attempts.sort(key=lambda r: _num(r[_ATTEMPT]))
    arrival = min((_num(r[_TS]) for r in attempts), default=math.nan)
    served = [r for r in attempts if r[_STATUS] == "ok" and _num(r[_TOUT]) >= 1]
    if not math.isfinite(arrival):
        _skip(skipped, "no valid ts_s")
        return None
    if not served:
        _skip(skipped, "no attempt returned tokens (status not ok)")
        return None
    final = served[-1]
    tokens_in = _num(final[_TIN])
    if not tokens_in >= 1:
        _skip(skipped, "tokens_in missing or < 1")
        return None
    request_usd = _num(attempts[-1][_REQUEST_USD])
    if math.isfinite(request_usd):
        usd = request_usd
    else:
        costs = [_num(r[_COST]) for r in attempts]
        usd = sum(c for c in costs if math.isfinite(c))
    return (
        arrival,
        int(tokens_in),
        int(_num(final[_TOUT])),
        str(final[_CLASS] or NO_CLASS),
        str(final[_TEAM] or NO_TEAM),
        usd if math.isfinite(usd) else 0.0,
        _num(final[_TTFT]),
        _num(final[_E2E]),
        "spill" in str(final[_REASON] or "").lower(),
        str(final[_TIER] or "?"),
        _count(final[_CACHED]),
        _count(final[_REASONING]),
    )


def read_ledger(source: str) -> Replayed:
    """The requests of a gateway ledger (SQLite path or PostgreSQL URL) and what they cost."""
    by_request: dict[str, list[tuple]] = {}
    for row in _ledger_rows(source):
        rid = str(row[_RID])
        attempts = by_request.get(rid)
        if attempts is None:
            by_request[rid] = [row]
        else:
            attempts.append(row)
    skipped: dict[str, int] = {}
    recs = [rec for attempts in by_request.values() if (rec := _request(attempts, skipped)) is not None]
    if not recs:
        raise SourceError(f"{source}: no replayable requests in the ledger (skipped: {skipped or 'none'})")
    recs.sort(key=lambda r: r[0])
    cols = list(zip(*recs, strict=True))
    arrival = np.array(cols[0]) - cols[0][0]
    workload = Workload(arrival, np.array(cols[1]), np.array(cols[2]), np.array(cols[3], dtype=object), name="ledger")
    return Replayed(
        "ledger",
        source,
        workload,
        np.array(cols[4], dtype=object),
        actual_usd=np.array(cols[5], dtype=float),
        actual_ttft_s=np.array(cols[6], dtype=float),
        actual_e2e_s=np.array(cols[7], dtype=float),
        actual_spilled=np.array(cols[8], dtype=bool),
        actual_tiers=np.array(cols[9], dtype=object),
        cached_input_tokens=np.array(cols[10], dtype=np.int64),
        reasoning_tokens=np.array(cols[11], dtype=np.int64),
        skipped=skipped,
    )


def read_bench_jsonl(path: Path) -> Replayed:
    """The requests of a `tokenomy bench --requests-jsonl` file: arrival = intended (or sent) time, lengths as the
    server reported them, the client's TTFT and e2e as what happened; failed requests are skipped."""
    skipped: dict[str, int] = {}
    recs = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json_record(line, f"{path}:{n}")
            except TraceError:
                _skip(skipped, "a line that is not a JSON object")
                continue
            if rec.get("error"):
                _skip(skipped, "request failed in the bench run")
                continue
            arrival = _num(rec.get("intended_s", rec.get("sent_s")))
            tokens_in = _num(rec.get("prompt_tokens") or rec.get("input_tokens"))
            tokens_out = _num(rec.get("output_tokens"))
            if not math.isfinite(arrival):
                _skip(skipped, "no intended_s / sent_s")
            elif not (tokens_in >= 1 and tokens_out >= 1):
                _skip(skipped, "prompt_tokens / output_tokens missing or < 1")
            else:
                session = rec.get("session")
                key = (str(rec.get("run", "")), session) if isinstance(session, int) and session >= 0 else None
                row = (arrival, int(tokens_in), int(tokens_out), _num(rec.get("ttft_s")), _num(rec.get("e2e_s")), key)
                recs.append(row)
    if not recs:
        raise SourceError(f"{path}: no replayable requests (skipped: {skipped or 'none'})")
    recs.sort(key=lambda r: r[0])
    cols = list(zip(*recs, strict=True))
    arrival = np.array(cols[0]) - cols[0][0]
    n = len(recs)
    workload = with_sessions(Workload(arrival, np.array(cols[1]), np.array(cols[2]), name=path.stem), cols[5])
    workload = with_think_times(workload, arrival + np.array(cols[4], dtype=float))
    return Replayed(
        "bench",
        str(path),
        workload,
        np.full(n, NO_TEAM, dtype=object),
        actual_ttft_s=np.array(cols[3], dtype=float),
        actual_e2e_s=np.array(cols[4], dtype=float),
        skipped=skipped,
    )


def with_sessions(workload: Workload, keys: tuple | list | None = None) -> Workload:
    """The workload with its session ids (one per distinct key; None: a request of its own) and, where the source
    gave no prefix ids, each turn's prompt blocks as prefix ids (the conversation so far shared with earlier turns)."""
    if keys is not None and any(k is not None for k in keys):
        ids: dict[Any, int] = {}
        workload.session_ids = np.array(
            [ids.setdefault(k if k is not None else ("lone", i), len(ids)) for i, k in enumerate(keys)], dtype=np.int64
        )
    if workload.session_ids is not None and workload.prefix_ids is None:
        workload.prefix_ids = conversation_prefix_ids(
            workload.session_ids, workload.input_tokens, block_tokens=workload.prefix_block_tokens
        )
    return workload


def with_think_times(workload: Workload, answered_s: np.ndarray) -> Workload:
    """The sessions closed loop: each later turn's think time = its recorded arrival less the recorded answer time of
    its session's turn before (≥ 0). Unchanged (turns at their recorded times) where one of those answers is unknown."""
    if workload.session_ids is None:
        return workload
    nxt = workload.next_turns()
    before = np.flatnonzero(nxt >= 0)
    if not len(before) or not np.all(np.isfinite(answered_s[before])):
        return workload
    think = np.zeros(len(workload))
    think[nxt[before]] = np.maximum(workload.arrival_s[nxt[before]] - answered_s[before], 0.0)
    return replace(workload, think_s=think)


def read_trace_source(source: str) -> Replayed:
    """A trace as SOURCE: bad lines are skipped and named (file:line: reason), the first LISTED_BAD_LINES one by
    one; sessions and prefix ids kept (sim.workload.read_trace) and completed by with_sessions."""
    bad: list[str] = []
    try:
        wl = read_trace(source, skipped=bad)
    except TraceError as exc:
        raise SourceError(f"{exc} (or give a gateway ledger: SQLite file or postgresql:// URL)") from exc
    skipped = {line: 1 for line in bad[:LISTED_BAD_LINES]}
    if len(bad) > LISTED_BAD_LINES:
        skipped[f"more bad trace lines (the first {LISTED_BAD_LINES} are listed)"] = len(bad) - LISTED_BAD_LINES
    return Replayed("trace", source, with_sessions(wl), np.full(len(wl), NO_TEAM, dtype=object), skipped=skipped)


def _is_bench_jsonl(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as fh:
        first = next((line for line in fh if line.strip()), "")
    try:
        rec = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(rec, dict) and ("intended_s" in rec or "sent_s" in rec)


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(16) == b"SQLite format 3\x00"


def time_scaled(rep: Replayed, scale: float) -> Replayed:
    """The replay with every time multiplied by `scale` (arrivals, actual TTFT and e2e): a run recorded against
    engines sped up K times (`twin --speedup K`, bench `--time-scale 1/K`) replays in real time with scale K."""
    if not (scale > 0 and math.isfinite(scale)):
        raise SourceError(f"--time-scale must be positive, got {scale}")
    if scale == 1:
        return rep
    w = rep.workload
    workload = replace(w, arrival_s=w.arrival_s * scale, think_s=None if w.think_s is None else w.think_s * scale)

    def times(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else x * scale

    return replace(rep, workload=workload, actual_ttft_s=times(rep.actual_ttft_s), actual_e2e_s=times(rep.actual_e2e_s))


def read_source(source: str) -> Replayed:
    """Whatever SOURCE is: a PostgreSQL URL or SQLite ledger, a bench requests JSONL, or a trace."""
    if source.startswith(("postgresql://", "postgres://")):
        return read_ledger(source)
    path = Path(source)
    if path.is_file() and _is_sqlite(path):
        return read_ledger(source)
    if path.is_file() and path.suffix == ".jsonl" and _is_bench_jsonl(path):
        return read_bench_jsonl(path)
    return read_trace_source(source)
