"""Economics of a measured run: $/Mtok split, catalogue prices, MBU/MFU, and bench results as measurement rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tokenomy.bench.client import RequestRecord
from tokenomy.bench.economics import (
    Price,
    achieved_utilisation,
    deployment_workload,
    endpoint_price,
    prefill_share,
    usd_per_mtok,
)
from tokenomy.bench.measurements import append_measurements, measurement_rows
from tokenomy.bench.metrics import run_arrays
from tokenomy.calibrate.measurements import COLUMNS, read_measurements
from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.errors import CatalogError
from tokenomy.costmodel.resolve import DeploymentSpec, resolve
from tokenomy.sim.workload import Workload


def test_usd_per_mtok_splits_the_run_cost_by_prefill_share() -> None:
    u = usd_per_mtok(Price(36.0, "test"), duration_s=100.0, input_tokens=500_000, output_tokens=250_000, share=0.2)
    assert u["usd"] == pytest.approx(1.0)
    assert u["input"] == pytest.approx(0.2 / 0.5)
    assert u["output"] == pytest.approx(0.8 / 0.25)
    assert u["blended"] == pytest.approx(1 / 0.75)


def test_price_comes_from_the_option_or_the_catalogue() -> None:
    per_gpu = load_accelerator("H100-SXM").usd_per_gpu_hour("on_demand")
    assert endpoint_price("H100-SXM", 8, None).usd_per_hour == pytest.approx(8 * per_gpu)
    assert endpoint_price("H100-SXM", 8, 3.5).usd_per_hour == 3.5
    assert endpoint_price(None, 1, None) is None
    with pytest.raises(CatalogError, match="Did you mean"):
        endpoint_price("H100-SMX", 1, None)


def one_request(ttft_s: float, itl_s: float, prompt: int, output: int, sent_s: float = 0.0) -> RequestRecord:
    rec = RequestRecord(0, 0.0, prompt, output, sent_s=sent_s)
    rec.chunk_s = [sent_s + ttft_s + i * itl_s for i in range(output)]
    rec.chunk_text = [" x"] * output
    rec.prompt_tokens, rec.completion_tokens = prompt, output
    rec.first_token_s, rec.end_s = rec.chunk_s[0], rec.chunk_s[-1]
    return rec


def test_prefill_share_is_time_before_the_first_token() -> None:
    a = run_arrays([one_request(0.5, 0.01, 100, 151)], lambda t: len(t.split()))
    assert prefill_share(a) == pytest.approx(0.5 / 2.0)


@pytest.mark.parametrize("speedup", [1.0, 10.0])
def test_mbu_and_mfu_against_weights_read_and_two_flops_per_parameter(speedup: float) -> None:
    d = resolve(DeploymentSpec(model="llama-3.1-8b", gpu="H100-SXM", tp=1, precision="bf16")).deployment
    # one stream: 1,000 output tokens 10 ms apart (in deployment time), after a 100 ms prefill
    a = run_arrays([one_request(0.1 / speedup, 0.01 / speedup, 1000, 1000)], lambda t: len(t.split()))
    duration = float(a.end_s[0] - a.intended_s[0]) * speedup
    u = achieved_utilisation(d, a, duration, speedup, replicas=1)
    kv = d.kv_bytes_per_token() * 1500  # mean context: prompt + half the output
    expected_mbu = (d.weight_bytes + kv) / 0.01 / d.gpu.bandwidth_bytes_per_s
    assert u["mbu"] == pytest.approx(expected_mbu, rel=0.1)  # weight bytes include the unread embedding
    assert u["mean_decode_batch"] == pytest.approx(9.99 / 10.09, rel=1e-3)
    flops = 2 * d.params.active * 2000
    assert u["mfu"] == pytest.approx(flops / duration / d.gpu.flops_per_s("bf16"), rel=0.15)


def test_deployment_workload_scales_arrivals_and_splits_replicas() -> None:
    w = Workload(np.arange(6, dtype=float), np.full(6, 10), np.full(6, 5))
    one = deployment_workload(w, speedup=10.0, replicas=2)
    assert one.arrival_s.tolist() == [0.0, 20.0, 40.0]
    w.concurrency = 8
    assert deployment_workload(w, 1.0, 2).concurrency == 4


def bench_like_summary(speedup: float) -> dict:
    stats = {"mean": 0.02, "p50": 0.018, "p90": 0.03, "p99": 0.05}
    return {
        "run_id": "bench-1",
        "endpoint": {"url": "http://127.0.0.1:9/v1"},
        "speedup": speedup,
        "workload": {"isl": "256", "osl": "64", "dataset": ""},
        "deployment": {
            "model": "llama-3.1-8b",
            "gpu": "H100-SXM",
            "num_gpus": 1,
            "tp": 1,
            "precision": "bf16",
            "engine": "vllm",
        },
        "load": {"kind": "rate", "value": 20.0},
        "throughput": {"output_tokens_per_s": 1000.0, "requests_per_s": 15.0},
        "ttft_s": stats,
        "itl_s": {**stats, "p50": float("nan")},
        "tpot_s": stats,
        "e2e_s": stats,
    }


def test_measurement_rows_are_in_deployment_time_and_read_back(tmp_path: Path) -> None:
    rows = measurement_rows(bench_like_summary(speedup=10.0), "bench-1")
    by = {r["metric"]: r for r in rows}
    assert "median_itl" not in by  # NaN: nothing measured, no row
    assert float(by["mean_ttft"]["value"]) == pytest.approx(0.2)
    assert float(by["output_throughput"]["value"]) == pytest.approx(100.0)
    assert by["mean_ttft"]["load_kind"] == "rate" and float(by["mean_ttft"]["load_value"]) == pytest.approx(2.0)
    csv_path = tmp_path / "m.csv"
    append_measurements(rows, csv_path)
    append_measurements(rows, csv_path)  # appends without a second header
    assert len(read_measurements(csv_path)) == 2 * len(rows)
    json_path = tmp_path / "bench.json"
    json_path.write_text(json.dumps(bench_like_summary(speedup=1.0)))
    read = read_measurements(json_path)
    assert {r.metric for r in read} == set(by)
    ttft = next(r for r in read if r.metric == "mean_ttft")
    assert (ttft.model, ttft.isl, ttft.osl, ttft.load_kind, ttft.value) == ("llama-3.1-8b", 256, 64, "rate", 0.02)


def test_bench_rows_append_under_the_files_own_header(tmp_path: Path) -> None:
    """A file with the optional `settings` column takes bench rows with it empty; a file whose header lacks a
    column is refused with its name rather than given rows whose fields shifted."""
    rows = measurement_rows(bench_like_summary(speedup=10.0), "bench-1")
    with_settings = tmp_path / "settings.csv"
    with_settings.write_text(",".join([*COLUMNS, "settings"]) + "\n")
    append_measurements(rows, with_settings)
    read = read_measurements(with_settings)
    assert len(read) == len(rows) and {r.settings for r in read} == {""}
    short = tmp_path / "short.csv"
    short.write_text("id,model,gpu,metric,value\n")
    with pytest.raises(CatalogError, match="lacks column"):
        append_measurements(rows, short)
    assert short.read_text() == "id,model,gpu,metric,value\n"


def test_measurement_rows_need_a_catalogue_deployment() -> None:
    summary = bench_like_summary(1.0)
    del summary["deployment"]
    with pytest.raises(CatalogError, match="catalogue model"):
        measurement_rows(summary, "x")
