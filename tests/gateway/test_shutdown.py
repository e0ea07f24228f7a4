"""A gateway process killed with SIGKILL under load restarts cleanly, missing at most its in-flight batch;
SIGTERM (graceful) loses nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from tests.gateway.conftest import chat
from tests.gateway.services import free_port, offline_key, signal_during, start_gateway, write_gateway_config
from tokenomy.gateway.ledger import Database

BATCH_ROWS = 50


async def load(url: str, key: str, seconds: float) -> int:
    """Requests from 16 clients for a while; returns how many completed (200) before the end."""
    completed = 0
    stop_at = time.monotonic() + seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal completed
        while time.monotonic() < stop_at:
            try:
                r = await client.post("/v1/chat/completions", json=chat(max_tokens=2))
                completed += r.status_code == 200
            except httpx.HTTPError:
                return

    h = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=10) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(16)))
    return completed


def test_sigkill_under_load_then_restart(twins, tmp_path: Path) -> None:
    api = twins("api", speedup=200.0)
    config = write_gateway_config(tmp_path, api, BATCH_ROWS)
    state = tmp_path / "state"
    key = offline_key(state)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    proc = start_gateway(config, port)
    completed = asyncio.run(signal_during(load(url, key, 30.0), proc.pid, signal.SIGKILL))
    proc.wait(timeout=10)
    assert completed > 50
    db = Database("sqlite", state)  # opens cleanly after the kill (WAL recovery)
    rows = db.count_attempts()
    db.close()
    assert completed - (BATCH_ROWS + 16) <= rows <= completed + 16  # at most the batch in flight is missing

    proc = start_gateway(config, port)  # and the gateway starts again on the same state
    again = asyncio.run(load(url, key, 1.0))
    proc.send_signal(signal.SIGTERM)  # graceful: every row is written
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutting down
    db = Database("sqlite", state)
    # the restart replayed the killed process's journal (issue 14): every completed request has its row now,
    # plus at most one 'reconciled' row per request in flight at the kill
    assert completed + again <= db.count_attempts() <= rows + again + BATCH_ROWS + 16 + 16
    assert db.execute("PRAGMA integrity_check")[0][0] == "ok"
