"""`tokenomy bench --server-metrics`: the twin's Prometheus series scraped around a real bench run."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tokenomy.bench.server_metrics import server_figures, server_metrics_url
from tokenomy.cli.main import app
from tokenomy.twin.server import running_twin
from tokenomy.watch.scrape import Reading

runner = CliRunner()
MODEL, GPU, SPEEDUP = "llama-3.1-8b", "H100-SXM", "5"
N = 24
# The server's TTFT runs from the request's arrival in the twin to its first token; the client's adds HTTP, the
# event loop and send lag (client and server share this process), a few ms; 1024-token prompts at 5x keep the
# prefill (~5 ms wall) the larger part. Generous on a loaded 2-core machine (measured: client/server ≈ 1.3).
TTFT_FACTOR = 5.0


def bench(*args: str) -> object:
    return runner.invoke(app, ["bench", "--no-progress", "--model", MODEL, *args])


@pytest.fixture(scope="module")
def twin_url() -> Iterator[str]:
    with running_twin(MODEL, GPU, speedup=float(SPEEDUP)) as url:
        yield url


def test_server_section_counts_the_runs_requests_and_its_ttft_is_near_the_clients(twin_url: str) -> None:
    res = bench(
        "--url", twin_url + "/v1", "--isl", "1024", "--osl", "32", "--rate", "20", "--num-requests", str(N),
        "--warmup", "3", "--server-metrics", "auto", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    server = s["server"]
    assert server["url"] == twin_url + "/metrics" and server["dialect"] == "vllm"
    assert s["requests"]["completed"] == N
    assert server["requests"] == N  # the warm-up's 3 finished before the first scrape
    client_ttft_s = s["ttft_s"]["mean"]
    assert client_ttft_s / TTFT_FACTOR < server["ttft_s_mean"] <= client_ttft_s * 1.05
    assert server["itl_s_mean"] == pytest.approx(s["itl_s"]["mean"], rel=0.5)
    # a short run at 20x: a scrape may or may not catch a request in flight; the means lie under the peaks
    assert 0 <= server["running_mean"] <= server["running_peak"]
    assert 0 <= server["waiting_mean"] <= server["waiting_peak"]
    assert 0 <= server["kv_usage_mean"] <= server["kv_usage_peak"] <= 1
    assert server["scrapes"] >= 2 and server["window_s"] > 0


def test_the_table_shows_the_servers_lines(twin_url: str) -> None:
    res = bench("--url", twin_url, "--isl", "64", "--osl", "8", "--concurrency", "4", "--num-requests", "8",
                "--server-metrics", twin_url + "/metrics")  # fmt: skip
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "server (" in text and "8 requests finished" in text and "KV usage mean" in text


def test_a_closed_port_is_one_warning_and_a_normal_summary(twin_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        res = bench("--url", twin_url, "--isl", "64", "--osl", "8", "--concurrency", "2", "--num-requests", "4",
                    "--server-metrics", f"http://127.0.0.1:{port}/metrics", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if "server metrics not read" in ln]
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0]
    s = json.loads(res.stdout)
    assert "server" not in s and s["requests"]["completed"] == 4


def test_a_page_that_is_not_metrics_is_a_warning(twin_url: str) -> None:
    res = bench("--url", twin_url, "--isl", "64", "--osl", "8", "--concurrency", "2", "--num-requests", "4",
                "--server-metrics", twin_url + "/v1/models", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "server metrics not read" in res.stderr and "server" not in json.loads(res.stdout)


def test_a_bad_server_metrics_value_names_the_option() -> None:
    res = bench("--url", "http://127.0.0.1:9", "--server-metrics", "localhost:8000")
    assert res.exit_code == 2 and "--server-metrics" in " ".join(res.output.split())


def test_auto_is_the_base_url_without_v1() -> None:
    assert server_metrics_url("auto", "http://h:8000/v1") == "http://h:8000/metrics"
    assert server_metrics_url("http://m:9/metrics", "http://h:8000/v1") == "http://m:9/metrics"


def test_figures_are_deltas_and_gauges_are_time_weighted() -> None:
    def reading(t: float, requests: float, ttft_sum: float, waiting: float) -> Reading:
        values = {"requests": requests, "ttft_sum": ttft_sum, "ttft_count": requests, "waiting": waiting}
        return Reading(t, "vllm", values)

    f = server_figures("u", [reading(0, 10, 5.0, 0), reading(1, 12, 5.4, 4), reading(3, 20, 7.0, 0)])
    assert f.requests == 10 and f.ttft_s_mean == pytest.approx(0.2)  # (7.0 − 5.0) / (20 − 10)
    assert f.waiting_mean == pytest.approx((1 * 2 + 2 * 2) / 3) and f.waiting_peak == 4  # trapezoids over 3 s
    assert f.kv_usage_mean is None and f.itl_s_mean is None
