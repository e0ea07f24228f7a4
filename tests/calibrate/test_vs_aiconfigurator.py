"""benchmarks/vs_aiconfigurator.py without AIConfigurator: row → query mapping, answer read-back, statistics."""

from __future__ import annotations

import dataclasses
import json

import pytest
from benchmarks.vs_aiconfigurator import (
    AicQuery,
    ErrorStats,
    RowQuery,
    Scored,
    _batch_schedule,
    answer_value,
    ape,
    compare_groups,
    ctx_tokens_for,
    groups_ahead,
    main,
    percentile,
    row_query,
)

from tests.calibrate.measurement_rows import measurement
from tokenomy.calibrate.measurements import Measurement

BASE = measurement(id="t1", model="llama-3.1-70b", num_gpus=8, tp=4, precision="FP8", isl=1000, osl=500)


def _row(**changes: object) -> Measurement:
    return dataclasses.replace(BASE, **changes)


def test_offline_row_maps_to_a_sweep_query_with_replicas() -> None:
    rq = row_query(_row(), "fp8", "meta-llama/Meta-Llama-3.1-70B", is_moe=False)
    assert isinstance(rq, RowQuery)
    assert rq.query == AicQuery(
        model="meta-llama/Meta-Llama-3.1-70B",
        system="h100_sxm",
        backend="trtllm",
        isl=1000,
        osl=500,
        tp=4,
        pp=1,
        gemm="fp8",
        kvcache="fp8",
        moe=None,
        batch=0,
    )
    assert rq.replicas == 2  # 8 GPUs / (tp 4 × pp 1)


def test_published_precision_names_and_moe() -> None:
    rq = row_query(_row(precision="FP4", gpu="GB200", tp=1, num_gpus=1), "fp8", "m", is_moe=True)
    assert isinstance(rq, RowQuery)
    assert (rq.query.system, rq.query.gemm, rq.query.moe, rq.query.kvcache) == ("gb200", "nvfp4", "nvfp4", "fp8")
    rq16 = row_query(_row(precision="fp16", engine="vllm", gpu="A100-SXM-80GB"), "bf16", "m", is_moe=False)
    assert isinstance(rq16, RowQuery)
    assert (rq16.query.gemm, rq16.query.kvcache, rq16.query.backend) == ("bfloat16", "bfloat16", "vllm")


def test_block_scaled_fp8_and_gpt_oss_mxfp4_experts_take_the_kernels_tensorrt_llm_runs() -> None:
    """DeepSeek's block-scaled FP8 → fp8_block for GEMMs and experts; gpt-oss's bf16 attention with MXFP4 experts
    W4A8 (MXFP8 activations) on Blackwell and W4A16 on Hopper, as TensorRT-LLM's gpt-oss support matrix says."""
    ds = row_query(_row(precision="fp8-block", gpu="H200-SXM", tp=8, num_gpus=8), "fp8", "m", is_moe=True)
    assert isinstance(ds, RowQuery) and (ds.query.gemm, ds.query.moe) == ("fp8_block", "fp8_block")
    for gpu, moe in (("B200", "w4a8_mxfp4_mxfp8"), ("H100-SXM", "w4a16_mxfp4")):
        oss = row_query(_row(precision="mxfp4-experts", gpu=gpu, tp=1, num_gpus=1), "bf16", "m", is_moe=True)
        assert isinstance(oss, RowQuery) and (oss.query.gemm, oss.query.moe) == ("bfloat16", moe), gpu
    # vLLM runs bf16 activations on Blackwell too (its profile sets no MXFP8 activations)
    row = _row(precision="mxfp4-experts", gpu="B200", tp=1, num_gpus=1, engine="vllm")
    vllm = row_query(row, "bf16", "m", is_moe=True)
    assert isinstance(vllm, RowQuery) and vllm.query.moe == "w4a16_mxfp4"


def test_concurrency_row_is_a_fixed_batch_per_replica() -> None:
    rq = row_query(_row(load_kind="concurrency", load_value=64.0, metric="mean_ttft"), "fp8", "m", is_moe=False)
    assert isinstance(rq, RowQuery)
    assert rq.query.batch == 32  # 64 in flight over 2 replicas


@pytest.mark.parametrize(
    ("changes", "reason_part"),
    [
        ({"gpu": "GH200"}, "no AIConfigurator system"),
        ({"gpu": "MI300X"}, "no AIConfigurator system"),
        ({"engine": "llama.cpp"}, "does not model engine"),
        ({"precision": "int4"}, "no AIConfigurator GEMM mode"),
        ({"precision": "banana"}, "unknown precision"),
        ({"load_kind": "rate", "load_value": 4.0, "metric": "mean_ttft"}, "not rate load"),
        ({"dataset": "sharegpt", "isl": None, "osl": None}, "no fixed isl/osl"),
        ({"metric": "mean_itl"}, "not estimated"),
        ({"load_kind": "concurrency", "load_value": None, "metric": "mean_ttft"}, "positive load_value"),
    ],
)
def test_rows_it_cannot_express_are_skipped_with_a_reason(changes: dict, reason_part: str) -> None:
    out = row_query(_row(**changes), "fp8", "m", is_moe=False)
    assert isinstance(out, str) and reason_part in out


def test_unknown_kv_precision_is_skipped() -> None:
    out = row_query(_row(), "fp4", "m", is_moe=False)
    assert isinstance(out, str) and "KV-cache" in out


