"""`tokenomy bench` against the real llama.cpp server: the summary's keys, sane latencies, no errors, and output
token counts that agree with the engine's own (its perf log, since llama-cpp-python streams no usage)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import LlamaServer

pytestmark = pytest.mark.engine

NUM_REQUESTS = 16
ISL = 64
OSL = 32
# llama.cpp prints one "eval time = ... / N runs" line per completion: N decode steps after the token that the
# prompt pass itself produces, so N + 1 tokens came out.
EVAL_RUNS = re.compile(r"^llama_perf_context_print:\s+eval time = .*/\s*(\d+) runs", re.MULTILINE)
BENCH_TIMEOUT_S = 600


def run_bench(server: LlamaServer, *args: str) -> tuple[dict[str, Any], str, str]:
    """Run the real CLI in its own process, as a user would; returns the JSON summary, the server log written
    meanwhile and the bench's stderr."""
    start = server.log_path.stat().st_size
    proc = subprocess.run(
        [sys.executable, "-c", "from tokenomy.cli.main import app; app(prog_name='tokenomy')", "bench",
         "--url", server.base_url, "--model", server.model, "--json", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
    )  # fmt: skip
    with server.log_path.open("rb") as log:
        log.seek(start)
        server_log = log.read().decode(errors="replace")
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}"
    return json.loads(proc.stdout), server_log, proc.stderr


def assert_stats(stats: dict[str, float], low: float, high: float) -> None:
    assert set(stats) >= {"mean", "p50", "p90", "p99"}
    assert low < stats["p50"] <= stats["p90"] <= stats["p99"] < high, stats
    assert low < stats["mean"] < high, stats


def test_bench_closed_loop(llama_server: LlamaServer, tmp_path: Path) -> None:
    records_path = tmp_path / "requests.jsonl"
    summary, server_log, stderr = run_bench(
        llama_server,
        "--isl", str(ISL), "--osl", str(OSL), "--num-requests", str(NUM_REQUESTS), "--concurrency", "2",
        "--requests-jsonl", str(records_path),
    )  # fmt: skip

    assert summary["requests"] == {"total": NUM_REQUESTS, "completed": NUM_REQUESTS, "failed": 0}
    assert summary["errors"]["total"] == 0, summary["errors"]
    assert summary["load"] == {"kind": "concurrency", "value": 2}
    assert summary["endpoint"]["model"] == llama_server.model

    # Latencies of a 135M model on a couple of CPU cores: TTFT a prefill of ~100 tokens plus the wait behind the
    # other stream (llama-cpp-python serves one request at a time), ~0.3-3 s; ITL one decode step, ~15-30 ms.
    # The upper bounds only catch a hang: on a CPU shared with other jobs, llama.cpp's threads stall (TTFT p99
    # of 31 s was seen once with the load average at 5 on 2 cores).
    assert_stats(summary["ttft_s"], 0.001, 120.0)
    assert_stats(summary["itl_s"], 0.0005, 10.0)
    assert_stats(summary["e2e_s"], 0.01, 240.0)
    latencies = {k: summary[k] for k in ("ttft_s", "itl_s", "e2e_s")}
    assert summary["e2e_s"]["mean"] > summary["ttft_s"]["mean"], latencies
    assert summary["itl_s"]["p50"] < summary["ttft_s"]["p50"] < summary["e2e_s"]["p50"], latencies
    assert summary["throughput"]["output_tokens_per_s"] > 0

    # Output tokens: the bench's count (the server sends no usage in its stream, so the client re-tokenises the
    # streamed text) must agree with what llama.cpp says it generated.
    tokens = summary["tokens"]
    engine_counts = sorted(int(runs) + 1 for runs in EVAL_RUNS.findall(server_log))
    assert len(engine_counts) == NUM_REQUESTS, server_log[-3000:]
    assert 0 < sum(engine_counts) <= NUM_REQUESTS * OSL  # max_tokens honoured
    # The client re-tokenises sampled text: a sampled token sequence that is not the canonical tokenization of
    # its text can re-tokenise to a different count, hence the small tolerance.
    assert tokens["output"] == pytest.approx(sum(engine_counts), rel=0.05), (tokens, engine_counts)
    assert tokens["output_mismatched_requests"] == 0, tokens
    assert tokens["input"] > 0
    # Per request: one SSE chunk per generated token, or fewer where the detokenizer holds text back.
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    assert len(records) == NUM_REQUESTS
    assert all(r["error"] in (None, "") for r in records)
    assert all(0 < r["ttft_s"] <= r["e2e_s"] for r in records)
    chunks = sorted(r["chunks"] for r in records)
    assert all(c <= n for c, n in zip(chunks, engine_counts, strict=True)), (chunks, engine_counts)
    assert sum(chunks) >= 0.9 * sum(engine_counts)
    if tokens["usage_reported"] == 0:
        assert "usage" in stderr  # the bench says it counted the tokens itself


def test_bench_slo_search_one_probe(llama_server: LlamaServer) -> None:
    """`--slo` with no load given searches the highest rate; one probe at 1 req/s (sized to steady state: about a
    minute of arrivals here; no verification run) checks that the search judges a real run by the TTFT p99 of its
    measured window and reports goodput."""
    summary, _, _ = run_bench(
        llama_server,
        "--isl", str(ISL), "--osl", "8", "--slo", "ttft_p99<=3s", "--search-start", "1", "--search-probes", "1",
        "--probe-seconds", "5", "--num-requests", "20", "--verify-seconds", "0",
    )  # fmt: skip
    assert summary["errors"]["total"] == 0, summary["errors"]
    assert summary["requests"]["completed"] == summary["requests"]["total"] >= 20
    search = summary["slo_search"]
    assert [p["rate_rps"] for p in search["probes"]] == [1.0]
    probe = search["probes"][0]
    assert probe["ttft_p99"] == pytest.approx(summary["ttft_s"]["p99"])
    assert probe["ok"] <= (probe["ttft_p99"] <= 3.0)
    assert search["best_rate_rps"] == (1.0 if probe["ok"] else None)
    assert search["lowest_failing_rate_rps"] == (None if probe["ok"] else 1.0)
    assert summary["slo"]["met"] or not probe["ok"]  # a probe also fails when the server fell behind the rate
    assert 0.0 <= summary["slo_attainment"] <= 1.0
    assert summary["goodput_rps"] <= summary["throughput"]["requests_per_s"] + 1e-9
