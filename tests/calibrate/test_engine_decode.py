"""The llama.cpp decode measurement's summary (best, median, undisturbed) without the engine itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenomy.calibrate.engine_decode import DecodeMeasurement, DecodeRun, measure_batched_decode, measure_decode


def run(tokens_per_s: float, cpu_share: float) -> DecodeRun:
    return DecodeRun(prompt_tokens=16, decode_steps=127, eval_seconds=127 / tokens_per_s, wall_seconds=1.6,
                     cpu_share=cpu_share)  # fmt: skip


def test_summary_takes_llama_cpp_timings_best_and_median() -> None:
    m = DecodeMeasurement("x.gguf", 1, 128, (run(80.0, 0.99), run(60.0, 0.7), run(70.0, 0.8)), (1.0, 1.0, 1.0))
    assert m.best_tokens_per_s == pytest.approx(80.0)
    assert m.median_tokens_per_s == pytest.approx(70.0)
    assert m.runs[0].wall_tokens_per_s == pytest.approx(127 / 1.6)
    assert m.prompt_tokens == 16 and m.clean


def test_a_preempted_best_run_is_not_clean() -> None:
    m = DecodeMeasurement("x.gguf", 1, 128, (run(80.0, 0.9), run(90.0, 0.6)), (4.0, 4.0, 4.0))
    assert m.best_run.cpu_share == 0.6 and not m.clean


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"output_tokens": 1}, {"runs": 0}])
def test_bad_arguments_fail_before_loading_anything(kwargs: dict[str, int]) -> None:
    args = {"threads": 1, **kwargs}
    with pytest.raises(ValueError, match="positive"):
        measure_decode(Path("missing.gguf"), **args)


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"seqs": 0}, {"prompt_tokens": 0}, {"steps": 0}, {"runs": 0}])
def test_batched_decode_bad_arguments_fail_before_loading_anything(kwargs: dict[str, int]) -> None:
    args = {"threads": 1, "seqs": 4, **kwargs}
    with pytest.raises(ValueError, match="positive"):
        measure_batched_decode(Path("missing.gguf"), **args)
