"""`tokenomy bench` on the command line: docs/design.md keys, files, economics, errors, measure → calibrate → plan."""

from __future__ import annotations

import csv
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenomy.bench.search import MIN_WINDOW_ARRIVALS
from tokenomy.catalog.profiles import load_profile
from tokenomy.cli.main import app
from tokenomy.twin.server import running_twin

runner = CliRunner()
MODEL, GPU, SPEEDUP = "llama-3.1-8b", "H100-SXM", "10"


def bench(*args: str, progress: bool = False):
    return runner.invoke(app, ["bench", "--progress" if progress else "--no-progress", *args])


@pytest.fixture(scope="module")
def twin_url() -> Iterator[str]:
    with running_twin(MODEL, GPU, speedup=float(SPEEDUP), served_model_name="served-8b") as url:
        yield url


def test_json_summary_files_economics_and_prediction(twin_url: str, tmp_path: Path) -> None:
    csv_path, jsonl_path = tmp_path / "requests.csv", tmp_path / "requests.jsonl"
    res = bench(
        "--url", twin_url, "--catalog-model", MODEL, "--gpu", GPU, "--speedup", SPEEDUP,
        "--isl", "128", "--osl", "16", "--rate", "20", "--num-requests", "30", "--warmup", "2",
        "--slo", "ttft_p99<=20s,tpot_p99<=500ms", "--json",
        "--requests-csv", str(csv_path), "--requests-jsonl", str(jsonl_path),
    )  # fmt: skip
    # the SLO is generous and the ITL check one-sided-loose: at 10× speed a busy host's pause of a few ms shows 10× in
    # the twin's timings (the tight comparison is test_bench_twin's)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    for key in ("ttft_s", "itl_s", "tpot_s", "e2e_s"):
        assert set(s[key]) >= {"mean", "p50", "p90", "p99"}
    assert set(s["throughput"]) >= {"output_tokens_per_s", "requests_per_s"}
    assert set(s["usd_per_mtok"]) >= {"input", "output"} and s["usd_per_mtok"]["output"] > s["usd_per_mtok"]["input"]
    assert s["goodput_rps"] > 0 and s["slo"]["met"] is True
    assert s["endpoint"]["model"] == "served-8b"  # found in /v1/models
    assert s["deployment"]["model"] == MODEL and s["deployment"]["gpu"] == GPU
    assert s["load"] == {"kind": "rate", "value": 20.0, "burstiness": 1.0}
    assert s["warmup"] == {"requests": 2, "errors": 0} and s["requests"]["total"] == 30
    assert set(s["errors"]) >= {"total", "connect", "http", "timeout", "stream_cut", "bad_chunk"}
    assert 0.2 < s["utilisation"]["mbu"] < 1.0 and 0 < s["utilisation"]["mfu"] < 1.0
    itl = next(r for r in s["prediction"]["comparison"] if r["metric"] == "itl_s.mean")
    assert 0.75 < itl["ratio"] < 2.0  # 16 tokens at 10× speed: a loaded host only makes them later
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30 and all(r["error"] == "" for r in rows)
    assert all(float(r["ttft_s"]) >= float(r["send_lag_s"]) for r in rows)
    lines = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    assert len(lines) == 30 and {ln["output_tokens"] for ln in lines} == {16}


