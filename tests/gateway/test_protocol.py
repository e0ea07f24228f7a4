"""Protocol hygiene, exact caps, isolation: the gateway against a worst-case upstream stub (upstream_stub.py)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import ADMIN_KEY, api_tier, chat
from tests.gateway.upstream_stub import StubState, running_stub
from tokenomy.gateway.config import ConfigError, parse_config
from tokenomy.gateway.ledger import Database
from tokenomy.gateway.schema import FRAMING_TOKENS_PER_PART, TEMPLATE_TOKENS, SchemaError, shape

ERROR_FIELDS = {"message", "type", "code", "param"}


@pytest.fixture
def stubbed(gateway) -> Iterator[tuple[Any, httpx.Client, StubState]]:
    """A gateway with one API tier ("api", $1/$2 per Mtok) on a worst-case stub; a client with a key."""
    with running_stub() as (url, state):
        g = gateway(
            {
                "tiers": [api_tier("api", url, ["simple", "complex"], 1.0, 2.0)],
                "limits": {"default_max_tokens": 100, "max_tokens": 1000, "max_n": 4},
                "circuit": {"failures_to_open": 2, "open_s": 30},
            }
        )
        _, key = g.new_key("team-a")
        with httpx.Client(base_url=g.url, headers={"authorization": f"Bearer {key}"}, timeout=10) as client:
            yield g, client, state


def openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert ERROR_FIELDS <= set(error), error
    return error


def test_the_one_output_cap_is_what_goes_upstream(stubbed) -> None:
    g, client, state = stubbed
    cases = [
        (chat(max_tokens=None), {"max_tokens": 100}),  # null: the configured default, written upstream
        ({k: v for k, v in chat().items() if k != "max_tokens"}, {"max_tokens": 100}),  # absent: the same
        (chat(max_tokens=1, max_completion_tokens=500), {"max_tokens": 1, "max_completion_tokens": 1}),  # smaller
        (chat(max_tokens=None, max_completion_tokens=7), {"max_completion_tokens": 7}),
    ]
    for body, sent in cases:
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        received = state.bodies[-1]
        assert {k: received.get(k) for k in ("max_tokens", "max_completion_tokens") if k in received} == sent
    r = client.post("/v1/completions", json={"model": "api", "prompt": ["a", "b", "c"], "max_tokens": 5, "n": 2})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5 * 2 * 3
    g.stop()
    rows = Database(g.config.ledger.url, g.config.state_dir).attempts()
    assert all("over_reservation" not in r["reason"] for r in rows)  # a worst-case engine stays within each


def test_reservation_bounds_prompt_and_output() -> None:
    body = chat("漢字" * 1500, max_tokens=None, n=3, tools=[{"type": "function", "function": {"name": "x" * 4000}}])
    raw = json.dumps(body, ensure_ascii=False).encode()
    cost = shape(body, "/chat/completions", len(raw), default_cap=100, max_cap=1000, max_n=4)
    assert cost.cap == 100 and cost.output_tokens == 300
    assert cost.prompt_tokens == len(raw) + FRAMING_TOKENS_PER_PART + TEMPLATE_TOKENS
    assert cost.prompt_tokens > 3000 * 3 + 4000  # every UTF-8 byte of the CJK text and of the tools counts
    batch = {"model": "m", "prompt": ["a"] * 20, "max_tokens": 10, "best_of": 3, "n": 2}
    assert shape(batch, "/completions", 200, 100, 1000, 4).output_tokens == 10 * 3 * 20
    for bad, param in [
        ({"n": 5}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 1001}, "max_completion_tokens"),
        ({"stream": 1}, "stream"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": []}, "stream_options"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
        ({"temperature": "hot"}, "temperature"),
        ({"api_base": "http://x"}, "api_base"),
        ({"max_tokens": True}, "max_tokens"),
    ]:
        with pytest.raises(SchemaError) as exc:
            shape(chat(**bad), "/chat/completions", 100, 100, 1000, 4)
        assert exc.value.param == param, (bad, str(exc.value))


def test_bad_requests_get_openai_errors_and_never_reach_the_upstream(stubbed) -> None:
    g, client, state = stubbed
    post = client.post
    assert "stream" in openai_error(post("/v1/chat/completions", json=chat(stream=1)), 400)["message"]
    assert openai_error(post("/v1/chat/completions", json=chat(stream="yes")), 400)["param"] == "stream"
    assert openai_error(post("/v1/chat/completions", json=chat(stream_options=3)), 400)["param"] == "stream_options"
    deep = "[" * 100_000 + "]" * 100_000
    assert "deep" in openai_error(post("/v1/chat/completions", content=deep), 400)["message"]
    assert "NaN" in openai_error(post("/v1/chat/completions", content=b'{"model":"auto","x":NaN}'), 400)["message"]
    error = openai_error(post("/v1/chat/completions", json=chat(api_bse="http://evil")), 400)
    assert error["param"] == "api_bse" and "api_base" not in error["message"]  # not an allowed name to suggest
    assert "top_p" in openai_error(post("/v1/chat/completions", json=chat(top_pp=0.5)), 400)["message"]
    assert openai_error(post("/v1/chat/completions", json=chat(max_tokens=2000)), 400)["param"] == "max_tokens"
    error = openai_error(post("/v1/chat/completions", json=chat(model="gtp-4")), 404)
    assert error["code"] == "model_not_found" and "serves: auto, api" in error["message"]
    assert openai_error(client.get("/v1/nowhere"), 404)["code"] == "not_found"
    assert openai_error(client.get("/v1/chat/completions"), 405)["code"] == "method_not_allowed"
    assert openai_error(post("/v1/nowhere", json={}), 404)
    big = {"model": "auto", "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    assert openai_error(post("/v1/chat/completions", json=big), 413)
    assert openai_error(post("/v1/embeddings", json={"model": "auto", "input": "x"}), 400)["param"] == "model"
    assert state.requests == 0
    assert post("/v1/chat/completions", json=chat()).status_code == 200  # and it keeps serving


def test_upstream_redirects_and_non_json_are_errors_and_missing_usage_is_counted(stubbed) -> None:
    g, client, state = stubbed
    state.mode = "redirect"
    error = openai_error(client.post("/v1/chat/completions", json=chat()), 502)
    assert "HTTP 307" in error["message"] and "redirect" in error["message"]
    state.mode = "redirect"
    r = client.post("/v1/chat/completions", json=chat(stream=True))
    assert r.status_code == 502 and "HTTP 307" in r.json()["error"]["message"]  # never passed on as a success
    state.mode = "not_json"
    openai_error(client.post("/v1/chat/completions", json=chat()), 502)
    state.mode = "no_usage"
    assert client.post("/v1/chat/completions", json=chat("one two three four five")).status_code == 200
    assert client.post("/v1/chat/completions", json=chat(stream=True)).status_code == 200
    g.stop()
    rows = Database(g.config.ledger.url, g.config.state_dir).attempts()
    counted = [r for r in rows if r["status"] == "ok"]
    assert len(counted) == 2 and all(r["tokens_in"] > 0 and r["tokens_out"] > 0 for r in counted)
    assert "tokens counted by the gateway" in counted[0]["reason"]


def test_embeddings_are_priced_per_input_token(stubbed) -> None:
    g, client, state = stubbed
    r = client.post("/v1/embeddings", json={"model": "api", "input": ["hello world", "and more"]})
    assert r.status_code == 200 and r.json()["data"]
    g.stop()
    [row] = Database(g.config.ledger.url, g.config.state_dir).attempts()
    assert row["tokens_in"] == len("hello world") + len("and more") and row["tokens_out"] == 0
    assert row["cost_usd"] == pytest.approx(row["tokens_in"] * 1.0 / 1e6)


def test_usage_over_the_reservation_is_flagged_in_the_ledger_and_metrics(stubbed) -> None:
    g, client, state = stubbed
    state.mode = "over_usage"  # an upstream that generates more than it was allowed
    assert client.post("/v1/chat/completions", json=chat(max_tokens=10)).status_code == 200
    metrics = client.get("/metrics").text
    assert 'tokenomy_gateway_over_reservation_total{tier="api"} 1.0' in metrics
    g.stop()
    [row] = Database(g.config.ledger.url, g.config.state_dir).attempts()
    assert "over_reservation: used" in row["reason"]


def test_a_client_that_leaves_cancels_the_upstream_request_and_releases_its_reservation(stubbed) -> None:
    g, client, state = stubbed
    state.delay_s = 30.0  # the upstream takes its time; the client gives up after 0.5 s
    for stream in (False, True):
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/chat/completions", json=chat(stream=stream), timeout=0.5)
    deadline = time.monotonic() + 10  # generous: the point is "seconds", not read_s / total_s
    while state.disconnects < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.disconnects == 2  # the upstream saw both requests go away
    team = next(u for u in g.gateway.budgets.report() if u["scope"] == "team" and u["period"] == "day")
    assert team["reserved_usd"] == pytest.approx(0.0, abs=1e-12) and team["reserved_tokens"] == 0
    breaker = g.gateway.tiers[0].upstream.breaker
    assert breaker.state == "closed" and breaker.failures == 0  # a client leaving is no upstream failure
    g.stop()
    rows = Database(g.config.ledger.url, g.config.state_dir).attempts()
    assert [r["status"] for r in rows] == ["cancelled", "cancelled"]


def test_one_tenant_cannot_open_the_breaker_for_everyone(stubbed, caplog) -> None:
    g, client, state = stubbed
    breaker = g.gateway.tiers[0].upstream.breaker
    state.mode = "http500"  # as if this tenant's requests made the upstream fail
    for _ in range(4):
        openai_error(client.post("/v1/chat/completions", json=chat()), 502)
    time.sleep(0.5)  # the health probe (GET /models) answers: the upstream works for others
    assert breaker.state == "closed"
    state.mode = "ok"
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    state.mode, state.models_status = "http500", 503  # now the upstream is down for everyone
    with caplog.at_level(logging.WARNING, logger="tokenomy.gateway"):
        for _ in range(2):
            openai_error(client.post("/v1/chat/completions", json=chat()), 502)
        deadline = time.monotonic() + 5
        while breaker.state != "open" and time.monotonic() < deadline:
            time.sleep(0.05)
    assert breaker.state == "open"
    assert any("tier api: circuit breaker closed → open (health probe failed" in m for m in caplog.messages)


def test_failures_from_two_keys_open_the_breaker(stubbed) -> None:
    g, client, state = stubbed
    _, other = g.new_key("team-b")
    state.mode = "http500"
    openai_error(client.post("/v1/chat/completions", json=chat()), 502)
    openai_error(client.post("/v1/chat/completions", json=chat(), headers={"authorization": f"Bearer {other}"}), 502)
    assert g.gateway.tiers[0].upstream.breaker.state == "open"
    assert "circuit open" in openai_error(client.post("/v1/chat/completions", json=chat()), 503)["message"]


def test_a_tier_class_no_classifier_produces_is_refused_with_the_nearest_name(tmp_path) -> None:
    tier = api_tier("api", "http://127.0.0.1:9", ["simpel"], 1.0, 2.0)
    with pytest.raises(ConfigError) as exc:
        parse_config({"state_dir": str(tmp_path), "tiers": [tier]}, "gw.yaml")
    message = str(exc.value)
    assert "gw.yaml" in message and "tiers.0.classes.0" in message and "Did you mean: simple?" in message


def test_slow_clients_are_cut_off_and_the_server_says_where_it_listens(tmp_path) -> None:
    import threading

    import uvicorn

    from tokenomy.gateway.app import build_app
    from tokenomy.gateway.serve import listening_line, server_options

    with running_stub() as (url, _state):
        config = parse_config(
            {
                "state_dir": str(tmp_path),
                "tiers": [api_tier("api", url, ["simple"], 1.0, 2.0)],
                "timeouts": {"client_header_s": 0.3, "client_body_s": 0.3},
            }
        )
        app = build_app(config)
        _, key = app.state.gateway.keys.create("t")
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", **server_options(config)))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            assert listening_line("127.0.0.1", port).startswith(
                f"tokenomy gateway listening on http://127.0.0.1:{port}"
            )
            with socket.create_connection(("127.0.0.1", port)) as slow:  # headers that never finish
                slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
                slow.settimeout(10)
                assert slow.recv(1024) == b""  # closed by the gateway well before 10 s
            with socket.create_connection(("127.0.0.1", port)) as slow:  # a body that never finishes
                slow.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    + f"authorization: Bearer {key}\r\ncontent-length: 100\r\n\r\n{{".encode()
                )
                slow.settimeout(10)
                reply = slow.recv(4096)
                assert reply.startswith(b"HTTP/1.1 408") and b'"param"' in reply
            ok = httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions", json=chat(), headers={"authorization": f"Bearer {key}"}
            )
            assert ok.status_code == 200
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def test_admin_errors_are_openai_shaped(stubbed) -> None:
    g, _, _ = stubbed
    r = httpx.put(f"{g.url}/admin/budgets", content=b"{", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    openai_error(r, 400)


def test_the_cli_says_where_it_listens(tmp_path) -> None:
    import subprocess
    import sys

    import yaml

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = {"port": port, "tiers": [api_tier("api", "http://127.0.0.1:9", ["simple"], 1.0, 2.0)]}
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "tokenomy.cli.main", "gateway", "--config", str(tmp_path / "gw.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith(f"tokenomy gateway listening on http://127.0.0.1:{port}"), line
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_upstream_pool_caps_its_connections() -> None:
    import asyncio

    from tokenomy.http1 import Pool, PoolTimeout

    with running_stub(StubState(delay_s=0.5)) as (url, state):

        async def run() -> tuple[list[int], int]:
            pool = Pool(url + "/v1", connect_s=0.1, read_s=10, max_connections=2)

            async def one() -> int | str:
                try:
                    resp = await pool.request("POST", "/chat/completions", json.dumps(chat()).encode(), resend=False)
                except PoolTimeout:
                    return "waited too long"
                await resp.read()
                resp.release()
                return resp.status

            results = await asyncio.gather(*(one() for _ in range(5)))
            opened = len(pool.open)  # idle ones included
            pool.close()
            return results, opened

        results, opened = asyncio.run(run())
    assert sorted(results, key=str) == [200, 200, "waited too long", "waited too long", "waited too long"]
    assert opened <= 2 and state.requests == 2


def test_a_tier_with_a_known_tokenizer_reserves_its_count_and_the_usage_stays_within(twins, gateway) -> None:
    from tokenomy.gateway.schema import tokenized_prompt_bound

    api = twins("api")  # the twin counts prompts with the bundled SmolLM2 tokenizer
    tier = api_tier("api", api, ["simple", "complex"], 1.0, 2.0, tokenizer="smollm2")
    g = gateway({"tiers": [tier]})
    _, key = g.new_key("team-a")
    body = chat("Die Hauptstadt von Frankreich ist Paris. " * 40 + "漢字仮名交じり文" * 50, max_tokens=8)
    raw = json.dumps(body).encode()
    counted = tokenized_prompt_bound(body, "/chat/completions", 1)
    assert counted is not None and counted < shape(body, "/chat/completions", len(raw), 100, 1000, 4).prompt_tokens
    r = httpx.post(f"{g.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens"] <= counted
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}
    assert tokenized_prompt_bound({"messages": [image]}, "/chat/completions", 1) is None  # bytes bound it
    g.stop()
    [row] = Database(g.config.ledger.url, g.config.state_dir).attempts()
    assert "over_reservation" not in row["reason"]