def test_answer_read_back_in_base_units() -> None:
    rq = row_query(_row(), "fp8", "m", is_moe=False)
    assert isinstance(rq, RowQuery)
    answer = {"ok": True, "tokens_s": 100.0, "seq_s": 0.2, "ttft_ms": 250.0, "tpot_ms": 20.0, "request_latency_ms": 1e4}
    assert answer_value(rq, answer) == pytest.approx(200.0)  # two replicas
    total = dataclasses.replace(rq, metric="total_throughput")
    assert answer_value(total, answer) == pytest.approx(200.0 * 1500 / 500)
    assert answer_value(dataclasses.replace(rq, metric="request_throughput"), answer) == pytest.approx(0.4)
    assert answer_value(dataclasses.replace(rq, metric="mean_ttft"), answer) == pytest.approx(0.25)
    assert answer_value(dataclasses.replace(rq, metric="mean_itl"), answer) == pytest.approx(0.02)
    assert answer_value(rq, {"ok": False, "error": "OOM"}) is None
    assert answer_value(rq, {**answer, "tokens_s": 0.0}) is None


def test_percentile_matches_linear_interpolation() -> None:
    xs = [0.4, 0.1, 0.3, 0.2]
    assert percentile(xs, 50) == pytest.approx(0.25)
    assert percentile(xs, 90) == pytest.approx(0.37)  # position 2.7 between 0.3 and 0.4
    assert percentile([0.5], 90) == 0.5
    with pytest.raises(ValueError):
        percentile([], 50)
    assert ape(90.0, 100.0) == pytest.approx(0.1)
    assert ape(130.0, 100.0) == pytest.approx(0.3)


def _scored(i: int, acc: str, fam: str, aic: float | None, tok_in: float | None, cv: dict[str, float]) -> Scored:
    return Scored(f"r{i}", acc, fam, 100.0, aic, tok_in, cv)


def test_groups_compare_on_rows_all_columns_predicted() -> None:
    scored = [
        # hopper: AIC 10 % / 30 %, tokenomy CV 5 % / 20 %: tokenomy ahead
        _scored(1, "hopper", "llama", 110.0, 101.0, {"accelerator_family": 105.0, "model_family": 150.0}),
        _scored(2, "hopper", "llama", 70.0, 99.0, {"accelerator_family": 80.0, "model_family": 150.0}),
        # blackwell: AIC 2 %, tokenomy CV 40 %: behind; in sample 1 %: ahead in sample
        _scored(3, "blackwell", "qwen3-moe", 102.0, 101.0, {"accelerator_family": 140.0, "model_family": 101.0}),
        # no AIC answer: in no group
        _scored(4, "blackwell", "qwen3-moe", None, 100.0, {"accelerator_family": 100.0, "model_family": 100.0}),
        # no out-of-sample prediction: left out of the CV comparison
        _scored(5, "ampere", "llama", 100.0, 100.0, {}),
    ]
    groups = {(g.grouping, g.group): g for g in compare_groups(scored)}
    assert set(groups) == {
        ("accelerator_family", "hopper"),
        ("accelerator_family", "blackwell"),
        ("model_family", "llama"),
        ("model_family", "qwen3-moe"),
    }
    hopper = groups[("accelerator_family", "hopper")]
    assert hopper.aic == ErrorStats(2, pytest.approx(0.2), pytest.approx(0.28))
    assert hopper.tokenomy_cv is not None and hopper.tokenomy_cv.median_ape == pytest.approx(0.125)
    assert hopper.tokenomy_ahead()
    llama = groups[("model_family", "llama")]  # model-family CV column: 50 % on both rows
    assert llama.tokenomy_cv is not None and llama.tokenomy_cv.median_ape == pytest.approx(0.5)
    assert not llama.tokenomy_ahead() and llama.tokenomy_ahead(out_of_sample=False)
    blackwell = groups[("accelerator_family", "blackwell")]
    assert blackwell.aic.n == 1 and not blackwell.tokenomy_ahead() and blackwell.tokenomy_ahead(out_of_sample=False)
    ordered = compare_groups(scored)
    assert groups_ahead(ordered) == (2, 4)  # hopper, qwen3-moe (1 % vs 2 %)
    assert groups_ahead(ordered, out_of_sample=False) == (4, 4)


def test_in_sample_only_comparison_keeps_rows_without_cv() -> None:
    scored = [_scored(1, "ampere", "llama", 100.0, 110.0, {})]
    (acc, fam) = compare_groups(scored, use_cv=False)
    assert acc.tokenomy_cv is None and acc.tokenomy_in_sample.median_ape == pytest.approx(0.1)
    assert not acc.tokenomy_ahead()  # no out-of-sample figure: never counted ahead


def test_sweep_helpers_follow_aiconfigurators_schedule() -> None:
    schedule = _batch_schedule()
    assert schedule[:15] == list(range(1, 16)) and schedule[-1] == 1024
    assert schedule == sorted(set(schedule))
    assert ctx_tokens_for(1000, 1) == 1000
    assert ctx_tokens_for(128, 2048) == 8192  # the 8192 budget
    assert ctx_tokens_for(128, 4) == 3 * 128  # batch − ceil(ctx / isl) ≥ 1
    assert ctx_tokens_for(20000, 64) == 40000  # 2 × isl for long prompts


def test_query_key_is_stable_json() -> None:
    q = AicQuery("m", "h100_sxm", "trtllm", 1, 2, 1, 1, "fp8", "fp8", None)
    assert json.loads(q.key())["system"] == "h100_sxm"
    assert q.key() == AicQuery(**json.loads(q.key())).key()


def test_without_aiconfigurator_it_says_how_to_install_and_reports_na(tmp_path, capsys) -> None:
    missing = tmp_path / "no-python-here"
    assert main(["--aic-python", str(missing), "--cache", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "pip install aiconfigurator" in out[0] and "--aic-python" in out[0]
    assert out[-1] == "vs_aiconfigurator_groups_ahead: n/a"
