"""The request path's helpers: request ids, headers read in one pass, JSON in and out."""

from __future__ import annotations

import json
import re

import pytest

from tokenomy.gateway.app import BadRequest, Gateway, RequestIds, bearer_token, hot_headers, json_bytes


def test_request_ids_look_like_token_hex_and_do_not_repeat() -> None:
    ids = RequestIds(batch=4)
    drawn = [ids() for _ in range(50)]  # several refills
    assert all(re.fullmatch(r"req_[0-9a-f]{16}", i) for i in drawn)
    assert len(set(drawn)) == len(drawn)


def test_hot_headers_reads_the_three_headers_and_leaves_the_rest() -> None:
    scope = {
        "headers": [
            (b"host", b"x"),
            (b"authorization", b"Bearer tk-1"),
            (b"content-length", b"12"),
            (b"x-tokenomy-class", b"complex"),
        ]
    }
    assert hot_headers(scope) == ("Bearer tk-1", "12", "complex")
    assert hot_headers({"headers": [(b"host", b"x")]}) == ("", None, None)
    assert bearer_token("bearer  tk-1 ") == "tk-1" and bearer_token("Basic abc") == "" and bearer_token("") == ""


@pytest.mark.parametrize(
    "value",
    [
        {"model": "m", "messages": [{"role": "user", "content": "héllo 你好"}], "temperature": 0.7, "n": 2},
        {"seed": 2**70, "x": [1, 2.5, None, True]},  # past 64 bits: the standard library's turn
        {"text": "\ud800 lone surrogate"},
    ],
)
def test_json_bytes_is_compact_json_of_the_same_value(value: dict) -> None:
    out = json_bytes(value)
    assert json.loads(out) == value
    assert b", " not in out and b'": ' not in out


@pytest.mark.parametrize("raw", [b'{"max_tokens": 1e999}', b'{"temperature": -1e400}', b'{"x": NaN}', b"[1]"])
def test_bodies_that_cannot_be_forwarded_as_json_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        Gateway.parse_body(raw)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "m", "messages": [{"role": "user", "content": "h\\u00e9llo"}], "temperature": 0.7}',
        b'{"seed": 1180591620717411303424, "n": 2}',  # 2**70: orjson would read a float
        b'{"seed": -9223372036854775809}',  # just below int64: orjson would read a float
        b'{"seed": 18446744073709551615, "x": 1e-400}',  # uint64 max, and a float that underflows to 0.0
        b'{"text": "\\ud800 lone surrogate"}',  # orjson refuses it, the standard library accepts it
        b'{"a": 1, "a": 2, "b": [1, 2.5, null, true, {"c": "d"}]}',  # a repeated key: the last one wins in both
    ],
)
def test_parse_body_gives_the_standard_librarys_value_and_types(raw: bytes) -> None:
    expected = json.loads(raw)
    got = Gateway.parse_body(raw)
    assert got == expected
    assert json.dumps(got) == json.dumps(expected)  # same types too (an int stays an int)


def test_deferred_metrics_show_every_update_at_the_scrape() -> None:
    from prometheus_client import generate_latest

    from tokenomy.gateway.metrics import FLUSH_EVERY, GatewayMetrics

    class Ledger:
        def pending(self) -> int:
            return 0

    class FakeGateway:
        tiers: list = []
        ledger = Ledger()

    m = GatewayMetrics(FakeGateway())
    m.child(m.attempts, "t", "ok").inc()
    m.child(m.attempts, "t", "ok").inc()
    m.child(m.cost, "t").inc(0.25)
    for _ in range(FLUSH_EVERY + 3):  # past one flush of held observations, and some held after it
        m.child(m.ttft, "t").observe(0.02)
    m.admission.observe(0.001)
    text = generate_latest(m.registry).decode()
    assert 'tokenomy_gateway_attempts_total{status="ok",tier="t"} 2.0' in text
    assert 'tokenomy_gateway_cost_usd_total{tier="t"} 0.25' in text
    assert f'tokenomy_gateway_ttft_seconds_count{{tier="t"}} {FLUSH_EVERY + 3}.0' in text
    assert "tokenomy_gateway_admission_seconds_count 1.0" in text
    m.child(m.attempts, "t", "ok").inc()
    assert m.registry.get_sample_value("tokenomy_gateway_attempts_total", {"tier": "t", "status": "ok"}) == 3.0
