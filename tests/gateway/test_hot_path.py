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
