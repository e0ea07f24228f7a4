"""What a bad day or an attacker does to the gateway's guarantees, measured on real processes on 127.0.0.1.

A tiny vLLM-like upstream stub (Starlette: it generates max_completion_tokens, else max_tokens, else 4,000 tokens
per sequence, × n, × prompts, and streams on any truthy `stream`) and gateways (`tokenomy gateway`) run as their
own processes; the clients are httpx. Phases (each bounded in time):

1. bypass: for each request shape the issue lists (max_tokens null; max_tokens 1 with max_completion_tokens
   2000; n 10 without max_tokens; /v1/completions with 20 prompts; a 3,000-character CJK prompt; 40 KB of
   tools; `"stream": 1`) a team gets a budget of 10 of that shape's reservations (the `request_usd` of a
   429 the gateway gives it first), then 200 concurrent clients send the shape until refused. Overspend =
   (spend the gateway recorded − limit) / one reservation; the worst shape is reported (goal ≤ 1).
2. SIGKILL: 16 streaming clients, the gateway killed with SIGKILL after 2 s, restarted on the same state.
   Unbilled rows = requests whose id the clients saw without an `ok`/`reconciled` row; unbilled tokens =
   tokens the clients received beyond those billed for their request (goal 0 and 0).
3. two replicas on one Redis and one PostgreSQL (skipped, saying why, when either is absent): one team
   budget of 10 reservations, 200 clients split between them; overspend in reservations (goal ≤ 2).
4. revocation: a key revoked on replica A, replica B polled until it refuses it; the worst of 5 tries (goal
   ≤ 1 s), and the same for a limit set on A.
5. fuzz: random request bodies, fields, methods and paths (seeded); answers that are 5xx or not JSON
   (a 200 SSE stream excepted) are counted (goal 0).
6. journal overhead: the same 1,600 requests (half streamed) through a gateway with and without the write-ahead
   journal, three runs each in ABBA order; gateway CPU per request (ms) from /proc, the mean difference, and the
   journal's own cost per request measured in-process (µs).

    .venv/bin/python benchmarks/gateway_chaos.py [--clients 200] [--fuzz 1500] [--seed 7] [--skip-shared]
        [--phases bypass,fuzz,kill,shared,overhead] [--overhead-requests 1600]

The last line is `chaos_goals_missed: N goals` (the count of the goals above not met in the phases run;
a shared-state phase that cannot run counts as 2 missed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import mean

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
ADMIN_KEY = "chaos-admin-" + secrets.token_hex(8)
KEY_SECRET = secrets.token_hex(24)
POSTGRES_URL = os.environ.get("TOKENOMY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOKENOMY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ENV = {**os.environ, "TOKENOMY_ADMIN_KEY": ADMIN_KEY, "TOKENOMY_KEY_SECRET": KEY_SECRET}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
PRICES = (3.0, 15.0)  # $/Mtok input, output of the one tier


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up")


# ---- the upstream: a tiny vLLM-like stub (its own process) ----------------------------------------------------

STUB_DEFAULT_TOKENS = 4000  # what it generates without a cap (vLLM: up to the context length)


def stub_app():  # noqa: ANN201
    """An OpenAI-compatible stub that generates what vLLM would: max_completion_tokens, else max_tokens, else
    STUB_DEFAULT_TOKENS per sequence, × n, × prompts; truthy `stream` streams; usage on every answer."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def complete(request: Request) -> object:
        body = await request.json()
        cap = body.get("max_completion_tokens") or body.get("max_tokens") or STUB_DEFAULT_TOKENS
        prompts = body.get("prompt") if isinstance(body.get("prompt"), list) else [None]
        sequences = int(body.get("n") or 1) * len(prompts)
        tokens = int(cap) * sequences
        prompt_tokens = len(json.dumps(body.get("messages") or body.get("prompt") or "")) // 4 + 1
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens}
        chat = request.url.path.endswith("/chat/completions")
        if body.get("stream"):

            async def events():  # noqa: ANN202
                for i in range(tokens):
                    delta = {"delta": {"content": "a "}} if chat else {"text": "a "}
                    yield f"data: {json.dumps({'choices': [{'index': 0, **delta}]})}\n\n".encode()
                    if i % 8 == 7:
                        await asyncio.sleep(0.004)
                yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        await asyncio.sleep(tokens * 2e-6)
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": "a " * min(tokens, 50)}}
            if chat
            else {
                "index": 0,
                "text": "a " * min(tokens, 50),
            }
        )
        return JSONResponse({"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage})

    async def models(_request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "up", "object": "model"}]})

    routes = [
        Route("/v1/chat/completions", complete, methods=["POST"]),
        Route("/v1/completions", complete, methods=["POST"]),
        Route("/v1/models", models),
    ]
    return Starlette(routes=routes)


