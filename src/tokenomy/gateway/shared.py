"""Budgets shared by several gateway processes through Redis: atomic reservation and settlement in Lua.

Each (scope, owner, period, period start) has a Redis hash with its spend and what requests in flight
reserved, in nano-dollars and tokens (integers, so sums are exact): `nu`/`st` spent, `ru`/`rt` reserved.
`reserve` is one script that checks the four hashes of a request (key and team, day and month) against
their limits and, only if all pass, adds the reservation to each and notes it in this process's hash of
open reservations — so no two processes can together pass a limit by more than what one request may
still settle above its reservation. `settle` is one script that removes the open reservation and moves
the actual cost to spend.

A process keeps a heartbeat key alive; when it is gone (crash, SIGKILL), any other process (or its own
restart) bills its open reservations at their full amount (the conservative bill) and drops them.
Spend is seeded from the ledger (the database of record) when Redis holds none for the namespace (a new
Redis, or one that lost its data: settlements in the second before the seed may then count twice).
Limits are not kept in Redis: every process reloads them (and the keys) from the database when its
version counter changes (state.py), so they need no second source of truth. A process that changes keys or
limits publishes on the namespace's `changed` channel (`publish_change`); every process subscribes to it
(state.Watcher) and reloads at once, so a revocation reaches the other replicas in milliseconds; polling the
version counter stays as the fallback for a message lost while a subscription was down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import Any

from tokenomy.gateway.budgets import (
    PERIODS,
    BudgetsUnavailable,
    Limit,
    LimitBook,
    OverBudget,
    Reservation,
    Usage,
    period_end_s,
    period_start_s,
)

log = logging.getLogger("tokenomy.gateway")

NANO = 1_000_000_000  # nano-dollars per dollar: Redis integers hold spend exactly
HEARTBEAT_TTL_MS = 3000  # a process not heard of for this long is gone

RESERVE = """
local nu = tonumber(ARGV[1]) local tok = tonumber(ARGV[2])
for i = 1, 4 do
  local lu = ARGV[3 + 2 * i] local lt = ARGV[4 + 2 * i]
  if lu ~= '' or lt ~= '' then
    local h = redis.call('HMGET', KEYS[i], 'nu', 'st', 'ru', 'rt')
    local su = tonumber(h[1]) or 0 local st = tonumber(h[2]) or 0
    local ru = tonumber(h[3]) or 0 local rt = tonumber(h[4]) or 0
    if (lu ~= '' and su + ru + nu > tonumber(lu)) or (lt ~= '' and st + rt + tok > tonumber(lt)) then
      return {i, h[1] or '0', h[2] or '0', h[3] or '0', h[4] or '0'}
    end
  end
end
for i = 1, 4 do
  redis.call('HINCRBY', KEYS[i], 'ru', ARGV[1])
  redis.call('HINCRBY', KEYS[i], 'rt', ARGV[2])
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
redis.call('HSET', KEYS[5], ARGV[3],
  ARGV[1] .. '\\n' .. ARGV[2] .. '\\n' .. KEYS[1] .. '\\n' .. KEYS[2] .. '\\n' .. KEYS[3] .. '\\n' .. KEYS[4])
return {0}
"""

SETTLE = """
if redis.call('HDEL', KEYS[5], ARGV[1]) == 0 then return 0 end
for i = 1, 4 do
  redis.call('HINCRBY', KEYS[i], 'ru', ARGV[2])
  redis.call('HINCRBY', KEYS[i], 'rt', ARGV[3])
  redis.call('HINCRBY', KEYS[i], 'nu', ARGV[4])
  redis.call('HINCRBY', KEYS[i], 'st', ARGV[5])
