"""`tokenomy bench` on the command line: DESIGN.md keys, files, economics, errors, and measure → calibrate → plan."""

from __future__ import annotations

import csv
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

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
        "--slo", "ttft_p99<=2s,tpot_p99<=50ms", "--json",
        "--requests-csv", str(csv_path), "--requests-jsonl", str(jsonl_path),
    )  # fmt: skip
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
    assert itl["ratio"] == pytest.approx(1.0, abs=0.25)  # 16 tokens at 10× speed: loose; test_bench_twin is tight
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


def test_slo_alone_searches_the_highest_rate(twin_url: str) -> None:
    res = bench(
        "--url", twin_url, "--isl", "64", "--osl", "8", "--slo", "e2e_p99<=10s", "--search-start", "10",
        "--search-max", "20", "--search-probes", "3", "--probe-seconds", "1", "--num-requests", "20", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    search = s["slo_search"]
    assert [p["rate_rps"] for p in search["probes"]] == [10, 20]  # doubles to the upper bound, all pass
    assert search["best_rate_rps"] == 20 and search["bounds_rps"] == [0.05, 20]
    assert s["rate"] == 20 and [p["rate"] for p in s["sweep"]] == [10, 20] and s["slo"]["met"] is True


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
    url = twin(model=MODEL, gpu=GPU, speedup=5.0, engine=str(twin_profile))
    res = bench(
        "--url", url, "--gpu", GPU, "--speedup", "5", "--isl", "512", "--osl", "32", "--concurrency", "4",
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
