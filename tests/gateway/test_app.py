"""The gateway end to end, against twins: routing, streaming, failover, breakers, bad requests, security."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.gateway.conftest import ADMIN_KEY, api_tier, chat, self_hosted, sse_events
from tokenomy.gateway.ledger import Database

SIMPLE = "What is the capital of France?"
COMPLEX = "Prove that the square root of 2 is irrational, step by step, and explain why each step holds."


def set_fail(twin_url: str, mode: str | None, after_tokens: int = 0) -> None:
    r = httpx.post(f"{twin_url}/twin/fail", json={"mode": mode, "after_tokens": after_tokens})
    assert r.status_code == 200, r.text


def ledger_rows(g) -> list[dict]:
    """Every attempt row, after a graceful stop of the gateway."""
    g.stop()
    return Database(g.config.ledger.url, g.config.state_dir).attempts()


@pytest.fixture
def three_tiers(twins, gateway):
    """small (int4 8B, simple only), large (70B, everything), api (priced like an API, everything)."""
    small, large, api = twins("small"), twins("large", "llama-3.1-70b", tp=4), twins("api")
    config = {
        "tiers": [
            self_hosted("small", small, "llama-3.1-8b", ["simple"], deployment={"precision": "int4"}),
            self_hosted("large", large, "llama-3.1-70b", ["simple", "complex"], deployment={"count": 4}),
            api_tier("api", api, ["simple", "complex"], 3.0, 15.0),
        ],
        "timeouts": {"read_s": 1.0},
        "circuit": {"failures_to_open": 2, "open_s": 0.5},
    }
    g = gateway(config)
    _, key = g.new_key("team-a")
    client = httpx.Client(base_url=g.url, headers={"authorization": f"Bearer {key}"}, timeout=10)
    yield g, client, {"small": small, "large": large, "api": api}
    client.close()


def test_auto_routes_each_class_to_its_cheapest_eligible_tier(three_tiers) -> None:
    g, client, _ = three_tiers
    prices = {t.name: t.prices for t in g.gateway.tiers}
    assert prices["small"].usd(1000, 100) < prices["large"].usd(1000, 100) < prices["api"].usd(1000, 100)
    simple = client.post("/v1/chat/completions", json=chat(SIMPLE))
    hard = client.post("/v1/chat/completions", json=chat(COMPLEX))
    assert simple.status_code == hard.status_code == 200
    assert (simple.headers["x-tokenomy-class"], simple.headers["x-tokenomy-tier"]) == ("simple", "small")
    assert (hard.headers["x-tokenomy-class"], hard.headers["x-tokenomy-tier"]) == ("complex", "large")
    assert simple.json()["model"] == "small" and hard.json()["model"] == "large"
    named = client.post("/v1/chat/completions", json=chat(COMPLEX, model="api"))
    assert named.headers["x-tokenomy-tier"] == "api"  # a named model passes through whatever the class
    rows = ledger_rows(g)
    assert [(r["request_class"], r["tier"], r["status"]) for r in rows] == [
        ("simple", "small", "ok"),
        ("complex", "large", "ok"),
        ("named", "api", "ok"),
    ]
    for r in rows:
        assert r["tokens_out"] == 16 and r["tokens_in"] > 0 and r["cost_usd"] > 0 and r["key_id"].startswith("key_")
        assert r["team"] == "team-a" and r["e2e_s"] > 0
    assert rows[0]["cost_usd"] == pytest.approx(prices["small"].usd(rows[0]["tokens_in"], 16))


def test_streaming_passes_events_through_and_records_usage(three_tiers) -> None:
    g, client, _ = three_tiers
    r = client.post("/v1/chat/completions", json=chat(SIMPLE, stream=True))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert not any("usage" in c and c["usage"] and not c["choices"] for c in chunks)  # not asked for: dropped
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert len(text.split()) >= 10
    asked = client.post("/v1/chat/completions", json=chat(SIMPLE, stream=True, stream_options={"include_usage": True}))
    usage = [json.loads(e)["usage"] for e in sse_events(asked.text)[:-1] if json.loads(e).get("usage")]
    assert usage and usage[-1]["completion_tokens"] == 16
    rows = ledger_rows(g)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(r["tokens_out"] == 16 and r["ttft_s"] is not None and 0 < r["ttft_s"] <= r["e2e_s"] for r in rows)
    assert "estimated" not in rows[0]["reason"]


def test_completions_endpoint_and_models(three_tiers) -> None:
    _, client, _ = three_tiers
    r = client.post("/v1/completions", json={"model": "auto", "prompt": "Say hi", "max_tokens": 5})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 5
    s = client.post("/v1/completions", json={"model": "auto", "prompt": "Say hi", "max_tokens": 5, "stream": True})
    assert sse_events(s.text)[-1] == "[DONE]"
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["auto", "small", "large", "api"]


@pytest.mark.parametrize("mode", ["http500", "refuse"])
@pytest.mark.parametrize("stream", [False, True])
def test_fails_over_before_the_first_byte(three_tiers, mode: str, stream: bool) -> None:
    g, client, twin_urls = three_tiers
    set_fail(twin_urls["small"], mode)
    r = client.post("/v1/chat/completions", json=chat(SIMPLE, stream=stream))
    assert r.status_code == 200 and r.headers["x-tokenomy-tier"] == "large"
    if stream:
        assert sse_events(r.text)[-1] == "[DONE]"
    rows = ledger_rows(g)
    assert [(r["attempt"], r["tier"], r["status"]) for r in rows] == [
        (0, "small", "upstream_error"),
        (1, "large", "ok"),
    ]
    assert rows[0]["http_status"] == (500 if mode == "http500" else 503)
    assert "failover: small" in rows[1]["reason"]
    assert rows[0]["request_id"] == rows[1]["request_id"]


def test_fails_over_on_connect_error(twins, gateway) -> None:
    live = twins("live")
    config = {
        "tiers": [
            api_tier("dead", "http://127.0.0.1:9", ["simple"], 0.1, 0.1),  # nothing listens on port 9
            api_tier("live", live, ["simple"], 1.0, 1.0),
        ]
    }
    g = gateway(config)
    _, key = g.new_key()
    r = httpx.post(f"{g.url}/v1/chat/completions", json=chat(stream=True), headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.headers["x-tokenomy-tier"] == "live"
    rows = ledger_rows(g)
    assert [(r["tier"], r["status"]) for r in rows] == [("dead", "upstream_error"), ("live", "ok")]
    assert "ConnectError" in rows[0]["reason"]


@pytest.mark.parametrize("mode", ["cut", "stall"])
def test_failure_after_the_first_byte_ends_the_stream_with_an_error_event(three_tiers, mode: str) -> None:
    g, client, twin_urls = three_tiers
    set_fail(twin_urls["small"], mode, after_tokens=3)
    r = client.post("/v1/chat/completions", json=chat(SIMPLE, stream=True))
    assert r.status_code == 200 and r.headers["x-tokenomy-tier"] == "small"
    events = sse_events(r.text)
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["type"] == "upstream_error" and "small" in last["error"]["message"]
    content = [json.loads(e) for e in events[:-1]]
    assert 1 <= sum(1 for c in content if c["choices"] and c["choices"][0]["delta"].get("content")) <= 3
    rows = ledger_rows(g)
    assert [(r["tier"], r["status"]) for r in rows] == [("small", "stream_error")]
    assert rows[0]["tokens_out"] >= 1  # what was streamed is still accounted


def test_non_streaming_cut_fails_over(three_tiers) -> None:
    g, client, twin_urls = three_tiers
    set_fail(twin_urls["small"], "cut")
    r = client.post("/v1/chat/completions", json=chat(SIMPLE))
    assert r.status_code == 200 and r.headers["x-tokenomy-tier"] == "large"
    assert [row["status"] for row in ledger_rows(g)] == ["upstream_error", "ok"]


def test_circuit_breaker_opens_then_half_open_probe_closes_it(three_tiers) -> None:
    g, client, twin_urls = three_tiers
    breaker = next(t for t in g.gateway.tiers if t.name == "small").upstream.breaker
    set_fail(twin_urls["small"], "http500")
    _, other_key = g.new_key("team-b")  # failures from two keys (distinct_keys_to_open = 2)
    for headers in ({}, {"authorization": f"Bearer {other_key}"}):  # failures_to_open = 2
        r = client.post("/v1/chat/completions", json=chat(), headers=headers)
        assert r.headers["x-tokenomy-tier"] == "large"
    assert breaker.state == "open"
    assert client.post("/v1/chat/completions", json=chat()).headers["x-tokenomy-tier"] == "large"  # skipped
    time.sleep(0.6)  # open_s = 0.5: the next request is a probe; it fails, so the breaker re-opens
    assert client.post("/v1/chat/completions", json=chat()).headers["x-tokenomy-tier"] == "large"
    assert breaker.state == "open"
    set_fail(twin_urls["small"], None)
    time.sleep(0.6)
    assert client.post("/v1/chat/completions", json=chat()).headers["x-tokenomy-tier"] == "small"  # probe succeeds
    assert breaker.state == "closed"
    health = client.get("/healthz").json()
    assert health["tiers"]["small"]["breaker"] == "closed"
    rows = ledger_rows(g)
    small = [r["status"] for r in rows if r["tier"] == "small"]
    assert small == ["upstream_error", "upstream_error", "upstream_error", "ok"]  # nothing sent while open
    third = [r for r in rows if r["request_id"] == rows[4]["request_id"]]
    assert [(r["tier"], r["status"]) for r in third] == [("large", "ok")]
    assert "skip: small: circuit open" in third[0]["reason"]


def test_every_tier_down_gives_502_with_the_reasons(three_tiers) -> None:
    _, client, twin_urls = three_tiers
    for url in twin_urls.values():
        set_fail(url, "http500")
    r = client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert "small: HTTP 500" in message and "large: HTTP 500" in message and "api: HTTP 500" in message


def test_bad_requests_get_4xx_and_the_gateway_keeps_serving(three_tiers) -> None:
    g, client, _ = three_tiers
    post = client.post
    assert post("/v1/chat/completions", content=b"{not json").status_code == 400
    assert post("/v1/chat/completions", json=[1, 2]).status_code == 400
    assert post("/v1/chat/completions", json={"model": "auto", "messages": "hi"}).status_code == 400
    assert post("/v1/chat/completions", json={"model": "auto", "messages": []}).status_code == 400
    assert post("/v1/completions", json={"model": "auto"}).status_code == 400
    assert post("/v1/chat/completions", json=chat(max_tokens=0)).status_code == 400
    assert post("/v1/chat/completions", json=chat(max_tokens="many")).status_code == 400
    too_many = post("/v1/chat/completions", json=chat(max_tokens=100_000))
    assert too_many.status_code == 400 and "limit of 8192" in too_many.json()["error"]["message"]
    unknown = post("/v1/chat/completions", json=chat(model="smal"))
    assert unknown.status_code == 404 and "Did you mean: small" in unknown.json()["error"]["message"]
    huge = post("/v1/chat/completions", json=chat("x" * 1_100_000))
    assert huge.status_code == 413
    nokey = httpx.post(f"{g.url}/v1/chat/completions", json=chat())
    badkey = httpx.post(f"{g.url}/v1/chat/completions", json=chat(), headers={"authorization": "Bearer tk-nope"})
    assert nokey.status_code == badkey.status_code == 401
    upstream_says_no = post("/v1/chat/completions", json={"model": "small", "messages": [{"content": "no role"}]})
    assert upstream_says_no.status_code == 400  # the twin's own 400 is passed through
    assert "role" in upstream_says_no.json()["error"]["message"]
    assert post("/v1/chat/completions", json=chat()).status_code == 200
    assert g.thread.is_alive()


def test_clients_cannot_choose_upstream_urls_and_upstream_keys_stay_secret(twins, gateway, monkeypatch) -> None:
    api = twins("api")
    monkeypatch.setenv("UPSTREAM_SECRET_KEY", "sk-upstream-secret-123")
    g = gateway({"tiers": [api_tier("api", api, ["simple", "complex"], 1.0, 2.0, api_key_env="UPSTREAM_SECRET_KEY")]})
    _, key = g.new_key()
    h = {"authorization": f"Bearer {key}"}
    for field in ("base_url", "api_base", "url"):  # fields outside the allow-list are refused, never forwarded
        refused = httpx.post(f"{g.url}/v1/chat/completions", json=chat(**{field: "http://evil.example"}), headers=h)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == field
    r = httpx.post(f"{g.url}/v1/chat/completions", json=chat(), headers=h)
    assert r.status_code == 200 and r.headers["x-tokenomy-tier"] == "api"
    seen = [httpx.get(f"{g.url}{p}", headers=h).text for p in ("/v1/models", "/healthz", "/metrics")]
    seen.append(httpx.get(f"{g.url}/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}).text)
    seen.append(r.text + str(dict(r.headers)))
    assert not any("sk-upstream-secret-123" in s for s in seen)
    assert "sk-upstream-secret-123" not in repr(g.gateway.tiers[0].upstream)
    rows = ledger_rows(g)
    assert "sk-upstream-secret-123" not in json.dumps(rows)


def test_admin_api_needs_the_admin_key(three_tiers) -> None:
    g, client, _ = three_tiers
    assert httpx.get(f"{g.url}/admin/keys").status_code == 401
    assert httpx.get(f"{g.url}/admin/keys", headers={"authorization": "Bearer wrong"}).status_code == 401
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    listing = httpx.get(f"{g.url}/admin/keys", headers=admin).json()["keys"]
    assert len(listing) == 1 and "key" not in listing[0] and "key_hash" not in listing[0]
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    spend = httpx.get(f"{g.url}/admin/spend", headers=admin).json()["spend"]
    assert spend == [] or spend[0]["team"] == "team-a"  # rows land in the ledger within its flush interval
    key_id = listing[0]["key_id"]
    assert httpx.delete(f"{g.url}/admin/keys/{key_id}", headers=admin).status_code == 200
    assert client.post("/v1/chat/completions", json=chat()).status_code == 401
