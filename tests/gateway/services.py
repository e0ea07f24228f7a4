"""Real PostgreSQL and Redis on 127.0.0.1 for the gateway's durability and shared-state tests (skipped when absent),
and gateway processes started with the CLI (benchmarks/gateway_chaos.py uses the PostgreSQL schema too)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.gateway.conftest import api_tier
from tokenomy.gateway.keys import KeyStore
from tokenomy.gateway.ledger import Database

POSTGRES_URL = os.environ.get("TOKENOMY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOKENOMY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextlib.contextmanager
def postgres_schema(prefix: str = "tokenomy_gw_") -> Iterator[str]:
    """A fresh schema in the test PostgreSQL database, as a URL whose connections carry the schema's name as their
    application_name (to find them); afterwards its connections are ended and it is dropped. Raises psycopg's
    OperationalError when PostgreSQL does not answer."""
    import psycopg

    conn = psycopg.connect(POSTGRES_URL, connect_timeout=3, autocommit=True)
    schema = prefix + secrets.token_hex(4)
    conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (schema,))
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the test PostgreSQL database (postgres_schema); skips when none is reachable."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'tokenomy[postgres]'")
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_schema())
        except psycopg.OperationalError as exc:
            pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {str(exc).splitlines()[0]}")
        yield url


def terminate_connections(url: str) -> int:
    """Drop every PostgreSQL connection of this test's schema, as a database restart would; how many."""
    import psycopg

    app_name = url.rsplit("application_name=", 1)[1]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app_name,)
        ).fetchall()
    return len(rows)


@pytest.fixture
def redis_ns() -> Iterator[tuple[str, str]]:
    """(Redis URL, a fresh key namespace); the namespace's keys are deleted afterwards."""
    redis = pytest.importorskip("redis", reason="redis-py not installed: pip install 'tokenomy[gateway-scale]'")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    ns = "tktest" + secrets.token_hex(4)
    try:
        yield REDIS_URL, ns
    finally:
        for key in client.scan_iter(match=f"{ns}:*", count=1000):
            client.delete(key)
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(config: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`tokenomy gateway --config … --port …` in a process of its own, once /healthz answers."""
    cmd = [sys.executable, "-m", "tokenomy.cli.main", "gateway", "--config", str(config), "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 120  # two workers on two busy cores each import the whole package
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "gateway exited"
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"the gateway did not come up in 120 s:\n{err.decode()[-3000:]}")


def write_gateway_config(tmp_path: Path, api_url: str, batch_rows: int = 50) -> Path:
    """gateway.yaml for `tokenomy gateway`: one API tier at `api_url`, state in tmp_path/state, a ledger flushed
    every `batch_rows` rows or 50 ms."""
    config = tmp_path / "gateway.yaml"
    tiers = [api_tier("api", api_url, ["simple", "complex"], 1.0, 2.0)]
    ledger = {"batch_rows": batch_rows, "flush_interval_s": 0.05}
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "ledger": ledger, "tiers": tiers}))
    return config


def offline_key(state: Path, team: str = "team-a") -> str:
    """A virtual key made in a gateway's state directory before the gateway starts."""
    db = Database("sqlite", state)
    _, key = KeyStore(db, state).create(team)
    db.close()
    return key


T = TypeVar("T")


async def signal_during(load: Coroutine[Any, Any, T], pid: int, sig: int, after_s: float = 2.0) -> T:
    """Run `load`, send `sig` to process `pid` `after_s` seconds into it; what the load returns."""
    task = asyncio.create_task(load)
    await asyncio.sleep(after_s)
    os.kill(pid, sig)
    return await task
