"""Several gateway processes on one Redis and one PostgreSQL: budgets reserved atomically across them, a crashed
one's reservations billed by the others, keys and limits changed anywhere seen everywhere within a poll."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.gateway import services
from tests.gateway.conftest import ADMIN_KEY, api_tier, chat
from tests.gateway.services import free_port, start_gateway
from tokenomy.gateway.budgets import Limit, OverBudget
from tokenomy.gateway.keys import KeyStore
from tokenomy.gateway.ledger import Database

pg_url = services.pg_url  # fixtures
redis_ns = services.redis_ns
SECRET = "s" * 40


def budgets(redis_ns: tuple[str, str], instance: str):  # noqa: ANN201
    from tokenomy.gateway.shared import RedisBudgets

    url, ns = redis_ns
    return RedisBudgets(url, ns, instance)


def test_two_processes_reserving_at_once_cannot_pass_a_limit(redis_ns) -> None:
    a, b = budgets(redis_ns, "a"), budgets(redis_ns, "b")
    for store in (a, b):
        store.replace_limits([Limit("team", "t", "day", usd=1.0)])
    granted: list[object] = []

    def hammer(store) -> None:  # noqa: ANN001
        for _ in range(20):
            try:
                granted.append(store.reserve("k", "t", 0.1, 10))
            except OverBudget:
                pass

    threads = [threading.Thread(target=hammer, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 10  # 10 × $0.10 = the $1.00 limit, whichever process asked
    for r in granted[:5]:
        a.settle(r, 0.05, 5)  # five cost half their reservation…
    a.reserve("k", "t", 0.25, 1)  # …which frees $0.25
    with pytest.raises(OverBudget) as exc:
        b.reserve("k", "t", 0.01, 1)
    assert exc.value.body["error"]["owner"] == "t" and exc.value.body["error"]["limit_usd"] == 1.0
    report = {(u["scope"], u["owner"], u["period"]): u for u in b.report()}
    assert report[("team", "t", "day")]["spent_usd"] == pytest.approx(0.25)


def test_the_reservations_of_a_process_that_died_are_billed_in_full(redis_ns) -> None:
    dead, alive = budgets(redis_ns, "dead"), budgets(redis_ns, "alive")
    for store in (dead, alive):
        store.replace_limits([Limit("team", "t", "day", usd=1.0)])
        store.heartbeat()
    dead.reserve("k", "t", 0.3, 100)
    dead.sync.delete(f"{redis_ns[1]}:alive:dead")  # its heartbeat lapses (SIGKILL: nothing else happens)
    assert alive.reap() == 1 and alive.reap() == 0
    usage = {(u["scope"], u["owner"], u["period"]): u for u in alive.report()}[("team", "t", "day")]
    assert usage["spent_usd"] == pytest.approx(0.3) and usage["reserved_usd"] == 0


def shared_config(api: str, pg_url: str, redis_ns: tuple[str, str], **extra: object) -> dict:
    return {
        "tiers": [api_tier("api", api, ["simple", "complex"], 30.0, 150.0)],
        "ledger": {"url": pg_url, "flush_interval_s": 0.05},
        "shared": {"redis_url": redis_ns[0], "namespace": redis_ns[1], "poll_s": 0.1},
        **extra,
    }


def test_two_replicas_share_one_team_budget(pg_url, redis_ns, twins, gateway, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TOKENOMY_KEY_SECRET", SECRET)  # one key secret for every replica
    api = twins("api")
    a = gateway(shared_config(api, pg_url, redis_ns), tmp_path / "a")
    b = gateway(shared_config(api, pg_url, redis_ns), tmp_path / "b")
    limit_usd = 0.25
    a.set_budget(scope="team", owner="team-a", usd=limit_usd)
    _, key = a.new_key("team-a")
    body = chat("Summarise the plot of Hamlet in one line.", max_tokens=32)

    odd: list[str] = []

    async def worker(client: httpx.AsyncClient, statuses: list[int]) -> None:
        while True:
            resp = await client.post("/v1/chat/completions", json=body)
            statuses.append(resp.status_code)
            if resp.status_code not in (200, 429):
                odd.append(resp.text[:300])
            if resp.status_code != 200:
                return

    async def run() -> list[int]:
        statuses: list[int] = []
        h = {"authorization": f"Bearer {key}"}
        limits = httpx.Limits(max_connections=100)
        async with (
            httpx.AsyncClient(base_url=a.url, headers=h, limits=limits, timeout=30) as ca,
            httpx.AsyncClient(base_url=b.url, headers=h, limits=limits, timeout=30) as cb,
        ):
            await asyncio.gather(*(worker(ca if i % 2 else cb, statuses) for i in range(200)))
        return statuses

    statuses = asyncio.run(run())
    assert statuses.count(200) > 10 and set(statuses) == {200, 429}, odd
    a.stop()
    b.stop()
    rows = Database(pg_url, tmp_path).attempts()
    spent = sum(r["cost_usd"] for r in rows)
    assert len([r for r in rows if r["status"] == "ok"]) == statuses.count(200)
    one_reservation = max(30.0 * r["tokens_in"] + 150.0 * 32 for r in rows) / 1e6
    assert spent <= limit_usd + 2 * one_reservation  # the goal; with exact reservations it is ≤ the limit
    assert spent <= limit_usd + 1e-9


def test_a_revocation_and_a_limit_change_reach_every_replica(pg_url, redis_ns, twins, gateway, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENOMY_KEY_SECRET", SECRET)
    api = twins("api")
    a = gateway(shared_config(api, pg_url, redis_ns), tmp_path / "a")
    b = gateway(shared_config(api, pg_url, redis_ns), tmp_path / "b")
    key_id, key = a.new_key("team-r")
    h = {"authorization": f"Bearer {key}"}
    assert httpx.post(f"{b.url}/v1/chat/completions", json=chat(), headers=h).status_code == 200  # made on A
    a.set_budget(scope="team", owner="team-r", tokens=5)
    deadline = time.monotonic() + 10  # generous: the poll is 0.1 s; the benchmark measures the latency
    while b.gateway.budgets.limits.get(("team", "team-r", "day")) is None:
        assert time.monotonic() < deadline, "the limit set on A never reached B"
        time.sleep(0.01)
    assert httpx.post(f"{b.url}/v1/chat/completions", json=chat(), headers=h).status_code == 429
    store = KeyStore(Database(pg_url, tmp_path / "cli"), tmp_path / "cli")  # what `tokenomy gateway keys revoke` does
    assert store.revoke(key_id)
    deadline = time.monotonic() + 10  # each replica polls on its own: wait for both, not one then the other
    for replica, name in ((b, "B"), (a, "A")):
        while httpx.post(f"{replica.url}/v1/chat/completions", json=chat(), headers=h).status_code != 401:
            assert time.monotonic() < deadline, f"the revoked key still works on {name}"
            time.sleep(0.05)


def test_workers_share_state_and_the_cli_revokes_in_a_running_gateway(pg_url, redis_ns, twins, tmp_path) -> None:
    api = twins("api")
    config = tmp_path / "gateway.yaml"
    cfg = shared_config(api, pg_url, redis_ns, state_dir=str(tmp_path / "state"))
    config.write_text(yaml.safe_dump(cfg))
    env = {"TOKENOMY_KEY_SECRET": SECRET}
    cli = [sys.executable, "-m", "tokenomy.cli.main", "gateway", "keys"]
    made = subprocess.run(
        [*cli, "create", "--config", str(config), "--team", "w"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert made.returncode == 0, made.stderr
    fields = dict(line.split(":", 1) for line in made.stdout.splitlines())
    key_id, key = fields["key_id"].strip(), fields["key"].strip()
    port = free_port()
    proc = start_gateway(config, port, "--workers", "2", env=env)
    try:
        h = {"authorization": f"Bearer {key}"}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        assert all(httpx.post(url, json=chat(), headers=h).status_code == 200 for _ in range(6))
        revoked = subprocess.run(
            [*cli, "revoke", "--config", str(config), key_id],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 10
        while httpx.post(url, json=chat(), headers=h).status_code != 401:
            assert time.monotonic() < deadline, "the revoked key still works in the running gateway"
        assert all(httpx.post(url, json=chat(), headers=h).status_code == 401 for _ in range(6))  # on both workers
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    rows = Database(pg_url, tmp_path).attempts()
    assert len([r for r in rows if r["status"] == "ok"]) >= 6


def test_workers_without_redis_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"tiers": [api_tier("api", "http://127.0.0.1:9", ["simple", "complex"], 1, 2)]}))
    cmd = [sys.executable, "-m", "tokenomy.cli.main", "gateway", "--config", str(config), "--workers", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "shared.redis_url" in out.stderr and "Traceback" not in out.stderr


def test_an_unreachable_redis_or_postgres_is_a_clear_error_at_start(tmp_path: Path) -> None:
    tiers = [api_tier("api", "http://127.0.0.1:9", ["simple", "complex"], 1, 2)]
    for extra, words in (
        ({"shared": {"redis_url": "redis://127.0.0.1:1/0"}}, "Redis does not answer"),
        ({"ledger": {"url": "postgresql://postgres@127.0.0.1:1/test"}}, "cannot connect to PostgreSQL"),
    ):
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "s"), "tiers": tiers, **extra}))
        cmd = [sys.executable, "-m", "tokenomy.cli.main", "gateway", "--config", str(config), "--port", "0"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr[-500:]


def test_ledger_health_is_in_the_metrics(gateway, tmp_path: Path) -> None:
    g = gateway({"tiers": [api_tier("api", "http://127.0.0.1:9", ["simple", "complex"], 1, 2)]})
    text = httpx.get(f"{g.url}/metrics").text
    for name in (
        "tokenomy_gateway_ledger_dead_letter_rows_total",
        "tokenomy_gateway_ledger_rows_written_total",
        "tokenomy_gateway_ledger_database_up 1.0",
        "tokenomy_gateway_open_requests 0.0",
    ):
        assert name in text


def test_changes_are_pushed_to_the_other_replicas_and_a_lost_subscription_comes_back(
    pg_url, redis_ns, twins, gateway, tmp_path, monkeypatch
) -> None:
    """A key revoked on A is announced on Redis and B hears of it (the benchmark measures how fast); when Redis drops
    B's subscription, B subscribes again and keeps hearing of changes (polling covers the gap meanwhile)."""
    import redis

    monkeypatch.setenv("TOKENOMY_KEY_SECRET", SECRET)
    api = twins("api")
    a = gateway(shared_config(api, pg_url, redis_ns), tmp_path / "a")
    b = gateway(shared_config(api, pg_url, redis_ns), tmp_path / "b")
    watcher = b.gateway.state.watcher
    assert watcher is not None and watcher.subscribed.wait(10), "B never subscribed to changes"

    def revoked_on_b(key: str) -> None:
        h = {"authorization": f"Bearer {key}"}
        deadline = time.monotonic() + 10
        while httpx.post(f"{b.url}/v1/chat/completions", json=chat(), headers=h).status_code != 401:
            assert time.monotonic() < deadline, "the revoked key still works on B"
            time.sleep(0.02)

    key_id, key = a.new_key("team-p")
    heard = watcher.messages
    r = httpx.delete(f"{a.url}/admin/keys/{key_id}", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200, r.text
    revoked_on_b(key)
    deadline = time.monotonic() + 10
    while watcher.messages <= heard:
        assert time.monotonic() < deadline, "B got no change message for the revocation"
        time.sleep(0.01)

    client = redis.Redis.from_url(redis_ns[0])
    try:
        name = b.gateway.budgets.listener_name
        [conn] = [c for c in client.client_list(_type="pubsub") if c.get("name") == name]
        errors = watcher.errors
        client.client_kill_filter(_id=conn["id"])
        deadline = time.monotonic() + 15
        while watcher.errors == errors:  # B notices
            assert time.monotonic() < deadline, "B did not notice it lost its subscription"
            time.sleep(0.02)
        while not watcher.subscribed.is_set():  # and subscribes again
            assert time.monotonic() < deadline, "B did not subscribe again after losing its subscription"
            time.sleep(0.02)
        # SUBSCRIBE is sent without waiting for Redis to confirm it: wait until the server lists the new subscriber
        while len([c for c in client.client_list(_type="pubsub") if c.get("name") == name]) != 1:
            assert time.monotonic() < deadline, "Redis does not list exactly one subscription of B's after it came back"
            time.sleep(0.02)
    finally:
        client.close()
    key_id, key = a.new_key("team-p")
    heard = watcher.messages
    store = KeyStore(Database(pg_url, tmp_path / "cli"), tmp_path / "cli")  # as `tokenomy gateway keys revoke` does
    from tokenomy.gateway.shared import publish_change

    store.on_change = lambda: publish_change(*redis_ns)  # what the CLI adds when shared.redis_url is set
    assert store.revoke(key_id)
    revoked_on_b(key)
    deadline = time.monotonic() + 10
    while watcher.messages <= heard:
        assert time.monotonic() < deadline, "B got no change message after subscribing again"
        time.sleep(0.01)