def test_sweep_with_html_and_a_table_on_the_terminal(twin_url: str, tmp_path: Path) -> None:
    html = tmp_path / "bench.html"
    res = bench(
        "--url", twin_url, "--model", "served-8b", "--isl", "64", "--osl", "8", "--sweep-rates", "10,40",
        "--num-requests", "20", "--usd-per-hour", "2.5", "--html", str(html), progress=True,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "TTFT" in res.stdout and "rate 10 req/s" in res.stdout and "rate 40 req/s" in res.stdout
    assert "$/Mtok: input $" in res.stdout
    assert "40 req/s" in res.stderr and "20/20" in res.stderr  # the progress display: one bar per rate
    page = html.read_text()
    assert 'id="latency-throughput"' in page and 'id="latency-cdf"' in page
    assert "prediction-vs-measurement" not in page  # no catalogue model and GPU: nothing predicted


def test_slo_alone_searches_the_highest_rate(twin_url: str, tmp_path: Path) -> None:
    html = tmp_path / "search.html"
    res = bench(
        "--url", twin_url, "--isl", "64", "--osl", "8", "--slo", "e2e_p99<=10s", "--search-start", "20",
        "--search-max", "40", "--search-probes", "3", "--probe-seconds", "1", "--verify-seconds", "2",
        "--num-requests", "10", "--json", "--html", str(html), "--requests-csv", str(tmp_path / "r.csv"),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    search = s["slo_search"]
    assert [p["rate_rps"] for p in search["probes"]] == [20, 40]  # doubles to the upper bound, all pass
    assert search["best_rate_rps"] == 40 and search["bounds_rps"] == [0.05, 40]
    for p in search["probes"]:  # probes size themselves to steady state: not capped by --num-requests
        assert p["ok"] and p["reasons"] == [] and p["measured_requests"] >= MIN_WINDOW_ARRIVALS > 10
        assert p["served_fraction"] >= 0.95
    v = search["verification"]
    assert v["rate_rps"] == 40 and v["served_rps"] > 0 and v["goodput_rps"] > 0
    assert s["rate"] == 40 and [p["rate"] for p in s["sweep"]] == [20, 40] and s["slo"]["met"] is True
    assert s["requests"]["total"] == v["measured_requests"]  # the headline is the verification's window
    assert "id='slo-search'" in html.read_text()
    with (tmp_path / "r.csv").open() as fh:
        runs = [r["run"] for r in csv.DictReader(fh)]
    assert set(runs) == {"20", "40", "verify 40"}  # every request of every probe, and the verification's
    assert runs.count("verify 40") > v["measured_requests"]  # its warm-up requests too


def test_search_output_says_why_a_probe_failed_and_what_the_verification_served(twin_url: str) -> None:
    res = bench(
        "--url", twin_url, "--isl", "64", "--osl", "8", "--slo", "ttft_p99<=1us", "--search-start", "40",
        "--search-min", "20", "--search-probes", "2", "--probe-seconds", "1", "--verify-seconds", "2",
    )  # fmt: skip
    out = " ".join(res.stdout.split())
    assert "SLO search: highest rate meeting the SLO none down to 20 req/s" in out
    assert "probe 40 req/s: FAIL (SLO missed: ttft_p99" in out and "> 0.001 ms" in out
    assert "verification" not in out  # nothing found, nothing to verify


def test_no_request_succeeding_exits_non_zero_with_the_status_and_the_servers_message(twin: Callable[..., str]) -> None:
    url = twin(model=MODEL, gpu=GPU, speedup=10.0, fail="http500")
    res = bench("--url", url, "--model", MODEL, "--isl", "16", "--osl", "4", "--num-requests", "3")
    assert res.exit_code == 1, res.output
    err = " ".join(res.stderr.split())
    assert "no request succeeded (3 sent): 3× HTTP 500: twin: internal error (fault injection: http500)" in err
    assert "Traceback" not in res.output
    assert "requests: 0 completed of 3" in res.stdout  # the results are still shown (and written) first


def test_max_error_rate_fails_a_run_with_more_errors_than_allowed(twin: Callable[..., str]) -> None:
    url = twin(model=MODEL, gpu=GPU, speedup=10.0, fail="refuse")
    res = bench("--url", url, "--model", MODEL, "--num-requests", "2", "--max-error-rate", "0.5", "--json")
    assert res.exit_code == 1 and "HTTP 503: twin: refusing requests" in " ".join(res.stderr.split())
    s = json.loads(res.stdout)
    assert s["errors"]["messages"] == [
        {"kind": "http", "http_status": 503, "message": "twin: refusing requests (fault injection: refuse)", "count": 2}
    ]
    res = bench("--url", "http://127.0.0.1:9", "--model", "m", "--max-error-rate", "1.5")
    assert res.exit_code == 2 and "--max-error-rate must be a share between 0 and 1" in res.output


def test_unreachable_url_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        res = bench("--url", f"http://127.0.0.1:{port}", "--model", "m", "--num-requests", "2")
    assert res.exit_code == 2
    assert "cannot reach http://127.0.0.1" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slo", "ttft_p99<=2s,tpot_p99<=fast"], "tpot_p99<=fast"),
        (["--slo", "ttft_p99<=2hours"], "unit 'hours'"),
        (["--gpu", "H100-SXN"], "Did you mean"),
        (["--endpoint", "embeddings"], "chat or completions"),
        (["--api-key-env", "TOKENOMY_TEST_NO_SUCH_VAR"], "TOKENOMY_TEST_NO_SUCH_VAR is not set"),
        (["--rate", "1", "--concurrency", "2"], "at most one of rate, concurrency"),
        (["--sweep-rates", "1,x"], "--sweep-rates"),
        (["--catalog-model", "llama-9"], "unknown model"),
        (["--timeout", "0"], "--timeout must be positive"),
        (["--slo", "ttft_p99<=1s", "--search-min", "5", "--search-max", "1"], "need 0 < min <= max"),
        (["--slo", "ttft_p99<=1s", "--probe-seconds", "0"], "--probe-seconds must be positive"),
        (["--gpu", "my-gpu", "--accelerators", "/nonexistent/acc.yaml"], "accelerator file not found"),
    ],
)
def test_bad_options_say_what_is_wrong(args: list[str], message: str) -> None:
    res = bench("--url", "http://127.0.0.1:9", "--model", "m", *args)
    assert res.exit_code == 2
    assert message in " ".join(res.output.split()), res.output


