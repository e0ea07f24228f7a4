"""Budgets: reserve at admission, settle on usage, 429 with a clear body; no overspend under concurrency."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.gateway.conftest import api_tier, chat
from tokenomy.gateway.budgets import (
    Budgets,
    Limit,
    OverBudget,
    Reservation,
    period_end_s,
    period_start_s,
    reserve_or_release,
)
from tokenomy.gateway.ledger import Database

DAY = 86400.0


def test_reservations_count_until_settled_and_periods_reset() -> None:
    now = [1_700_000_000.0]
    b = Budgets([Limit("team", "t", "day", usd=1.0)], clock=lambda: now[0])
    r1 = b.reserve("k1", "t", 0.6, 100)
    with pytest.raises(OverBudget) as exc:
        b.reserve("k2", "t", 0.6, 100)  # 0.6 reserved + 0.6 > 1.0 although nothing is spent yet
    body = exc.value.body["error"]
    assert body["type"] == "budget_exceeded" and body["scope"] == "team" and body["owner"] == "t"
    assert body["limit_usd"] == 1.0 and body["reserved_usd"] == 0.6 and "daily budget of $1.00" in body["message"]
    b.settle(r1, 0.1, 50)  # the request cost less than reserved
    b.settle(r1, 0.1, 50)  # settling twice changes nothing
    r2 = b.reserve("k2", "t", 0.6, 100)
    b.settle(r2, 0.6, 100)
    with pytest.raises(OverBudget):
        b.reserve("k3", "t", 0.35, 1)
    now[0] += DAY  # a new UTC day
    b.reserve("k3", "t", 0.9, 1)


def test_token_budgets_per_key_and_month() -> None:
    b = Budgets([Limit("key", "k", "month", tokens=1000)])
    b.settle(b.reserve("k", "t", 0.0, 600), 0.0, 600)
    with pytest.raises(OverBudget) as exc:
        b.reserve("k", "t", 0.0, 500)
    assert "monthly budget of 1,000 tokens" in exc.value.body["error"]["message"]
    b.reserve("other", "t", 0.0, 500)  # another key of the same team has no limit


def test_period_boundaries_are_utc() -> None:
    t = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert period_start_s("day", t) == 1_699_920_000.0
    assert period_end_s("day", t) - period_start_s("day", t) == DAY
    assert period_start_s("month", t) == 1_698_796_800.0  # 2023-11-01
    assert period_end_s("month", t) == 1_701_388_800.0  # 2023-12-01


def test_two_hundred_concurrent_clients_cannot_overspend(twins, gateway) -> None:
    api = twins("api")
    g = gateway({"tiers": [api_tier("api", api, ["simple", "complex"], 30.0, 150.0)]})
    limit_usd = 0.25
    g.set_budget(scope="team", owner="team-a", usd=limit_usd)
    _, key = g.new_key("team-a")
    body = chat("Summarise the plot of Hamlet in one line.", max_tokens=32)

    async def worker(client: httpx.AsyncClient, statuses: list[int], refusals: list[dict]) -> None:
        while True:  # each client sends until the budget refuses it
            resp = await client.post("/v1/chat/completions", json=body)
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                refusals.append(resp.json())
                return

    async def run() -> tuple[list[int], list[dict]]:
        statuses: list[int] = []
        refusals: list[dict] = []
        limits = httpx.Limits(max_connections=200)
        headers = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=g.url, headers=headers, limits=limits, timeout=30) as client:
            await asyncio.gather(*(worker(client, statuses, refusals) for _ in range(200)))
        return statuses, refusals

    statuses, refusals = asyncio.run(run())
    assert statuses.count(429) == 200 and statuses.count(200) >= 20
    one_reservation = refusals[0]["error"]["request_usd"]
    assert "team 'team-a' is over its daily budget of $0.25" in refusals[0]["error"]["message"]
    g.stop()
    rows = Database(g.config.ledger.url, g.config.state_dir).attempts()
    spent = sum(r["cost_usd"] for r in rows)
    assert len(rows) == statuses.count(200)
    assert 0.5 * limit_usd < spent <= limit_usd + one_reservation
    team = next(u for u in g.gateway.budgets.report() if u["scope"] == "team" and u["period"] == "day")
    assert team["spent_usd"] == pytest.approx(spent) and team["reserved_usd"] == pytest.approx(0.0, abs=1e-12)


class SlowStore(Budgets):
    """In-process budgets standing for a shared store (Redis): a reservation asked for is made on the store's side
    when `answer()` runs, whether or not anyone still waits for the reply."""

    suspends = True

    def __init__(self, limits: list[Limit]):
        super().__init__(limits)
        self.asked = asyncio.Event()
        self.pending: list[tuple[asyncio.Future, tuple]] = []

    async def areserve(self, key_id: str, team: str, usd: float, tokens: int) -> Reservation:
        reply = asyncio.get_running_loop().create_future()
        self.pending.append((reply, (key_id, team, usd, tokens)))
        self.asked.set()
        return await reply

    def answer(self) -> None:
        for reply, args in self.pending:
            reservation = self.reserve(*args)  # made in the store
            if not reply.cancelled():  # a reply nobody waits for is lost
                reply.set_result(reservation)


def test_a_reservation_arriving_after_its_requester_left_is_released() -> None:
    """A request cancelled (client gone) while a shared store makes its reservation leaves nothing reserved."""

    async def main() -> list[dict]:
        store = SlowStore([Limit("team", "t", "day", usd=1.0)])
        waiting = asyncio.create_task(reserve_or_release(store, "k", "t", 0.6, 100))
        await store.asked.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        store.answer()  # the store made the reservation after all
        for _ in range(5):
            await asyncio.sleep(0)
        return store.report()

    team_day = next(r for r in asyncio.run(main()) if r["scope"] == "team" and r["period"] == "day")
    assert team_day["reserved_usd"] == 0.0 and team_day["reserved_tokens"] == 0
    assert team_day["spent_usd"] == 0.0
