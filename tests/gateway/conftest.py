"""Gateway fixtures: twins and a gateway served by uvicorn on background threads, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tokenomy.gateway.app import Gateway, build_app
from tokenomy.gateway.config import parse_config
from tokenomy.gateway.serve import server_options
from tokenomy.twin.server import running_twin

ADMIN_KEY = "test-admin-key-0123456789"
SPEEDUP = 20.0  # twins run 20× faster than the hardware they stand for


class GatewayThread:
    """A gateway app served by uvicorn on a thread; stop() is a graceful shutdown."""

    def __init__(self, config: dict[str, Any], state_dir: Path):
        self.config = parse_config({"state_dir": str(state_dir), "admin_key_env": "TOKENOMY_TEST_ADMIN_KEY", **config})
        self.app = build_app(self.config)
        self.gateway: Gateway = self.app.state.gateway
        options = {**server_options(self.config), "log_level": "warning", "timeout_graceful_shutdown": None}
        uv = uvicorn.Config(self.app, host="127.0.0.1", port=0, lifespan="on", **options)  # served as in production
        self.server = uvicorn.Server(uv)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def new_key(self, team: str = "team-a") -> tuple[str, str]:
        """(key id, key) of a fresh virtual key."""
        r = httpx.post(f"{self.url}/admin/keys", json={"team": team}, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 201, r.text
        return r.json()["key_id"], r.json()["key"]

    def set_budget(self, **limit: Any) -> None:
        """Set a limit through the admin API (PUT /admin/budgets), e.g. scope="team", owner="team-a", usd=0.25."""
        r = httpx.put(f"{self.url}/admin/budgets", json=limit, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 200, r.text


def self_hosted(name: str, url: str, model: str, classes: list[str], **extra: Any) -> dict[str, Any]:
    """A self-hosted tier entry for a twin of `model` on one H100."""
    deployment = {"model": model, "gpu": "H100-SXM", "count": 1, **extra.pop("deployment", {})}
    return {"name": name, "url": f"{url}/v1", "model": name, "classes": classes, "deployment": deployment, **extra}


def api_tier(name: str, url: str, classes: list[str], usd_in: float, usd_out: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": f"{url}/v1",
        "model": name,
        "classes": classes,
        "usd_per_mtok_input": usd_in,
        "usd_per_mtok_output": usd_out,
        **extra,
    }


@pytest.fixture
def twins() -> Iterator[Callable[..., str]]:
    """twins(name, model=..., **options) -> base URL of a twin serving `name`."""
    with contextlib.ExitStack() as stack:

        def start(name: str, model: str = "llama-3.1-8b", **options: Any) -> str:
            options.setdefault("speedup", SPEEDUP)
            return stack.enter_context(running_twin(model, served_model_name=name, **options))

        yield start


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., GatewayThread]]:
    """gateway(config_dict) -> a started GatewayThread (stopped at the end of the test)."""
    monkeypatch.setenv("TOKENOMY_TEST_ADMIN_KEY", ADMIN_KEY)
    started: list[GatewayThread] = []

    def start(config: dict[str, Any], state_dir: Path | None = None) -> GatewayThread:
        g = GatewayThread(config, state_dir or tmp_path / "state")
        g.start()
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@contextlib.contextmanager
def twin_process(name: str, model: str = "llama-3.1-8b", speedup: float = SPEEDUP, *extra: str) -> Iterator[str]:
    """A twin in a process of its own (so it runs on another core than the test); yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "tokenomy.cli.main", "twin", "--model", model, "--served-model-name", name]
    cmd += ["--port", str(port), "--speedup", str(speedup), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "the twin exited"
            assert time.monotonic() < deadline, "the twin did not come up"
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def asgi_post(
    app: Any, path: str, raw: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, str], bytes]:
    """One POST of `raw` straight into an ASGI app, in this event loop, without HTTP between (the call uvicorn would
    make): (status, response headers, response body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    received = False
    status = 0
    response_headers: dict[str, str] = {}
    parts: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.get_running_loop().create_future()  # the client stays until the app is done
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, response_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        else:
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, response_headers, b"".join(parts)


async def asgi_request(app: Any, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    """One JSON POST straight into an ASGI app (asgi_post): (status, response body)."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    status, _, response = await asgi_post(app, path, json.dumps(body).encode(), raw_headers)
    return status, response


def chat(text: str = "What is the capital of France?", model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, **extra}


def sse_events(body: str) -> list[str]:
    """The data payloads of an SSE body."""
    return [line[6:] for line in body.split("\n") if line.startswith("data: ")]
