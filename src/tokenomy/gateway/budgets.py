"""Budgets in $ and tokens, per key and per team, per day and per month (UTC).

At admission a request reserves its worst case (its prompt plus max_tokens at the priciest tier
it may reach); the check is spent + reserved + this reservation ≤ limit, done without awaiting,
so concurrent requests cannot together pass a limit. When the request ends the reservation is
replaced by the actual cost. Spend survives restarts: it is re-read from the ledger at start.

`Budgets` keeps limits and usage in this process (one gateway process). Several processes share them through
Redis instead (`shared.RedisBudgets`, same methods); the app calls `areserve`, which either one serves.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PERIODS = ("day", "month")
ADJECTIVE = {"day": "daily", "month": "monthly"}
SCOPES = ("key", "team")


_PERIODS_SEEN: dict[str, tuple[float, float]] = {}  # period → (start, end) of the last one asked about


def period_start_s(period: str, now_s: float) -> float:
    """Unix time at which the current UTC day or month began (remembered while `now_s` stays in the same period:
    every request asks)."""
    seen = _PERIODS_SEEN.get(period)
    if seen is not None and seen[0] <= now_s < seen[1]:
        return seen[0]
    t = time.gmtime(now_s)
    if period == "day":
        start = float(calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)))
        end = start + 86400.0
    else:
        start = float(calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)))
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        end = float(calendar.timegm((year, month, 1, 0, 0, 0)))
    _PERIODS_SEEN[period] = (start, end)
    return start


def period_end_s(period: str, now_s: float) -> float:
    """Unix time at which the current UTC day or month ends."""
    period_start_s(period, now_s)
    return _PERIODS_SEEN[period][1]


@dataclass(frozen=True)
class Limit:
    scope: str  # key or team
    owner: str  # key id or team name
    period: str  # day or month
    usd: float | None = None
    tokens: int | None = None


@dataclass
class Usage:
    """Spend of one owner in one period: settled, plus reserved by requests in flight."""

    period_start_s: float
    spent_usd: float = 0.0
    spent_tokens: int = 0
    reserved_usd: float = 0.0
    reserved_tokens: int = 0


@dataclass
class Reservation:
    usd: float
    tokens: int
    usages: list[Usage] = field(default_factory=list)
    settled: bool = False
    on_settle: Callable[[], None] | None = None  # run once, after settling (the ledger journal's close line)
    shared_id: str = ""  # its id in Redis (shared.RedisBudgets)
    shared_keys: tuple[str, ...] = ()  # the Redis usage hashes it counts in


async def reserve_or_release(budgets: Any, key_id: str, team: str, usd: float, tokens: int) -> Reservation:
    """`budgets.areserve(...)`, safe against the caller being cancelled while it waits: a store that answers after
    the caller is gone (Redis, `suspends`) may have made the reservation, so it is settled at $0 as soon as it
    arrives, never left open. Budgets kept in this process reserve without suspending: awaited directly."""
    if not getattr(budgets, "suspends", False):
        return await budgets.areserve(key_id, team, usd, tokens)
    pending = asyncio.ensure_future(budgets.areserve(key_id, team, usd, tokens))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        pending.add_done_callback(lambda done: _release_late(budgets, done))
        raise


def _release_late(budgets: Any, done: asyncio.Future) -> None:
    """Settle at $0 a reservation whose requester was cancelled while it was being made."""
    if not done.cancelled() and done.exception() is None:
        budgets.settle(done.result(), 0.0, 0)


class BudgetsUnavailable(Exception):
    """The shared budget store (Redis) cannot be reached: requests are refused (503), never let through unchecked."""


class OverBudget(Exception):
    """A request that would take an owner past a limit; `body` is the HTTP 429 error."""

    def __init__(self, limit: Limit, usage: Usage, usd: float, tokens: int, now_s: float):
        resets = period_end_s(limit.period, now_s)
        self.retry_after_s = max(int(resets - now_s), 1)
        what = f"{limit.scope} '{limit.owner}'"
        if limit.usd is not None and usage.spent_usd + usage.reserved_usd + usd > limit.usd:
            detail = (
                f"${usage.spent_usd:.4f} spent and ${usage.reserved_usd:.4f} reserved by requests in flight; "
                f"this request may cost up to ${usd:.4f}"
            )
            message = f"{what} is over its {ADJECTIVE[limit.period]} budget of ${limit.usd:.2f}: {detail}"
        else:
            detail = (
                f"{usage.spent_tokens:,} tokens used and {usage.reserved_tokens:,} reserved; "
                f"this request may use up to {tokens:,}"
            )
            message = f"{what} is over its {ADJECTIVE[limit.period]} budget of {limit.tokens:,} tokens: {detail}"
        self.body = {
            "error": {
                "message": message + f". It resets at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(resets))}.",
                "type": "budget_exceeded",
                "code": "budget_exceeded",
                "scope": limit.scope,
                "owner": limit.owner,
                "period": limit.period,
                "limit_usd": limit.usd,
                "limit_tokens": limit.tokens,
                "spent_usd": round(usage.spent_usd, 6),
                "spent_tokens": usage.spent_tokens,
                "reserved_usd": round(usage.reserved_usd, 6),
                "request_usd": round(usd, 6),
                "request_tokens": tokens,
                "resets_at_s": resets,
            }
        }
        super().__init__(message)


class LimitBook:
    """The limits of every key and team by (scope, owner, period), and the admin report's row for one owner: what
    `Budgets` and `shared.RedisBudgets` share."""

    limits: dict[tuple[str, str, str], Limit]

    def set_limit(self, limit: Limit) -> None:
        if limit.scope not in SCOPES or limit.period not in PERIODS:
            raise ValueError(f"scope must be one of {SCOPES} and period one of {PERIODS}")
        self.limits[(limit.scope, limit.owner, limit.period)] = limit

    def remove_limit(self, scope: str, owner: str, period: str) -> bool:
        return self.limits.pop((scope, owner, period), None) is not None

    def replace_limits(self, limits: Iterable[Limit]) -> None:
        """Swap in every limit at once (as reloaded from the database after a change)."""
        self.limits = {(lim.scope, lim.owner, lim.period): lim for lim in limits}

    def report_row(self, scope: str, owner: str, period: str, usage: Usage) -> dict[str, Any]:
        """One owner's usage in one period and its limits (a row of the admin API's report)."""
        lim = self.limits.get((scope, owner, period))
        return {
            "scope": scope,
            "owner": owner,
            "period": period,
            "period_start_s": usage.period_start_s,
            "spent_usd": usage.spent_usd,
            "spent_tokens": usage.spent_tokens,
            "reserved_usd": usage.reserved_usd,
            "reserved_tokens": usage.reserved_tokens,
            "limit_usd": lim.usd if lim else None,
            "limit_tokens": lim.tokens if lim else None,
        }


class Budgets(LimitBook):
    """Limits and usage of every key and team."""

    suspends = False  # `areserve` completes without waiting (no store to ask): nothing to release if cancelled

    def __init__(self, limits: Iterable[Limit] = (), clock=time.time):  # noqa: ANN001
        self.clock = clock
        self.replace_limits(limits)
        self.usage: dict[tuple[str, str, str], Usage] = {}

    async def areserve(self, key_id: str, team: str, usd: float, tokens: int) -> Reservation:
        """`reserve`, as the app calls it (the shared store's version awaits Redis)."""
        return self.reserve(key_id, team, usd, tokens)

    async def areport(self) -> list[dict[str, Any]]:
        return self.report()

    def load_spend(self, period: str, rows: list[tuple[str, str, float, int]]) -> None:
        """Seed a period's spend from the ledger: (key_id, team, usd, tokens) rows."""
        start = period_start_s(period, self.clock())
        for key_id, team, usd, tokens in rows:
            for scope, owner in (("key", key_id), ("team", team)):
                u = self._usage(scope, owner, period, start)
                u.spent_usd += usd
                u.spent_tokens += tokens

    def _usage(self, scope: str, owner: str, period: str, start_s: float) -> Usage:
        u = self.usage.get((scope, owner, period))
        if u is None or u.period_start_s != start_s:  # a new day or month starts from zero
            u = self.usage[(scope, owner, period)] = Usage(start_s)
        return u

    def reserve(self, key_id: str, team: str, usd: float, tokens: int) -> Reservation:
        """Reserve a request's worst case against every limit of its key and team, or raise OverBudget."""
        now = self.clock()
        pairs = []
        for period in PERIODS:
            start = period_start_s(period, now)
            for scope, owner in (("key", key_id), ("team", team)):
                u = self._usage(scope, owner, period, start)
                limit = self.limits.get((scope, owner, period))
                if limit is not None:
                    over_usd = limit.usd is not None and u.spent_usd + u.reserved_usd + usd > limit.usd
                    over_tokens = (
                        limit.tokens is not None and u.spent_tokens + u.reserved_tokens + tokens > limit.tokens
                    )
                    if over_usd or over_tokens:
                        raise OverBudget(limit, u, usd, tokens, now)
                pairs.append(u)
        for u in pairs:
            u.reserved_usd += usd
            u.reserved_tokens += tokens
        return Reservation(usd, tokens, pairs)

    def settle(self, reservation: Reservation, usd: float, tokens: int) -> None:
        """Replace a reservation by what the request actually cost (once)."""
        if reservation.settled:
            return
        reservation.settled = True
        for u in reservation.usages:
            u.reserved_usd -= reservation.usd
            u.reserved_tokens -= reservation.tokens
            u.spent_usd += usd
            u.spent_tokens += tokens
        if reservation.on_settle is not None:
            reservation.on_settle()

    def report(self) -> list[dict[str, Any]]:
        """Usage and limits of every owner seen this period (for the admin API)."""
        now = self.clock()
        out = []
        keys = set(self.usage) | set(self.limits)
        for scope, owner, period in sorted(keys):
            usage = self._usage(scope, owner, period, period_start_s(period, now))
            out.append(self.report_row(scope, owner, period, usage))
        return out
