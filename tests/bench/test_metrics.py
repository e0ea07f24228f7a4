"""Metrics math on hand-made records: intended-send-time latencies, multi-token chunks in ITL, errors, goodput."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenomy.bench.client import RequestRecord
from tokenomy.bench.metrics import (
    chunk_tokens,
    run_arrays,
    split_tokens,
    summarise,
    token_gaps,
)
from tokenomy.bench.search import parse_slo


def words(text: str) -> int:
    """A stand-in tokenizer: one token per word."""
    return len(text.split())


def record(
    index: int,
    intended: float,
    sent: float,
    chunks: list[tuple[float, str]],
    completion: int | None = None,
    prompt: int | None = 100,
    error: str | None = None,
) -> RequestRecord:
    rec = RequestRecord(index, intended, 100, 8, sent_s=sent)
    rec.chunk_s = [t for t, _ in chunks]
    rec.chunk_text = [x for _, x in chunks]
    rec.completion_tokens = completion if completion is not None else sum(words(x) for _, x in chunks)
    rec.prompt_tokens = prompt
    rec.error = error
    if chunks:
        rec.first_token_s, rec.end_s = rec.chunk_s[0], rec.chunk_s[-1]
    return rec


def test_split_tokens_keeps_the_total_and_one_per_chunk() -> None:
    assert split_tokens(10, [1, 1, 3]) == [2, 2, 6]
    assert sum(split_tokens(7, [0.2, 5, 1])) == 7
    assert split_tokens(2, [4, 4, 4]) == [1, 1, 1]  # fewer tokens than chunks: one each
    assert split_tokens(5, []) == []


def test_chunk_tokens_prefers_per_chunk_usage_then_one_each_then_the_client_count() -> None:
    rec = record(0, 0, 0, [(1.0, " a b"), (2.0, " c"), (3.0, " d e f")])
    rec.chunk_usage = [2, 3, 6]
    assert chunk_tokens(rec, 6, words) == [2, 1, 3]
    rec.chunk_usage = []
    assert chunk_tokens(rec, 3, words) == [1, 1, 1]  # as many chunks as tokens
    assert chunk_tokens(rec, 6, words) == [2, 1, 3]  # split by the client's count of each chunk


def test_a_k_token_chunk_adds_one_gap_and_k_minus_one_zeros() -> None:
    gaps = token_gaps([1.0, 1.5, 2.5], [1, 3, 2])
    assert sorted(gaps.tolist()) == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert gaps.size == 6 - 1  # one per token after the first
    assert gaps.mean() == pytest.approx((2.5 - 1.0) / (6 - 1))  # mean ITL = TPOT of the request


def test_latencies_count_from_the_intended_send_time() -> None:
    late = record(0, intended=1.0, sent=1.3, chunks=[(1.5, " a"), (1.6, " b"), (1.7, " c")])
    a = run_arrays([late], words)
    assert a.ttft_s[0] == pytest.approx(0.5)  # not 0.2 from the actual send
    assert a.e2e_s[0] == pytest.approx(0.7)
    assert a.tpot_s[0] == pytest.approx(0.1)
    assert a.send_lag_s[0] == pytest.approx(0.3)
    s = summarise(a)
    assert s["client"]["send_lag_s"]["max"] == pytest.approx(0.3)
    assert s["client"]["bottleneck"] is True


def test_summary_has_the_shared_keys_errors_by_kind_and_token_checks() -> None:
    recs = [
        record(0, 0.0, 0.0, [(0.1, " a"), (0.2, " b c"), (0.3, " d")]),  # 4 tokens in 3 chunks
        record(1, 0.5, 0.5, [(0.7, " a"), (0.8, " b")], completion=3),  # server says 3, client counts 2
        record(2, 1.0, 1.0, [], error="http"),
        record(3, 1.0, 1.0, [(1.1, " a")], error="stream_cut"),
    ]
    recs[2].http_status = 500
    a = run_arrays(recs, words)
    s = summarise(a, statuses=[r.http_status for r in recs])
    for key in ("ttft_s", "itl_s", "tpot_s", "e2e_s"):
        assert set(s[key]) == {"mean", "p50", "p90", "p99"}
    assert s["requests"] == {"total": 4, "completed": 2, "failed": 2}
    assert s["errors"]["total"] == 2 and s["errors"]["http"] == 1 and s["errors"]["stream_cut"] == 1
    assert s["errors"]["connect"] == 0 and s["errors"]["http_status"] == {"500": 1}
    assert s["duration_s"] == pytest.approx(0.8)  # first intended send to the last token
    assert s["throughput"]["output_tokens_per_s"] == pytest.approx((4 + 3) / 0.8)
    assert s["throughput"]["requests_per_s"] == pytest.approx(2 / 0.8)
    assert s["tokens"]["output"] == 7 and s["tokens"]["output_client_count"] == 6
    assert s["tokens"]["output_mismatched_requests"] == 1
    assert s["tokens"]["output_mismatch_fraction"] == pytest.approx(1 / 7)
    # pooled ITL: request 0 has gaps 0.1, 0.1 and one zero (its 2-token chunk); request 1's 2 chunks carry 3
    # tokens, split 1 + 2 by the client's count: gap 0.1 and one zero
    assert sorted(np.round(a.itl_s, 6).tolist()) == [0.0, 0.0, 0.1, 0.1, 0.1]
    assert "goodput_rps" not in s


def test_goodput_counts_requests_within_every_slo_and_failures_as_misses() -> None:
    recs = [
        record(0, 0.0, 0.0, [(0.1, " a"), (0.2, " b")]),  # ttft 0.1, tpot 0.1
        record(1, 0.0, 0.0, [(0.5, " a"), (0.6, " b")]),  # ttft 0.5
        record(2, 0.0, 0.0, [], error="timeout"),
    ]
    a = run_arrays(recs, words)
    s = summarise(a, parse_slo("ttft_p50<=200ms,tpot_mean<=0.2s"))
    assert s["goodput_rps"] == pytest.approx(1 / 0.6)
    assert s["slo_attainment"] == pytest.approx(1 / 3)
    # p50 over (0.1, 0.5, inf for the failure) is 0.5: the SLO is missed
    assert s["slo"]["values"]["ttft_p50"] == pytest.approx(0.5)
    assert s["slo"]["met"] is False
    assert math.isinf(summarise(a, parse_slo("ttft_mean<=1s"))["slo"]["values"]["ttft_mean"])