@contextlib.contextmanager
def upstream_stub() -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve-stub", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_up(f"http://127.0.0.1:{port}/v1/models", proc, "the upstream stub")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def write_config(path: Path, upstream: str, state: Path, **extra: object) -> Path:
    tier = {
        "name": "up",
        "url": f"{upstream}/v1",
        "model": "up",
        "classes": ["simple", "complex"],
        "usd_per_mtok_input": PRICES[0],
        "usd_per_mtok_output": PRICES[1],
    }
    config = {"state_dir": str(state), "ledger": {"flush_interval_s": 0.05}, "tiers": [tier], **extra}
    path.write_text(yaml.safe_dump(config))
    return path


class Gateway:
    """A `tokenomy gateway` process."""

    def __init__(self, config: Path, port: int | None = None):
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "tokenomy.cli.main", "gateway", "--config", str(config)]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV
        )
        wait_up(f"{self.url}/healthz", self.proc, "the gateway")

    def key(self, team: str) -> tuple[str, str]:
        r = httpx.post(f"{self.url}/admin/keys", json={"team": team}, headers=ADMIN, timeout=10)
        r.raise_for_status()
        return r.json()["key_id"], r.json()["key"]

    def budget(self, team: str, usd: float) -> None:
        body = {"scope": "team", "owner": team, "period": "day", "usd": usd}
        httpx.put(f"{self.url}/admin/budgets", json=body, headers=ADMIN, timeout=10).raise_for_status()

    def spent_usd(self, team: str) -> float:
        for u in httpx.get(f"{self.url}/admin/budgets", headers=ADMIN, timeout=10).json()["budgets"]:
            if u["scope"] == "team" and u["owner"] == team and u["period"] == "day":
                return float(u["spent_usd"])
        return 0.0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=60)


# ---- 1. bypass shapes -------------------------------------------------------------------------------------


def chat(content: str = "Write a long story about a lighthouse keeper.", **extra: object) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **extra}


def tools_40kb() -> list[dict]:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "x" * 1000,
            "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": "y" * 900}}},
        },
    }
    return [{**tool, "function": {**tool["function"], "name": f"lookup_{i}"}} for i in range(21)]


SHAPES: dict[str, tuple[str, dict]] = {
    "max_tokens null": ("/v1/chat/completions", chat(max_tokens=None)),
    "max_tokens 1 + max_completion_tokens 2000": (
        "/v1/chat/completions",
        chat(max_tokens=1, max_completion_tokens=2000),
    ),
    "n 10 without max_tokens": ("/v1/chat/completions", chat(n=10)),
    "/v1/completions with 20 prompts": (
        "/v1/completions",
        {"model": "auto", "prompt": [f"Story {i}: once upon a time" for i in range(20)]},
    ),
    "3,000-character CJK prompt": ("/v1/chat/completions", chat("漢字仮名交じり文" * 375, max_tokens=16)),
    "40 KB of tools": ("/v1/chat/completions", chat("Call a tool.", max_tokens=16, tools=tools_40kb())),
    '"stream": 1': ("/v1/chat/completions", chat(max_tokens=64, stream=1)),
}


async def until_refused(url: str, key: str, path: str, body: dict, clients: int) -> dict[int, int]:
    """`clients` concurrent clients each sending `body` until the gateway answers anything but 200."""
    statuses: dict[int, int] = {}
    odd: list[str] = []

    async def one(client: httpx.AsyncClient) -> None:
        for _ in range(1000):
            try:
                r = await client.post(path, json=body)
            except httpx.HTTPError as exc:  # counted as status 0, and shown
                statuses[0] = statuses.get(0, 0) + 1
                if len(odd) < 3:
                    odd.append(f"connection error: {exc!r}")
                return
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code not in (200, 429) and len(odd) < 3:
                odd.append(f"HTTP {r.status_code}: {r.text[:200]}")
            if r.status_code != 200:
                return

    limits = httpx.Limits(max_connections=clients)
    h = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=h, limits=limits, timeout=120) as client:
        await asyncio.gather(*(one(client) for _ in range(clients)))
    for line in odd:
        print(f"  (answer other than 200/429: {line})")
    return statuses


