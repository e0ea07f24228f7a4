"""A gateway process killed with SIGKILL under load restarts cleanly, missing at most its in-flight batch;
SIGTERM (graceful) loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.gateway.conftest import api_tier, chat
from tokenomy.gateway.keys import KeyStore
from tokenomy.gateway.ledger import Database

BATCH_ROWS = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(config: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tokenomy.cli.main", "gateway", "--config", str(config), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "gateway exited"
    raise AssertionError("the gateway did not come up")


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
    config = tmp_path / "gateway.yaml"
    state = tmp_path / "state"
    tiers = [api_tier("api", api, ["simple", "complex"], 1.0, 2.0)]
    config.write_text(
        yaml.safe_dump(
            {"state_dir": str(state), "ledger": {"batch_rows": BATCH_ROWS, "flush_interval_s": 0.05}, "tiers": tiers}
        )
    )
    db = Database("sqlite", state)
    _, key = KeyStore(db, state).create("team-a")
    db.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    proc = start_gateway(config, port)

    async def kill_during_load() -> int:
        task = asyncio.create_task(load(url, key, 30.0))
        await asyncio.sleep(2.0)
        os.kill(proc.pid, signal.SIGKILL)
        return await task

    completed = asyncio.run(kill_during_load())
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
    assert db.count_attempts() == rows + again
    assert db.execute("PRAGMA integrity_check")[0][0] == "ok"