end
return 1
"""

REAP = """
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all, 2 do
  local parts = {}
  for p in string.gmatch(all[j + 1], '[^\\n]+') do parts[#parts + 1] = p end
  for i = 3, 6 do
    redis.call('HINCRBY', parts[i], 'ru', '-' .. parts[1])
    redis.call('HINCRBY', parts[i], 'rt', '-' .. parts[2])
    redis.call('HINCRBY', parts[i], 'nu', parts[1])
    redis.call('HINCRBY', parts[i], 'st', parts[2])
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return #all / 2
"""


def change_channel(namespace: str) -> str:
    """The Redis pub/sub channel on which a namespace's processes announce a change of keys or limits."""
    return f"{namespace}:changed"


def publish_change(url: str, namespace: str) -> bool:
    """Announce a change of keys or limits to the gateways of a namespace (for a process without RedisBudgets, such
    as `tokenomy gateway keys revoke`); whether Redis took the message (if not, their polling finds the change)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            client.publish(change_channel(namespace), "1")
        finally:
            client.close()
        return True
    except (redis.RedisError, OSError) as exc:
        log.warning("shared state: could not announce the change through Redis (replicas poll for it): %s", exc)
        return False


def nano(usd: float) -> int:
    """Dollars as whole nano-dollars, rounded up (a reservation never rounds down)."""
    return math.ceil(usd * NANO - 1e-6)


class RedisBudgets(LimitBook):
    """Budgets in Redis, shared by every gateway process with the same Redis and namespace; limits (reloaded from
    the database by state.py) through LimitBook."""

    suspends = True  # `areserve` waits for Redis: a caller cancelled meanwhile releases it (budgets.reserve_or_release)

    def __init__(self, url: str, namespace: str, instance: str, clock=time.time):  # noqa: ANN001
        try:
            import redis
            import redis.asyncio
        except ImportError as exc:
            raise RuntimeError("shared budgets need redis-py: pip install 'tokenomy[gateway-scale]'") from exc
        self.clock = clock
        self.ns = namespace
        self.instance = instance
        self.limits: dict[tuple[str, str, str], Limit] = {}
        opts = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "health_check_interval": 10}
        self.sync = redis.Redis.from_url(url, **opts)
        # requests in flight share a bounded pool and wait (up to 2 s) for a connection instead of failing
        pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=64, timeout=2.0, **opts)
        self.aio = redis.asyncio.Redis(connection_pool=pool)
        self.errors = (redis.RedisError, OSError)
        self.reserve_sync = self.sync.register_script(RESERVE)
        self.settle_sync = self.sync.register_script(SETTLE)
        self.reap_sync = self.sync.register_script(REAP)
        self.reserve_aio = self.aio.register_script(RESERVE)
        self.settle_aio = self.aio.register_script(SETTLE)
        self.url = url
        self.channel = change_channel(namespace)
        self.listener_name = f"tokenomy-changes:{instance}"
        self.open_key = f"{namespace}:open:{instance}"
        self.instances_key = f"{namespace}:instances"
        self.pending: set[asyncio.Task] = set()  # settlements on their way to Redis
        self.unsettled: list[tuple[Reservation, int, int]] = []  # settlements Redis refused, tried again later
        try:
            self.sync.ping()  # fail at start, with the URL in the message, rather than on the first request
        except self.errors as exc:
            raise RuntimeError(f"shared.redis_url {url}: Redis does not answer: {exc}") from None

    # ---- reserve and settle -----------------------------------------------------------------------

    def usage_key(self, scope: str, owner: str, period: str, start_s: float) -> str:
        return f"{self.ns}:u:{scope}:{owner}:{period}:{int(start_s)}"

    def _script_args(self, key_id: str, team: str, usd: float, tokens: int, rid: str) -> tuple[list, list, list]:
        """KEYS and ARGV of the reserve script, and the (scope, owner, period) of each usage hash."""
        now = self.clock()
        keys, argv, owners = [], [nano(usd), int(tokens), rid, 0], []
        ttl = 0
        for period in PERIODS:
            start = period_start_s(period, now)
            ttl = max(ttl, int(period_end_s(period, now) - now) + 86400)
            for scope, owner in (("key", key_id), ("team", team)):
                keys.append(self.usage_key(scope, owner, period, start))
                owners.append((scope, owner, period, start))
                lim = self.limits.get((scope, owner, period))
                argv += [
                    "" if lim is None or lim.usd is None else str(nano(lim.usd)),
                    "" if lim is None or lim.tokens is None else str(int(lim.tokens)),
                ]
        argv[3] = ttl
        return keys + [self.open_key], argv, owners

    def _reservation(self, result: list, usd: float, tokens: int, rid: str, keys: list, owners: list) -> Reservation:
        """The reservation, or OverBudget naming the first limit it would pass."""
        index = int(result[0])
        if index:
            scope, owner, period, start = owners[index - 1]
            su, st, ru, rt = (float(x) for x in result[1:5])
            usage = Usage(start, su / NANO, int(st), ru / NANO, int(rt))
            raise OverBudget(self.limits[(scope, owner, period)], usage, usd, tokens, self.clock())
        return Reservation(usd, tokens, shared_id=rid, shared_keys=tuple(keys))  # 4 usage hashes, the open one

    async def areserve(self, key_id: str, team: str, usd: float, tokens: int) -> Reservation:
        """Reserve a request's worst case against every limit of its key and team, atomically across processes."""
        rid = f"{self.instance}:{time.perf_counter_ns()}"
        keys, argv, owners = self._script_args(key_id, team, usd, tokens, rid)
        try:
            result = await self.reserve_aio(keys=keys, args=argv)
        except self.errors as exc:
            raise BudgetsUnavailable(f"the shared budget store (Redis) is unavailable: {exc}") from None
        return self._reservation(result, usd, tokens, rid, keys, owners)

    def reserve(self, key_id: str, team: str, usd: float, tokens: int) -> Reservation:
        """`areserve` without an event loop (a blocking Redis call: tests and tools, never the event loop)."""
        rid = f"{self.instance}:{time.perf_counter_ns()}"
        keys, argv, owners = self._script_args(key_id, team, usd, tokens, rid)
        try:
            result = self.reserve_sync(keys=keys, args=argv)
        except self.errors as exc:
            raise BudgetsUnavailable(f"the shared budget store (Redis) is unavailable: {exc}") from None
        return self._reservation(result, usd, tokens, rid, keys, owners)

    def _settle_args(self, reservation: Reservation, usd: float, tokens: int) -> tuple[list, list]:
        keys = list(reservation.shared_keys)
        argv = [reservation.shared_id, -nano(reservation.usd), -int(reservation.tokens), nano(usd), int(tokens)]
        return keys, argv

    def settle(self, reservation: Reservation, usd: float, tokens: int) -> None:
        """Replace a reservation by what the request cost (once); sent to Redis without blocking the caller."""
        if reservation.settled:
            return
        reservation.settled = True
        if reservation.on_settle is not None:
            reservation.on_settle()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._settle_now(reservation, usd, tokens)
            return
        task = loop.create_task(self._asettle(reservation, usd, tokens))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _asettle(self, reservation: Reservation, usd: float, tokens: int) -> None:
        keys, argv = self._settle_args(reservation, usd, tokens)
        try:
            await self.settle_aio(keys=keys, args=argv)
        except self.errors as exc:
            log.error("shared budgets: settlement not sent to Redis, will retry: %s", exc)
            self.unsettled.append((reservation, usd, tokens))

    def _settle_now(self, reservation: Reservation, usd: float, tokens: int) -> bool:
        keys, argv = self._settle_args(reservation, usd, tokens)
        try:
            self.settle_sync(keys=keys, args=argv)
            return True
        except self.errors as exc:
            log.error("shared budgets: settlement not sent to Redis, will retry: %s", exc)
            return False

    def retry_unsettled(self) -> None:
        """Send the settlements Redis refused earlier (from the watcher thread)."""
        waiting, self.unsettled = self.unsettled, []
        for reservation, usd, tokens in waiting:
            if not self._settle_now(reservation, usd, tokens):
                self.unsettled.append((reservation, usd, tokens))

    # ---- change announcements ----------------------------------------------------------------------

    def publish_change(self) -> None:
        """Tell every process of the namespace that keys or limits changed in the database (blocking; a failure is
        logged: the others' polling finds the change)."""
        try:
            self.sync.publish(self.channel, "1")
        except self.errors as exc:
            log.warning("shared state: could not announce a change through Redis (replicas poll for it): %s", exc)

    def subscribe(self) -> Any:
        """A pub/sub connection subscribed to the change channel (blocking; raises a Redis error if it cannot), on a
        connection of its own named `tokenomy-changes:<instance>` (CLIENT LIST shows whose it is); it pings Redis
        when idle, so a dead connection is noticed within seconds."""
        import redis

        client = redis.Redis.from_url(
            self.url, socket_connect_timeout=2.0, health_check_interval=5, client_name=self.listener_name
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
        except BaseException:
            pubsub.close()
            raise
        return pubsub

    # ---- liveness, crash recovery, seeding (blocking: the watcher thread calls these) ---------------

    def heartbeat(self) -> None:
        """Say this process is alive (its open reservations are not to be reaped)."""
        pipe = self.sync.pipeline()
        pipe.set(f"{self.ns}:alive:{self.instance}", 1, px=HEARTBEAT_TTL_MS)
        pipe.sadd(self.instances_key, self.instance)
        pipe.execute()

    def reap(self) -> int:
        """Bill the open reservations of processes that stopped beating at their full amount; how many."""
        reaped = 0
        for raw in self.sync.smembers(self.instances_key):
            instance = raw.decode()
            if instance == self.instance or self.sync.exists(f"{self.ns}:alive:{instance}"):
                continue
            n = int(self.reap_sync(keys=[f"{self.ns}:open:{instance}", self.instances_key], args=[instance]))
            if n:
                log.warning("shared budgets: %d reservations of stopped gateway %s billed in full", n, instance)
            reaped += n
        return reaped

    def seed(self, spend_since: Any) -> bool:
        """When Redis holds no spend of this namespace (a new Redis, or one that lost its data), load the current
        day's and month's spend from the ledger; the first process to ask does it. `spend_since(ts_s)` gives
        (key_id, team, usd, tokens) rows. A new period needs no seeding: its hashes fill as requests settle."""
        if not self.sync.set(f"{self.ns}:epoch", self.instance, nx=True):
            return False
        now = self.clock()
        for period in PERIODS:
            start = period_start_s(period, now)
            ttl = int(period_end_s(period, now) - now) + 86400
            by_owner: dict[tuple[str, str], list[float]] = {}
            for key_id, team, usd, tokens in spend_since(start):
                for scope, owner in (("key", key_id), ("team", team)):
                    acc = by_owner.setdefault((scope, owner), [0.0, 0])
                    acc[0] += usd
                    acc[1] += tokens
            pipe = self.sync.pipeline()
            for (scope, owner), (usd, tokens) in by_owner.items():
                key = self.usage_key(scope, owner, period, start)
                pipe.hincrby(key, "nu", round(usd * NANO))
                pipe.hincrby(key, "st", int(tokens))
                pipe.expire(key, ttl)
            pipe.execute()
        return True

    def report(self) -> list[dict[str, Any]]:
        """Usage and limits of every owner this period (blocking; for the admin API through a thread)."""
        now = self.clock()
        wanted: set[tuple[str, str, str]] = set(self.limits)
        for period in PERIODS:
            start = int(period_start_s(period, now))
            for raw in self.sync.scan_iter(match=f"{self.ns}:u:*:{period}:{start}", count=500):
                _, _, scope, rest = raw.decode().split(":", 3)
                owner = rest.rsplit(":", 2)[0]
                wanted.add((scope, owner, period))
        out = []
        for scope, owner, period in sorted(wanted):
            start = period_start_s(period, now)
            h = {k.decode(): int(v) for k, v in self.sync.hgetall(self.usage_key(scope, owner, period, start)).items()}
            usage = Usage(start, h.get("nu", 0) / NANO, h.get("st", 0), h.get("ru", 0) / NANO, h.get("rt", 0))
            out.append(self.report_row(scope, owner, period, usage))
        return out

    async def areport(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.report)

    def load_spend(self, period: str, rows: Iterable) -> None:
        """Spend lives in Redis (seeded once from the ledger): nothing to load per process."""

    async def drain(self) -> None:
        """At shutdown: wait for settlements on their way, then retry those Redis refused."""
        if self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)
        if self.unsettled:
            await asyncio.to_thread(self.retry_unsettled)

    def close(self) -> None:
        """This process stops: it no longer beats (its reservations are all settled by now)."""
        try:
            self.sync.delete(f"{self.ns}:alive:{self.instance}")
            if not self.sync.hlen(self.open_key):
                self.sync.srem(self.instances_key, self.instance)
        except self.errors as exc:
            log.warning("shared budgets: could not sign off from Redis: %s", exc)
        self.sync.close()