def reservation_usd(g: Gateway, key: str, team: str, path: str, body: dict) -> tuple[float | None, str]:
    """One reservation of this shape: the request_usd of the 429 a ~zero budget gives it (None if refused)."""
    g.budget(team, 1e-12)
    r = httpx.post(f"{g.url}{path}", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60)
    if r.status_code == 429:
        return float(r.json()["error"]["request_usd"]), "429"
    return None, f"HTTP {r.status_code} before any budget: {r.text[:120]}"


def wait_ledger(g: Gateway) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{g.url}/healthz", timeout=5).json().get("ledger_pending_rows", 0) and time.monotonic() < deadline:
        time.sleep(0.05)


def bypass(g: Gateway, clients: int) -> tuple[float, list[str]]:
    worst, lines = 0.0, []
    for i, (name, (path, body)) in enumerate(SHAPES.items()):
        team = f"bypass-{i}"
        _, key = g.key(team)
        one, how = reservation_usd(g, key, team, path, body)
        if one is None:
            lines.append(f"  {name:<44} refused outright ({how})")
            continue
        g.budget(team, 10 * one)
        statuses = asyncio.run(until_refused(g.url, key, path, body, clients))
        wait_ledger(g)
        spent = g.spent_usd(team)
        over = max(spent - 10 * one, 0.0) / one
        worst = max(worst, over)
        lines.append(
            f"  {name:<44} reservation ${one:.6f}; {statuses.get(200, 0)} answered; spent ${spent:.6f} "
            f"of ${10 * one:.6f}: overspend {over:.2f} reservations; answers {dict(sorted(statuses.items()))}"
        )
    return worst, lines


# ---- 2. SIGKILL --------------------------------------------------------------------------------------------


async def streaming_load(url: str, key: str, seconds: float, received: dict[str, int]) -> None:
    stop_at = time.monotonic() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            try:
                body = chat("Tell me about the sea.", max_tokens=128, stream=True)
                async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    rid = r.headers.get("x-request-id")
                    if rid:
                        received[rid] = 0
                    async for line in r.aiter_lines():
                        if rid and line.startswith("data: {") and '"content"' in line:
                            received[rid] += 1
            except httpx.HTTPError:
                return

    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=30) as c:
        await asyncio.gather(*(loop(c) for _ in range(16)))


def sigkill(upstream: str, work: Path) -> tuple[int, int, list[str]]:
    state = work / "kill-state"
    config = write_config(work / "kill.yaml", upstream, state)
    g = Gateway(config)
    _, key = g.key("kill")
    received: dict[str, int] = {}

    async def run() -> None:
        task = asyncio.create_task(streaming_load(g.url, key, 30.0, received))
        await asyncio.sleep(2.0)
        os.kill(g.proc.pid, signal.SIGKILL)
        await task

    asyncio.run(run())
    g.proc.wait(timeout=30)
    g2 = Gateway(config, g.port)  # restart: replays the journal
    g2.stop()
    import sqlite3

    conn = sqlite3.connect(state / "ledger.sqlite")
    billed: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for rid, status, tokens_out in conn.execute("SELECT request_id, status, tokens_out FROM attempts"):
        if status in ("ok", "reconciled"):
            billed[rid] = billed.get(rid, 0) + int(tokens_out or 0)
        statuses[status] = statuses.get(status, 0) + 1
    conn.close()
    rows_missing = sum(1 for rid in received if rid not in billed)
    tokens_missing = sum(max(n - billed.get(rid, 0), 0) for rid, n in received.items())
    line = (
        f"  {len(received)} requests seen by clients, {sum(received.values())} tokens received; "
        f"ledger rows by status after restart: {dict(sorted(statuses.items()))}"
    )
    return rows_missing, tokens_missing, [line]


# ---- 3 and 4. two replicas on Redis + PostgreSQL -------------------------------------------------------------


def shared_services() -> str | None:
    """Why the shared-state phases cannot run, or None when Redis and PostgreSQL answer."""
    try:
        import psycopg
        import redis
    except ImportError as exc:
        return f"{exc.name} not installed (pip install 'tokenomy[gateway-scale]')"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis not reachable at {REDIS_URL}: {exc}"
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {str(exc).splitlines()[0]}"
    return None


