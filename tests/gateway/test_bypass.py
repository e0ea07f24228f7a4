"""Budget bypass attempts under concurrency: 200 requests at once per shape, against a worst-case upstream.

Each shape once let a burst spend many times its budget (issue 14): null max_tokens, a small max_tokens with
a large max_completion_tokens, n without max_tokens, a /v1/completions batch, a CJK prompt, 40 KB of tools,
a truthy non-boolean `stream`. The stub upstream bills the most any engine could for what it receives, so
the budget holds only if the gateway reserves, and sends upstream, exactly what may be generated.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import api_tier, asgi_request, chat
from tests.gateway.upstream_stub import running_stub
from tokenomy.gateway.app import build_app
from tokenomy.gateway.budgets import Limit
from tokenomy.gateway.config import parse_config
from tokenomy.gateway.schema import shape

CONCURRENT = 200
RESERVATIONS_PER_BUDGET = 10.5
TOOLS = [
    {"type": "function", "function": {"name": f"tool_{i}", "description": "d" * 380, "parameters": {}}}
    for i in range(100)
]  # ≈ 40 KB
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "max_tokens null": ("/v1/chat/completions", chat(max_tokens=None)),
    "max_tokens 1 + max_completion_tokens 2000": (
        "/v1/chat/completions",
        chat(max_tokens=1, max_completion_tokens=2000),
    ),
    "n 10 without max_tokens": ("/v1/chat/completions", {**chat(n=10), "max_tokens": None}),
    "completions batch of 20": ("/v1/completions", {"model": "auto", "prompt": ["Say hi."] * 20}),
    "3,000-character CJK prompt": ("/v1/chat/completions", chat("漢字仮名交じり文" * 375, max_tokens=64)),
    "40 KB of tools": ("/v1/chat/completions", chat(max_tokens=16, tools=TOOLS)),
    "streamed, max_tokens null": ("/v1/chat/completions", chat(max_tokens=None, stream=True)),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_a_burst_of_200_cannot_overspend_by_more_than_one_reservation(name: str, tmp_path: Path) -> None:
    path, body = SHAPES[name]
    with running_stub() as (url, state):
        config = parse_config(
            {
                "state_dir": str(tmp_path / "state"),
                "tiers": [api_tier("api", url, ["simple", "complex"], 30.0, 150.0)],
                "limits": {"default_max_tokens": 512, "max_tokens": 4096},
            }
        )
        app = build_app(config)
        gw = app.state.gateway
        _, key = gw.keys.create("team-a")
        raw = json.dumps(body).encode()  # what asgi_request sends
        limits = config.limits
        cost = shape(body, path[3:], len(raw), limits.default_max_tokens, limits.max_tokens, limits.max_n)
        one_reservation = gw.tiers[0].prices.usd(cost.prompt_tokens, cost.output_tokens)
        limit_usd = RESERVATIONS_PER_BUDGET * one_reservation
        gw.store_limit(Limit("team", "team-a", "day", usd=limit_usd))  # in the database: survives reloads
        headers = {"authorization": f"Bearer {key}"}

        async def run() -> list[tuple[int, bytes]]:
            await gw.start()
            try:
                return await asyncio.gather(*(asgi_request(app, path, body, headers) for _ in range(CONCURRENT)))
            finally:
                await gw.stop()

        answers = asyncio.run(run())
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 429}, statuses
    assert 10 <= statuses.count(200) < CONCURRENT
    team = next(u for u in gw.budgets.report() if u["scope"] == "team" and u["period"] == "day")
    overspend = max(team["spent_usd"] - limit_usd, 0.0) / one_reservation
    assert overspend <= 1.0, f"{name}: spent {team['spent_usd']:.4f} of {limit_usd:.4f}"
    assert team["reserved_usd"] == pytest.approx(0.0, abs=1e-9)
    if state.bodies:
        sent = state.bodies[0]
        caps = [sent[f] for f in ("max_tokens", "max_completion_tokens") if f in sent]
        assert caps and all(c == cost.cap for c in caps)  # exactly the cap went upstream


def test_a_truthy_non_boolean_stream_is_refused_not_billed_at_zero(tmp_path: Path) -> None:
    with running_stub() as (url, state):
        config = parse_config(
            {"state_dir": str(tmp_path / "state"), "tiers": [api_tier("api", url, ["simple", "complex"], 1.0, 2.0)]}
        )
        app = build_app(config)
        gw = app.state.gateway
        _, key = gw.keys.create("team-a")

        async def run() -> list[tuple[int, bytes]]:
            await gw.start()
            try:
                bodies = [chat(stream=s) for s in (1, "yes", "true", 0, [1], {"a": 1})] * 30
                return await asyncio.gather(
                    *(asgi_request(app, "/v1/chat/completions", b, {"authorization": f"Bearer {key}"}) for b in bodies)
                )
            finally:
                await gw.stop()

        answers = asyncio.run(run())
    assert {status for status, _ in answers} == {400}
    assert all(json.loads(b)["error"]["param"] == "stream" for _, b in answers)
    assert state.requests == 0