def test_measure_calibrate_plan_recovers_the_twins_step_overhead(twin: Callable[..., str], tmp_path: Path) -> None:
    """A twin whose engine takes 6 ms per step is benchmarked; calibrating on those measurements finds ~6 ms
    (from the vLLM profile's ~2 ms), and `plan` with the fitted profile predicts the twin's ITL.

    The fit uses the median ITL: TTFT rows also carry the twin's HTTP overhead, which the cost model does not
    model (see test_bench_twin.TWIN_TTFT_OVERHEAD_MAX_S), and a late first token shortens the mean gap."""
    twin_profile = tmp_path / "twin.json"
    twin_profile.write_text(json.dumps(load_profile("vllm").with_values(step_overhead_s=0.006).to_dict()))
    measured = tmp_path / "measured.csv"
    # real time (speedup 1): a 6 ms step is 6 ms of wall time, so a busy machine's scheduling jitter (a few tenths
    # of a ms per step) stays well inside the tolerance, where at 5× it was a fifth of a 1.2 ms step
    url = twin(model=MODEL, gpu=GPU, speedup=1.0, engine=str(twin_profile))
    res = bench(
        "--url", url, "--gpu", GPU, "--speedup", "1", "--isl", "512", "--osl", "32", "--concurrency", "4",
        "--num-requests", "40", "--measurements-csv", str(measured),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    with measured.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["load_kind"] for r in rows} == {"concurrency"} and {r["engine"] for r in rows} == {"vllm"}
    itl_rows = tmp_path / "itl.csv"
    with itl_rows.open("w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows(r for r in rows if r["metric"] == "median_itl")
    fitted = tmp_path / "fitted.json"
    res = runner.invoke(app, ["calibrate", str(itl_rows), "--engine", "vllm", "--output", str(fitted)])
    assert res.exit_code == 0, res.output
    assert json.loads(fitted.read_text())["step_overhead_s"] == pytest.approx(0.006, rel=0.15)

    def plan_itl(engine: str) -> float:
        res = runner.invoke(app, ["plan", "--model", MODEL, "--gpu", GPU, "--gpus", "1", "--engine", engine, "--json"])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["itl_s"]

    assert plan_itl(str(fitted)) == pytest.approx(plan_itl(str(twin_profile)), rel=0.05)
    assert plan_itl("vllm") < 0.8 * plan_itl(str(fitted))  # the uncalibrated profile was well off
    res = runner.invoke(app, ["validate", str(measured), "--engine-profile", str(fitted), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metrics"]["median_itl"]["median_ape"] < 0.1


ACCELERATOR_YAML = """
- id: my-gpu
  name: an H100 by another name
  vendor: test
  memory_gb: 80
  memory_bandwidth_gb_s: 3350
  dense_tflops: {bf16: 989.4, fp16: 989.4, fp8: 1978.9}
  interconnect_gb_s: 450
  tdp_w: 700
  usd_per_hour: {on_demand: 2.0}
"""


@pytest.fixture
def own_accelerator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user accelerators file with 'my-gpu'; the process's accelerator table is restored afterwards."""
    from tokenomy.catalog import accelerators

    path = tmp_path / "accelerators.yaml"
    path.write_text(ACCELERATOR_YAML)
    monkeypatch.setenv(accelerators.USER_FILE_ENV, "")  # restored (unset) at teardown
    accelerators._catalogue.cache_clear()
    yield path
    accelerators._catalogue.cache_clear()


def test_bench_and_calibrate_take_an_accelerators_file(
    twin: Callable[..., str], own_accelerator: Path, tmp_path: Path
) -> None:
    url = twin(model=MODEL, gpu=GPU, speedup=5.0)
    rows = tmp_path / "rows.csv"
    res = bench(
        "--url", url, "--model", MODEL, "--gpu", "my-gpu", "--accelerators", str(own_accelerator), "--speedup", "5",
        "--isl", "256", "--osl", "16", "--concurrency", "2", "--num-requests", "8", "--measurements-csv", str(rows),
        "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["deployment"]["gpu"] == "my-gpu" and "my-gpu" in s["usd_per_mtok"]["price_source"]
    res = runner.invoke(app, ["calibrate", str(rows), "--engine", "vllm"])  # the loop without the file
    assert res.exit_code == 2
    err = " ".join(res.output.split())
    assert "no measurement rows the cost model can predict" in err and "unknown accelerator(s) 'my-gpu'" in err
    assert "--accelerators FILE" in err
    res = runner.invoke(app, ["calibrate", str(rows), "--engine", "vllm", "--accelerators", str(own_accelerator)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["step_overhead_s"] >= 0


def test_requests_csv_counts_output_tokens_itself_when_the_server_sends_no_usage() -> None:
    from tokenomy.bench.client import RequestRecord
    from tokenomy.bench.records import record_row

    rec = RequestRecord(0, 0.0, 10, 3, sent_s=0.0, chunk_s=[0.5, 0.7, 0.9], chunk_text=["one", " two", " three"])
    rec.first_token_s, rec.end_s, rec.finish_reason = 0.5, 0.9, "length"
    row = record_row("main", rec)
    assert rec.completion_tokens is None and row["output_tokens"] == row["output_tokens_client"] == 3
    assert row["tpot_s"] == pytest.approx((0.9 - 0.5) / 2)