def poll_until(url: str, key: str, status: int, t0: float, timeout_s: float = 10.0) -> float:
    """Seconds from t0 until a request with `key` gets `status` (inf if never within timeout_s)."""
    h = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=h, timeout=10) as c:
        while time.perf_counter() - t0 < timeout_s:
            if c.post("/v1/chat/completions", json=chat(max_tokens=1)).status_code == status:
                return time.perf_counter() - t0
    return float("inf")


def replicas(upstream: str, work: Path, clients: int) -> tuple[float, float, float, list[str]]:
    import redis

    sys.path.insert(0, str(REPO))
    from tests.gateway.services import postgres_schema  # the gateway tests' fresh PostgreSQL schema

    ns = "chaos" + secrets.token_hex(4)
    lines = []
    with postgres_schema("tokenomy_chaos_") as pg:
        shared = {"redis_url": REDIS_URL, "namespace": ns, "poll_s": 0.1}
        ledger = {"url": pg, "flush_interval_s": 0.05}
        a = Gateway(write_config(work / "a.yaml", upstream, work / "a", shared=shared, ledger=ledger))
        b = Gateway(write_config(work / "b.yaml", upstream, work / "b", shared=shared, ledger=ledger))
        try:
            body = chat("Summarise Hamlet in one line.", max_tokens=32)
            team = "shared-team"
            _, key = a.key(team)
            one, how = reservation_usd(a, key, team, "/v1/chat/completions", body)
            assert one is not None, how
            a.budget(team, 10 * one)
            time.sleep(0.5)  # the limit reaches B at its next poll (measured below)

            async def split() -> dict[int, int]:
                half = clients // 2
                ra, rb = await asyncio.gather(
                    until_refused(a.url, key, "/v1/chat/completions", body, half),
                    until_refused(b.url, key, "/v1/chat/completions", body, clients - half),
                )
                return {s: ra.get(s, 0) + rb.get(s, 0) for s in {*ra, *rb}}

            statuses = asyncio.run(split())
            wait_ledger(a)
            wait_ledger(b)
            spent = a.spent_usd(team)
            over = max(spent - 10 * one, 0.0) / one
            lines.append(
                f"  two replicas: {statuses.get(200, 0)} answered; spent ${spent:.6f} of ${10 * one:.6f} "
                f"(reservation ${one:.6f}): overspend {over:.2f} reservations; answers {dict(sorted(statuses.items()))}"
            )
            revoke_s, limit_s = [], []
            for i in range(5):
                key_id, k = a.key(f"rev-{i}")
                if poll_until(b.url, k, 200, time.perf_counter()) == float("inf"):
                    raise RuntimeError("a key made on A never worked on B")
                t0 = time.perf_counter()
                httpx.delete(f"{a.url}/admin/keys/{key_id}", headers=ADMIN, timeout=10).raise_for_status()
                revoke_s.append(poll_until(b.url, k, 401, t0))
                _, k2 = a.key(f"lim-{i}")
                t0 = time.perf_counter()
                a.budget(f"lim-{i}", 1e-12)
                limit_s.append(poll_until(b.url, k2, 429, t0))
            lines.append(
                "  revocation latency on B (s): "
                + ", ".join(f"{x:.3f}" for x in revoke_s)
                + "; limit change: "
                + ", ".join(f"{x:.3f}" for x in limit_s)
            )
        finally:
            a.stop()
            b.stop()
            client = redis.Redis.from_url(REDIS_URL)
            for k in client.scan_iter(match=f"{ns}:*", count=1000):
                client.delete(k)
    return over, max(revoke_s), max(limit_s), lines


# ---- 5. fuzz -----------------------------------------------------------------------------------------------

FIELDS = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stream",
    "stream_options",
    "temperature",
    "tools",
    "prompt",
    "response_format",
    "user",
    "logprobs",
    "stop",
    "seed",
    "x_unknown",
]


