"""The gateway's state and its upkeep: database, journal, ledger writer, keys, budgets, and a watcher thread.

`open_state` builds them (blocking: it runs before the server starts): it replays the journals of gateway
processes that stopped without closing them (ledger.recover), so the spend it then loads includes what
they left open, and picks in-process budgets or Redis-shared ones (`shared.redis_url`).

The `Watcher` thread does the periodic database and Redis work so that the event loop never does: every
`shared.poll_s` it reads the database's version counter and, when keys or limits changed (an admin call,
`tokenomy gateway keys revoke` in another process, another replica), reloads them; with Redis it also keeps
this process's heartbeat, bills the open reservations of processes that died, re-sends settlements Redis
refused and re-seeds spend if Redis lost it. With Redis, changes are also pushed: a process that changes keys
or limits publishes on the namespace's channel (shared.publish_change) and a listener thread in every process
reloads as the message arrives (milliseconds, not a poll); if its subscription drops it reconnects, reloads
once (what changed meanwhile), and the polling above bounds the delay until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tokenomy.gateway.budgets import PERIODS, Budgets, Limit, period_start_s
from tokenomy.gateway.config import GatewayConfig
from tokenomy.gateway.keys import ApiKey, KeyStore
from tokenomy.gateway.ledger import Admission, Database, Journal, LedgerWriter, Recovered, instance_id, recover

log = logging.getLogger("tokenomy.gateway")

HEARTBEAT_S = 0.5  # shared mode: beat (TTL shared.HEARTBEAT_TTL_MS), reap stopped processes, retry settlements
LISTEN_WAKE_S = 0.5  # the change listener's longest wait for a message (it checks for shutdown in between)
RESUBSCRIBE_S = 1.0  # after a lost change subscription, the wait before subscribing again


def load_limits(db: Database) -> list[Limit]:
    """Every limit stored in the database."""
    rows = db.execute("SELECT scope, owner, period, usd, tokens FROM budgets")
    return [Limit(s, o, p, None if u is None else float(u), None if t is None else int(t)) for s, o, p, u, t in rows]


def store_limit(db: Database, limit: Limit) -> None:
    """Insert or replace a limit and tell every gateway on this database (blocking)."""
    db.execute(
        "INSERT INTO budgets (scope, owner, period, usd, tokens) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (scope, owner, period) DO UPDATE SET usd = excluded.usd, tokens = excluded.tokens",
        (limit.scope, limit.owner, limit.period, limit.usd, limit.tokens),
    )
    db.bump_version()


@dataclass
class GatewayState:
    """What a gateway process keeps between requests, and the thread that keeps it fresh."""

    config: GatewayConfig
    db: Database
    keys: KeyStore
    budgets: Any  # Budgets, or shared.RedisBudgets
    ledger: LedgerWriter
    journal: Journal | None
    recovered: Recovered
    watcher: Watcher | None = None
    version: int = -1  # the database's keys-and-limits version last loaded
    check: Any = None  # the version check in flight (authenticate_fresh)
    checked_s: float = 0.0
    refresh_lock: Any = field(default_factory=threading.Lock)

    @property
    def shared(self) -> bool:
        return self.config.shared.redis_url is not None

    def start(self) -> None:
        self.watcher = Watcher(self)
        self.watcher.start()

    def admitted(self, call: Any) -> None:
        """Journal a request's write-ahead row (its reservation, app.Call); the close line follows when the
        reservation is settled, after the request's last ledger row."""
        ledger, reservation, route = self.ledger, call.reservation, call.route
        prompt = getattr(call, "prompt_bound", 0) or call.prompt_tokens
        output = getattr(call, "output_bound", 0) or call.max_tokens
        priciest = max(route.candidates, key=lambda t: t.prices.usd(prompt, output))
        ledger.admit(
            Admission(
                request_id=call.request_id,
                ts_s=call.started_s,
                key_id=call.key.key_id,
                team=call.key.team,
                model=route.model,
                request_class=route.request_class,
                tier=priciest.name,
                upstream_model=priciest.config.model,
                stream=call.stream,
                tokens_in=prompt,
                tokens_out=output,
                usd=reservation.usd,
            )
        )
        request_id = call.request_id
        reservation.on_settle = lambda: ledger.close_request(request_id)

    async def authenticate_fresh(self, token: str) -> ApiKey | None:
        """A key not known in memory (made by another process a moment ago?): check the database's version in a
        thread — at most every 50 ms, concurrent misses share one check — reload if it changed, look again."""
        now = time.monotonic()
        check = self.check
        if check is None or (check.done() and now - self.checked_s >= 0.05):
            self.checked_s = now
            check = self.check = asyncio.ensure_future(asyncio.to_thread(self.refresh))
        try:
            await asyncio.shield(check)
        except Exception as exc:  # noqa: BLE001 - the database is down: the keys in memory stand
            log.error("gateway state: could not check for new keys: %s", exc)
        return self.keys.verify(token)

    def refresh(self) -> bool:
        """Reload keys and limits if the database's version changed since the last look (blocking); whether it did."""
        with self.refresh_lock:
            version = self.db.version()
            if version == self.version:
                return False
            self.keys.load()
            self.budgets.replace_limits(load_limits(self.db))
            self.version = version
            return True

    def store_limit(self, limit: Limit) -> None:
        """Set a limit here and in the database, and tell the other processes (blocking: call from a thread)."""
        self.budgets.set_limit(limit)
        store_limit(self.db, limit)
        if self.shared:
            self.budgets.publish_change()

    async def stop(self) -> None:
        """Graceful shutdown: settlements sent, ledger rows written, journal closed, watcher stopped."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.shared:
            await self.budgets.drain()
            await asyncio.to_thread(self.budgets.close)
        await asyncio.to_thread(self.ledger.close)
        self.db.close()


def open_state(config: GatewayConfig) -> GatewayState:
    """Database, journal (after replaying crashed processes' journals), keys, limits, spend and the ledger writer."""
    db = Database(config.ledger.url, config.state_dir)
    lc = config.ledger
    journal = Journal(config.state_dir / "journal", fsync=lc.journal_fsync) if lc.journal else None
    recovered = Recovered()
    if journal is not None:
        conn = db.connect()
        try:
            recovered = recover(db, conn, journal.directory, frozenset({journal.instance}))
        finally:
            conn.close()
    version = db.version()  # read first: a change made while loading is picked up by the next poll
    keys = KeyStore(db, config.state_dir, config.key_secret_env)
    for b in config.budgets:
        scope, owner = ("team", b.team) if b.team is not None else ("key", b.key)
        limit = Limit(scope, owner or "", b.period, b.usd, b.tokens)
        if limit not in load_limits(db):
            store_limit(db, limit)
    if config.shared.redis_url:
        from tokenomy.gateway.shared import RedisBudgets

        instance = journal.instance if journal is not None else instance_id()
        budgets: Any = RedisBudgets(config.shared.redis_url, config.shared.namespace, instance)
        budgets.replace_limits(load_limits(db))
        budgets.seed(db.spend_since)
        budgets.heartbeat()
        keys.on_change = budgets.publish_change  # a key made or revoked here: the other processes reload at once
    else:
        budgets = Budgets()
        budgets.replace_limits(load_limits(db))
        for period in PERIODS:
            budgets.load_spend(period, db.spend_since(period_start_s(period, time.time())))
    ledger = LedgerWriter(
        db,
        lc.flush_interval_s,
        lc.batch_rows,
        journal=journal,
        dead_letter=lc.dead_letter or config.state_dir / "ledger-dead-letter.jsonl",
        max_pending_rows=lc.max_pending_rows,
    )
    return GatewayState(config, db, keys, budgets, ledger, journal, recovered, version=version)


class Watcher(threading.Thread):
    """Polls the database's version counter and reloads keys and limits when it changed; with Redis, a second
    thread beats, reaps, re-sends settlements and re-seeds, so a slow database never stops the heartbeat."""

    def __init__(self, state: GatewayState):
        super().__init__(name="tokenomy-state", daemon=True)
        self.state = state
        self.stopping = threading.Event()
        self.reloads = 0
        self.pushed_reloads = 0  # reloads a change message started (the rest: polling)
        self.messages = 0  # change messages received
        self.reload_errors = 0  # reloads a change message started that the database refused (polling retries)
        self.errors = 0
        self.subscribed = threading.Event()  # set while the change subscription is up
        self.beat = threading.Thread(target=self._beat, name="tokenomy-heartbeat", daemon=True)
        self.listener = threading.Thread(target=self._listen, name="tokenomy-changes", daemon=True)

    def start(self) -> None:
        super().start()
        if self.state.shared:
            self.beat.start()
            self.listener.start()

    def run(self) -> None:
        while not self.stopping.wait(self.state.config.shared.poll_s):
            try:
                if self.state.refresh():
                    self.reloads += 1
            except Exception as exc:  # noqa: BLE001 - keep watching through database outages
                self.errors += 1
                log.error("gateway state: reloading keys and limits: %s", exc)

    def _beat(self) -> None:
        state = self.state
        while not self.stopping.wait(HEARTBEAT_S):
            try:
                budgets = state.budgets
                budgets.heartbeat()
                budgets.reap()
                budgets.retry_unsettled()
                budgets.seed(state.db.spend_since)
            except Exception as exc:  # noqa: BLE001 - keep beating through Redis outages
                self.errors += 1
                log.error("gateway state: shared budgets upkeep: %s", exc)

    def _listen(self) -> None:
        """Reload as soon as another process announces a change; on a dropped subscription, resubscribe (after
        RESUBSCRIBE_S) and reload once, since a message may have been missed."""
        state = self.state
        while not self.stopping.is_set():
            pubsub = None
            try:
                pubsub = state.budgets.subscribe()
                self.subscribed.set()
                self._reload(pushed=False)  # whatever changed while not subscribed
                while not self.stopping.is_set():
                    if pubsub.get_message(timeout=LISTEN_WAKE_S) is not None:
                        self.messages += 1
                        self._reload(pushed=True)
            except Exception as exc:  # noqa: BLE001 - Redis or the database down: polling covers, retry
                was_up = self.subscribed.is_set()
                self.subscribed.clear()  # before the error count: whoever sees the count sees the state
                self.errors += 1
                if was_up:
                    log.warning("gateway state: change subscription lost (polling meanwhile): %s", exc)
                self.stopping.wait(RESUBSCRIBE_S)
            finally:
                self.subscribed.clear()
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    def _reload(self, pushed: bool) -> None:
        """Reload keys and limits if the database says they changed; a database error is left to the polling loop,
        which logs it and tries again (the subscription stays up)."""
        try:
            if self.state.refresh():
                self.reloads += 1
                self.pushed_reloads += pushed
        except Exception:  # noqa: BLE001
            self.reload_errors += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        if self.beat.is_alive():
            self.beat.join(timeout=5)
        if self.listener.is_alive():
            self.listener.join(timeout=5)


class LedgerCollector(Collector):
    """The ledger's health for /metrics: rows written, refused (dead-letter), waiting, and crash reconciliation."""

    def __init__(self, state: GatewayState):
        self.state = state

    def collect(self) -> Iterator[Any]:
        ledger, state = self.state.ledger, self.state
        written = CounterMetricFamily("tokenomy_gateway_ledger_rows_written", "Ledger rows committed.")
        written.add_metric([], ledger.written)
        dead = CounterMetricFamily(
            "tokenomy_gateway_ledger_dead_letter_rows",
            "Ledger rows the database refused, kept in the dead-letter file (state_dir/ledger-dead-letter.jsonl).",
        )
        dead.add_metric([], ledger.dead_lettered)
        failed = CounterMetricFamily("tokenomy_gateway_ledger_failed_batches", "Batches the database refused.")
        failed.add_metric([], ledger.failed_batches)
        down = GaugeMetricFamily("tokenomy_gateway_ledger_database_up", "1 while the ledger database answers.")
        down.add_metric([], 1.0 if ledger.db_up else 0.0)
        recon = CounterMetricFamily(
            "tokenomy_gateway_ledger_reconciled_requests",
            "Requests left open by a stopped gateway, billed by a 'reconciled' row (at start and since).",
        )
        recon.add_metric([], state.recovered.reconciled + ledger.recovered.reconciled)
        open_requests = GaugeMetricFamily("tokenomy_gateway_open_requests", "Requests admitted and not yet ended.")
        open_requests.add_metric([], state.journal.open_requests() if state.journal else 0)
        yield from (written, dead, failed, down, recon, open_requests)
