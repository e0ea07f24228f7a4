"""A measurement row's `settings` column: engine settings its run set that the profiles model (predict.ROW_SETTINGS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenomy.calibrate.measurements import COLUMNS, read_measurement_file
from tokenomy.calibrate.predict import predict, row_settings
from tokenomy.catalog.models import DATA_DIR

from .measurement_rows import HEADER, measurement


def test_settings_parse_to_profile_values() -> None:
    assert row_settings("") == {}
    assert row_settings("attention_dp_balance=true") == {"attention_dp_balance": True}
    assert row_settings(" attention_dp_balance = FALSE ; ") == {"attention_dp_balance": False}


def test_an_unknown_or_malformed_setting_is_a_reason_naming_it() -> None:
    why = row_settings("attention_dp_balanc=true")
    assert isinstance(why, str) and "'attention_dp_balanc'" in why and "did you mean 'attention_dp_balance'" in why
    why = row_settings("max_tokens=8192")
    assert isinstance(why, str) and "'max_tokens'" in why and "known: attention_dp_balance" in why
    for text in ("attention_dp_balance", "attention_dp_balance=maybe"):
        why = row_settings(text)
        assert isinstance(why, str) and "takes true or false" in why


def test_predict_skips_a_row_whose_settings_it_cannot_read() -> None:
    pred = predict(measurement(settings="enable_balance=true"))
    assert pred.value is None and "'enable_balance'" in pred.skipped_reason


def test_a_balanced_attention_dp_run_waits_for_no_single_rank() -> None:
    """Qwen3-235B-A22B on 8 H200 under attention DP at 5 requests/s: with prompts balanced over the ranks
    (TensorRT-LLM's enable_balance) no step waits for one rank's prompt, so mean ITL and TTFT are lower; an offline run,
    whose cohorts prefill on every rank anyway, and a dense model are unmoved."""
    shape = {"model": "qwen3-235b-a22b", "gpu": "H200-SXM", "num_gpus": 8, "tp": 8, "engine_version": "v1.0"}
    balance = "attention_dp_balance=true"
    for metric in ("mean_itl", "mean_ttft"):
        online = dict(shape, isl=2048, osl=256, load_kind="rate", load_value=5.0, metric=metric)
        free = predict(measurement(**online)).value
        balanced = predict(measurement(**online, settings=balance)).value
        assert free and balanced and balanced < 0.9 * free
    # offline, a cohort of B requests puts ⌈B/8⌉ on the busiest rank, B/8 on average: balancing changes < 0.1%
    offline = predict(measurement(**shape)).value
    assert predict(measurement(**shape, settings=balance)).value == pytest.approx(offline, rel=1e-3)
    dense = predict(measurement(engine_version="v1.0")).value
    assert dense == predict(measurement(engine_version="v1.0", settings=balance)).value


def test_the_column_is_optional_and_read_where_given(tmp_path: Path) -> None:
    row = "r1,s,tensorrt-llm,,llama-3.1-8b,H100-SXM,1,1,1,fp8,,1024,1024,fixed,offline,,output_throughput,1000,tok/s,"
    plain = tmp_path / "plain.csv"
    plain.write_text(f"{HEADER}\n{row}\n")
    assert read_measurement_file(plain).rows[0].settings == ""
    with_column = tmp_path / "settings.csv"
    with_column.write_text(f"{HEADER},settings\n{row},attention_dp_balance=true\n")
    assert read_measurement_file(with_column).rows[0].settings == "attention_dp_balance=true"
    assert len(COLUMNS) == len(row.split(","))


def test_nvidias_deepseek_r1_runs_are_the_balanced_ones() -> None:
    """TensorRT-LLM's later throughput page gives DeepSeek-R1 attention_dp_config enable_balance: true, and the
    gpt-oss, Qwen3 MoE and Maverick runs plain attention DP: the shipped rows say so."""
    rows = read_measurement_file(DATA_DIR / "measurements_trtllm_devguide.csv").rows
    balanced = {r.model for r in rows if r.settings == "attention_dp_balance=true"}
    assert balanced == {"deepseek-v3"}
    assert all(r.settings == "" for r in rows if r.model != "deepseek-v3")