def random_value(rng: random.Random, depth: int = 0) -> object:
    """A random JSON value: scalars of every type and edge, strings with NUL and CJK, nested lists and objects."""
    kind = rng.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return None
    if kind in (1, 2):
        return kind == 1
    if kind == 3:
        return rng.randint(-5, 5)
    if kind == 4:
        return rng.choice([2**31, 2**63, -(2**63), 10**30])
    if kind == 5:
        return rng.random() * 1e6
    if kind == 6:
        return "x" * rng.randint(0, 50)
    if kind == 7:
        return "\u0000漢" * rng.randint(1, 4)
    if kind == 8:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == 9:
        keys = [*FIELDS, "role", "content", "type"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if kind == 10:
        return [{"role": rng.choice(["user", "system", "tool", 5]), "content": random_value(rng, depth + 1)}]
    return [{"type": "text", "text": random_value(rng, depth + 1)}]


def fuzz_case(rng: random.Random) -> tuple[str, str, bytes, dict[str, str]]:
    """(method, path, body bytes, headers) of one random request."""
    roll = rng.random()
    path = rng.choice(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
    if roll < 0.05:
        return rng.choice(["GET", "PUT", "DELETE"]), path, b"", {}
    if roll < 0.10:
        return "POST", rng.choice(["/v1/nope", "/v2/chat/completions", "/admin/nope"]), b"{}", {}
    if roll < 0.20:
        raw = rng.choice([b"{", b"[1,2]", b"\xff\xfe", b"nan", b'{"a":NaN}', b"[" * 100_000, b'{"messages": 1e999}'])
        return "POST", path, raw, {}
    body = chat("hi", max_tokens=4) if path != "/v1/completions" else {"model": "auto", "prompt": "hi", "max_tokens": 4}
    for _ in range(rng.randint(1, 3)):
        body[rng.choice(FIELDS)] = random_value(rng)
    headers = {"x-tokenomy-class": rng.choice(["simple", "complex", "bogus"])} if rng.random() < 0.1 else {}
    return "POST", path, json.dumps(body).encode(), headers


async def fuzz(url: str, key: str, count: int, seed: int) -> tuple[int, int, dict[int, int], list[str]]:
    rng = random.Random(seed)
    cases = [fuzz_case(rng) for _ in range(count)]
    five, plain, statuses, examples = 0, 0, {}, []
    queue = list(enumerate(cases))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal five, plain
        while queue:
            _, (method, path, raw, headers) = queue.pop()
            h = {"authorization": f"Bearer {key}", "content-type": "application/json", **headers}
            try:
                r = await client.request(method, path, content=raw, headers=h)
            except httpx.HTTPError as exc:
                five += 1
                examples.append(f"{method} {path}: connection error {exc!r}"[:200])
                continue
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code >= 500:
                five += 1
                examples.append(f"{method} {path} {raw[:80]!r} -> {r.status_code} {r.text[:100]}")
            sse = r.headers.get("content-type", "").startswith("text/event-stream") and r.status_code == 200
            if not sse:
                try:
                    answer = r.json()
                    if r.status_code >= 400 and not isinstance(answer.get("error"), dict):
                        raise ValueError("no error object")
                except ValueError:
                    plain += 1
                    examples.append(f"{method} {path} {raw[:80]!r} -> {r.status_code} not JSON: {r.text[:100]}")

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(16)))
    return five, plain, statuses, examples[:5]


# ---- 6. journal overhead -----------------------------------------------------------------------------------


def journal_cost_us(n: int = 20_000) -> tuple[float, float]:
    """In-process µs per request of the journal: on the request path (the open line), and in the ledger writer's
    thread (close lines, written 100 at a time after their rows are committed)."""
    from tokenomy.gateway.ledger import Admission, Journal

    with tempfile.TemporaryDirectory() as d:
        j = Journal(Path(d))
        ids = [f"req_{i:016x}" for i in range(n)]
        t0 = time.perf_counter()
        for rid in ids:
            j.admit(Admission(rid, time.time(), "key_abc", "team", "auto", "simple", "up", "up", True, 120, 256, 4e-3))
        hot = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        for i in range(0, n, 100):
            j.close_many(ids[i : i + 100])
        writer = (time.perf_counter() - t0) / n * 1e6
        j.close(True)
    return hot, writer


