"""The ledger: complete rows in SQLite and PostgreSQL, batched off the request path, nothing lost on close."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from tests.gateway import services
from tests.gateway.conftest import api_tier, asgi_request, chat, twin_process
from tokenomy.gateway.app import build_app
from tokenomy.gateway.config import parse_config
from tokenomy.gateway.ledger import Attempt, Database, LedgerWriter

pg_url = services.pg_url  # fixture


def attempt(i: int) -> Attempt:
    return Attempt(
        request_id=f"req_{i:06d}",
        attempt=0,
        ts_s=1_700_000_000.0 + i,
        key_id="key_abc",
        team="team-a",
        model="auto",
        request_class="simple",
        p_complex=0.12,
        tier="small",
        upstream_model="llama-3.1-8b",
        stream=True,
        tokens_in=100 + i,
        tokens_out=20,
        cost_usd=1.25e-5,
        ttft_s=0.05,
        e2e_s=0.5,
        status="ok",
        http_status=200,
        reason="",
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_writer_batches_rows_and_close_writes_every_one(backend: str, tmp_path: Path, request) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else "sqlite"
    db = Database(url, tmp_path)
    writer = LedgerWriter(db, flush_interval_s=0.05, batch_rows=100)
    rows = [attempt(i) for i in range(1234)]
    t0 = time.perf_counter()
    for r in rows:
        writer.record(r)
    assert time.perf_counter() - t0 < 2.0  # recording is a queue put, not I/O (1,234 puts: ms, even at load 5)
    writer.close()
    assert writer.written == 1234 and db.count_attempts() == 1234
    back = db.attempts()
    assert back[0] == {**asdict(rows[0]), "stream": 1}  # every field round-trips (booleans as 0/1)
    assert [r["request_id"] for r in back] == [r.request_id for r in rows]
    spend = db.spend_since(0.0)
    assert spend[0][0:2] == ("key_abc", "team-a") and spend[0][2] == pytest.approx(1234 * 1.25e-5)
    db.close()


def test_rows_through_a_postgres_ledger(pg_url: str, twins, gateway) -> None:
    api = twins("api")
    g = gateway({"tiers": [api_tier("api", api, ["simple", "complex"], 1.0, 2.0)], "ledger": {"url": pg_url}})
    _, key = g.new_key("team-pg")
    h = {"authorization": f"Bearer {key}"}
    for stream in (False, True):
        assert httpx.post(f"{g.url}/v1/chat/completions", json=chat(stream=stream), headers=h).status_code == 200
    g.stop()
    rows = Database(pg_url, g.config.state_dir).attempts()
    assert [(r["team"], r["tier"], r["status"], r["tokens_out"]) for r in rows] == [("team-pg", "api", "ok", 16)] * 2
    assert all(r["cost_usd"] == pytest.approx((r["tokens_in"] * 1.0 + 16 * 2.0) / 1e6) for r in rows)


def test_row_count_equals_completed_attempts_after_10000_requests(tmp_path: Path) -> None:
    """10,000 requests (half streamed) into the gateway app, driven in-process with 64 in flight, through real
    HTTP to a twin in its own process; every completed attempt has its row once the gateway has stopped."""
    n, concurrency = 10_000, 64
    with twin_process("api", speedup=1000.0) as api:
        config = parse_config(
            {
                "state_dir": str(tmp_path / "state"),
                "tiers": [api_tier("api", api, ["simple", "complex"], 1.0, 2.0)],
                "ledger": {"batch_rows": 1000},
            }
        )
        app = build_app(config)
        gw = app.state.gateway
        _, key = gw.keys.create("team-a")
        headers = {"authorization": f"Bearer {key}"}

        async def run() -> list[tuple[int, bytes]]:
            await gw.start()
            semaphore = asyncio.Semaphore(concurrency)

            async def one(i: int) -> tuple[int, bytes]:
                async with semaphore:
                    return await asgi_request(
                        app, "/v1/chat/completions", chat(max_tokens=1, stream=i % 2 == 0), headers
                    )

            try:
                return await asyncio.gather(*(one(i) for i in range(n)))
            finally:
                await gw.stop()  # graceful: the ledger writes every queued row

        answers = asyncio.run(run())
    assert [status for status, _ in answers].count(200) == n
    assert all(body.endswith(b"data: [DONE]\n\n") for _, body in answers[::2])  # complete streams
    assert all(json.loads(body)["usage"]["completion_tokens"] == 1 for _, body in answers[1::2])
    db = Database(config.ledger.url, config.state_dir)
    assert db.count_attempts() == n
    rows = db.execute("SELECT COUNT(DISTINCT request_id), SUM(stream), MIN(status), MAX(status) FROM attempts")[0]
    assert rows == (n, n // 2, "ok", "ok")


@pytest.mark.parametrize("stream", [False, True])
def test_ledger_records_cached_and_reasoning_tokens_and_bills_cache_reads(gateway, stream: bool) -> None:
    """An upstream reporting cached prompt tokens and reasoning tokens: both in the row, the cached ones billed at
    the catalogue's cached-input rate."""
    from tests.gateway.upstream_stub import StubState, running_stub
    from tokenomy.catalog.prices import api_prices

    offer = next(p for p in api_prices() if p.name == "OpenAI/gpt-4.1-mini")
    details = {"prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 3}}
    with running_stub(StubState(usage_details=details)) as (url, _):
        tier = {"name": "api", "url": f"{url}/v1", "model": "m", "classes": ["simple", "complex"], "price": offer.name}
        g = gateway({"tiers": [tier]})
        _, key = g.new_key("team-a")
        r = httpx.post(
            f"{g.url}/v1/chat/completions",
            json=chat(max_tokens=5, stream=stream),
            headers={"authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        g.stop()
    db = Database(g.config.ledger.url, g.config.state_dir)
    rows = db.execute("SELECT tokens_in, tokens_out, cached_tokens_in, reasoning_tokens_out, cost_usd FROM attempts")
    assert len(rows) == 1
    tokens_in, tokens_out, cached, reasoning, cost = rows[0]
    assert (cached, reasoning) == (8, 3) and tokens_in > 8
    expected = (
        (tokens_in - 8) * offer.usd_per_mtok_input
        + 8 * offer.usd_per_mtok_cached_input
        + tokens_out * offer.usd_per_mtok_output
    ) / 1e6
    assert cost == pytest.approx(expected, rel=1e-12)