async def steady(url: str, key: str, total: int) -> float:
    """Send `total` requests (half streamed) from 16 clients; returns the p50 latency in ms."""
    lat: list[float] = []
    left = list(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        while left:
            i = left.pop()
            t0 = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=chat("Hi.", max_tokens=16, stream=bool(i % 2)))
            if r.status_code == 200:
                lat.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=30) as c:
        await asyncio.gather(*(worker(c) for _ in range(16)))
    lat.sort()
    return lat[len(lat) // 2] * 1e3 if lat else float("nan")


def overhead(upstream: str, work: Path, total: int) -> tuple[list[str], float]:
    """Gateway CPU per request with and without the journal (ABBA runs); the lines and the mean difference (ms)."""
    lines: list[str] = []
    cpu_on: list[float] = []
    cpu_off: list[float] = []
    for journal in (False, True, True, False, False, True):  # ABBA order: a linear drift in machine load cancels
        config = write_config(
            work / f"o{journal}.yaml",
            upstream,
            work / f"o{journal}",
            ledger={"journal": journal, "flush_interval_s": 0.05},
        )
        g = Gateway(config)
        _, key = g.key("overhead")
        asyncio.run(steady(g.url, key, 200))  # warm-up
        cpu0 = g.cpu_s()
        p50 = asyncio.run(steady(g.url, key, total))
        cpu = (g.cpu_s() - cpu0) / total * 1e3
        (cpu_on if journal else cpu_off).append(cpu)
        g.stop()
        lines.append(f"  journal {'on ' if journal else 'off'}: gateway CPU {cpu:.3f} ms/request, E2E p50 {p50:.1f} ms")
    hot, writer = journal_cost_us()
    lines.append(
        f"  journal in-process: {hot:.1f} µs/request on the request path (open line), {writer:.1f} µs in the writer"
    )
    return lines, mean(cpu_on) - mean(cpu_off)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--fuzz", type=int, default=1500)
    p.add_argument("--overhead-requests", type=int, default=1600)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-shared", action="store_true", help="skip the Redis + PostgreSQL phases")
    p.add_argument("--phases", default="bypass,fuzz,kill,shared,overhead", help="comma-separated subset to run")
    p.add_argument("--serve-stub", type=int, help=argparse.SUPPRESS)  # internal: run the upstream stub on a port
    args = p.parse_args()
    if args.serve_stub:
        import uvicorn

        uvicorn.run(stub_app(), host="127.0.0.1", port=args.serve_stub, log_level="warning", access_log=False)
        return
    missed = 0
    phases = set(args.phases.split(","))
    with tempfile.TemporaryDirectory() as tmp, upstream_stub() as upstream:
        work = Path(tmp)
        if phases & {"bypass", "fuzz"}:
            g = Gateway(write_config(work / "g.yaml", upstream, work / "g"))
            try:
                if "bypass" in phases:
                    worst, lines = bypass(g, args.clients)
                    print("bypass shapes (one gateway, SQLite):", *lines, sep="\n")
                    print(f"worst_bypass_overspend: {worst:.2f} reservations")
                    missed += worst > 1
                if "fuzz" in phases:
                    _, key = g.key("fuzz")
                    five, plain, statuses, examples = asyncio.run(fuzz(g.url, key, args.fuzz, args.seed))
                    print(
                        f"fuzz: {args.fuzz} requests, answers {dict(sorted(statuses.items()))}", *examples, sep="\n  "
                    )
                    print(f"fuzz_5xx: {five} answers")
                    print(f"fuzz_plain_text: {plain} answers")
                    missed += five > 0
                    missed += plain > 0
            finally:
                g.stop()
        if "kill" in phases:
            rows, tokens, lines = sigkill(upstream, work)
            print("SIGKILL under streaming load, then restart:", *lines, sep="\n")
            print(f"unbilled_rows_after_sigkill: {rows} rows")
            print(f"unbilled_tokens_after_sigkill: {tokens} tokens")
            missed += rows > 0 or tokens > 0
        if "shared" in phases:
            why = "skipped by --skip-shared" if args.skip_shared else shared_services()
            if why is None:
                over, revoke_s, limit_s, lines = replicas(upstream, work, args.clients)
                print("two replicas on one Redis + PostgreSQL:", *lines, sep="\n")
                print(f"two_replica_overspend: {over:.2f} reservations")
                print(f"revocation_latency_max: {revoke_s:.3f} s")
                print(f"limit_change_latency_max: {limit_s:.3f} s")
                missed += over > 2
                missed += revoke_s > 1
            else:
                print(f"two replicas: not measured: {why}")
                missed += 2
        if "overhead" in phases:
            print("write-ahead journal overhead (same load, gateway with and without it):")
            lines, extra_ms = overhead(upstream, work, args.overhead_requests)
            print(*lines, sep="\n")
            print(f"journal_cpu_overhead: {extra_ms:+.3f} ms/request")
    print(f"chaos_goals_missed: {missed} goals")


if __name__ == "__main__":
    main()
