"""calibrate/engine_kernels.py: the host rate solved from llama.cpp's timed kernels, and the entry that carries it.

The llama.cpp timing itself needs the engine extra and runs in tests/engine; here the inverse problem is checked on
decode speeds the cost model produced for a known rate, and the entry and CLI around it.
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from typer.testing import CliRunner

from tokenomy.calibrate import engine_kernels, host
from tokenomy.calibrate.engine_kernels import (
    KERNEL_SHAPES,
    EngineKernelRate,
    ShapeResult,
    hf_config,
    predicted_batch_step_s,
    predicted_prefill_s,
    predicted_tokens_per_s,
    solve_host,
    solve_rate,
    with_rates,
)
from tokenomy.catalog.accelerators import Accelerator
from tokenomy.catalog.profiles import load_profile
from tokenomy.cli.hostcal import host_entry
from tokenomy.cli.main import app

MIB = 2**20
HOST = Accelerator.model_validate(
    {"id": "h", "memory_gb": 16, "memory_bandwidth_gb_s": 20, "dense_tflops": {"fp32": 1.0}}
)


def shape_result(shape: engine_kernels.Shape, tokens_per_s: float) -> ShapeResult:
    return ShapeResult(shape, hf_config(shape), 16, tokens_per_s, tokens_per_s, (0.0, 0.0, 0.0), True)


def with_fp32(tflops: float) -> Accelerator:
    return HOST.model_copy(update={"dense_tflops": {"fp32": tflops}})


@pytest.mark.parametrize("true_tflops", [0.02, 0.1, 0.4])
def test_solve_rate_recovers_the_rate_that_produced_the_speeds(true_tflops: float) -> None:
    profile = load_profile("llama.cpp")
    results = [shape_result(s, 1.0) for s in KERNEL_SHAPES]
    speeds = [predicted_tokens_per_s(r, with_fp32(true_tflops), profile, 64) for r in results]
    measured = [dataclasses.replace(r, best_tokens_per_s=v) for r, v in zip(results, speeds, strict=True)]
    rate, errors = solve_rate(measured, HOST, profile, 64)
    assert rate == pytest.approx(true_tflops * 1e12, rel=0.02)
    assert max(errors) < 0.01


def test_a_slower_kernel_gives_a_lower_rate_and_a_slower_prediction() -> None:
    """Half the measured speed (an AVX2 build on an AVX-512 host) must not be predicted at the sgemm's pace."""
    profile = load_profile("llama.cpp")
    results = [shape_result(s, 1.0) for s in KERNEL_SHAPES]
    fast = [predicted_tokens_per_s(r, with_fp32(0.2), profile, 64) for r in results]
    slow = [dataclasses.replace(r, best_tokens_per_s=v / 2) for r, v in zip(results, fast, strict=True)]
    rate, _ = solve_rate(slow, HOST, profile, 64)
    assert rate < 0.2e12 * 0.75


def timed_at(
    dense_tflops: float, matvec_tflops: float | None, prompt_tokens: int = 128, batch_dense_tflops: float | None = None
) -> list[ShapeResult]:
    """The shapes' decode speeds, prefill times and 4-sequence decode steps as the cost model gives them for a host
    with these rates (the inverse problem's known answer); batch_dense_tflops: the batched steps' tokens beyond the
    first run at this dense rate instead (a host whose small batches outrun its prompts)."""
    profile = load_profile("llama.cpp")
    matvec = matvec_tflops * 1e12 if matvec_tflops else None
    truth = with_rates(HOST, dense_tflops * 1e12, matvec)
    batch_truth = with_rates(HOST, (batch_dense_tflops or dense_tflops) * 1e12, matvec)
    out = []
    for s in KERNEL_SHAPES:
        r = dataclasses.replace(shape_result(s, 1.0), prompt_tokens=prompt_tokens, batch_seqs=4,
                                batch_context_tokens=32)  # fmt: skip
        out.append(dataclasses.replace(r, best_tokens_per_s=predicted_tokens_per_s(r, truth, profile, 64),
                                       prefill_seconds=predicted_prefill_s(r, truth, profile),
                                       batch_step_seconds=predicted_batch_step_s(r, batch_truth, profile)))  # fmt: skip
    return out


def test_prefill_and_decode_pin_the_dense_and_the_one_token_rates() -> None:
    """Decode at 0.1 TFLOP/s (one-token kernels), prompts at 0.16: both rates come back, both timings reproduced."""
    sol = solve_host(timed_at(0.16, 0.1), HOST, load_profile("llama.cpp"), 64)
    assert sol.matvec_flops_per_s == pytest.approx(0.1e12, rel=0.02)
    assert sol.flops_per_s == pytest.approx(0.16e12, rel=0.02)
    assert max(sol.decode_errors) < 0.01 and max(sol.prefill_errors) < 0.01 and max(sol.batch_errors) < 0.01
    assert len(sol.batch_errors) == len(KERNEL_SHAPES)


def test_batched_decode_steps_pull_the_dense_rate_towards_them() -> None:
    """A host whose 4-sequence steps run as if its dense rate were 0.24 while its prompts run at 0.16: the solved
    rate lies between, and the batched steps are predicted closer than by the rates fitted without them."""
    profile = load_profile("llama.cpp")
    timed = timed_at(0.16, 0.1, batch_dense_tflops=0.24)
    sol = solve_host(timed, HOST, profile, 64)
    assert 0.17e12 < sol.flops_per_s < 0.23e12
    unbatched = solve_host([dataclasses.replace(r, batch_step_seconds=0.0) for r in timed], HOST, profile, 64)
    assert unbatched.batch_errors == () and unbatched.flops_per_s == pytest.approx(0.16e12, rel=0.02)
    host = with_rates(HOST, unbatched.flops_per_s, unbatched.matvec_flops_per_s)
    before = max(abs(predicted_batch_step_s(r, host, profile) / r.batch_step_seconds - 1) for r in timed)
    assert max(sol.batch_errors) < 0.75 * before


def test_a_decode_only_rate_mispredicts_the_prefill_that_the_two_rates_get_right() -> None:
    """The failure the second rate fixes: a rate solved from decode alone predicts the prompt 1.3× slow or worse
    when the prompt kernels run 1.6× faster per FLOP."""
    profile = load_profile("llama.cpp")
    timed = timed_at(0.16, 0.1)
    rate, _ = solve_rate(timed, HOST, profile, 64)
    decode_only = with_rates(HOST, rate)
    slow = [predicted_prefill_s(r, decode_only, profile) / r.prefill_seconds for r in timed]
    assert min(slow) > 1.3


def test_one_token_steps_run_at_the_matvec_rate_and_long_prompts_tend_to_the_dense_rate() -> None:
    """The cost model's two-rate step: a host with (dense 0.16, matvec 0.1) decodes one sequence like a host whose
    only rate is 0.1 (but for attention, at the dense rate: under 0.5% at 16 tokens of context), and prefills 512
    tokens within 1% of one whose only rate is 0.16 (one weight pass's difference spread over 512 tokens)."""
    profile = load_profile("llama.cpp")
    both = with_rates(HOST, 0.16e12, 0.1e12)
    short = dataclasses.replace(shape_result(KERNEL_SHAPES[0], 1.0), prompt_tokens=16)
    assert predicted_tokens_per_s(short, both, profile, 2) == pytest.approx(
        predicted_tokens_per_s(short, with_rates(HOST, 0.1e12), profile, 2), rel=5e-3
    )
    long = dataclasses.replace(short, prompt_tokens=512)
    dense = predicted_prefill_s(long, with_rates(HOST, 0.16e12), profile)
    assert dense < predicted_prefill_s(long, both, profile) < dense * 1.01


def test_without_prefill_timings_one_rate_serves_both() -> None:
    sol = solve_host([dataclasses.replace(r, prefill_seconds=0.0) for r in timed_at(0.1, None)], HOST,
                     load_profile("llama.cpp"), 64)  # fmt: skip
    assert sol.matvec_flops_per_s is None and sol.prefill_errors == ()
    assert sol.flops_per_s == pytest.approx(0.1e12, rel=0.02)


def test_entry_uses_the_engine_rate_and_keeps_the_sgemm_figure_in_its_sources() -> None:
    m = host.measure_host(threads=1, stream_bytes=16 * MIB, matmul_n=128, repeats=3, min_seconds=0.0)
    results = tuple(shape_result(s, 50.0) for s in KERNEL_SHAPES)
    rate = EngineKernelRate(3.3e10, results, (0.01, 0.02), "llama.cpp", 1)
    entry = host_entry(m, "h", engine_rate=rate)
    assert entry["dense_tflops"]["fp32"] == pytest.approx(0.033)
    assert f"{m.fp32_flops_per_s / 1e9:.1f} GFLOP/s" in entry["sources"]["specs"]
    assert "w1024-8L decode 50.0 tok/s" in entry["sources"]["specs"]
    assert "solved from llama.cpp's kernels timed here" in entry["notes"]
    plain = host_entry(m, "h")
    assert plain["dense_tflops"]["fp32"] == pytest.approx(round(m.fp32_flops_per_s / 1e12, 5))
    assert "BLAS sgemm peak" in plain["notes"]
    assert plain["memory_bandwidth_gb_s"] == pytest.approx(round(m.read_bytes_per_s / 1e9, 3))


def test_entry_carries_both_rates_and_says_which_is_which() -> None:
    m = host.measure_host(threads=1, stream_bytes=16 * MIB, matmul_n=128, repeats=3, min_seconds=0.0)
    results = tuple(dataclasses.replace(shape_result(s, 50.0), prefill_seconds=0.04) for s in KERNEL_SHAPES)
    rate = EngineKernelRate(5.0e10, results, (0.01, 0.02), "llama.cpp", 1, 3.3e10, (0.03, 0.01))
    entry = host_entry(m, "h", engine_rate=rate)
    assert entry["dense_tflops"]["fp32"] == pytest.approx(0.05)
    assert entry["matvec_tflops"]["fp32"] == pytest.approx(0.033)
    assert entry["memory_bandwidth_gb_s"] == pytest.approx(round(m.read_bytes_per_s / 1e9, 3))
    assert "1.52× slower per FLOP" in entry["notes"]
    assert "prefill 16 tokens 40.0 ms (3.0%)" in entry["sources"]["specs"]
    assert "from its prompt evaluations;" in entry["notes"]
    batched = tuple(dataclasses.replace(r, batch_seqs=4, batch_step_seconds=0.05) for r in results)
    entry = host_entry(m, "h", engine_rate=dataclasses.replace(rate, shapes=batched, batch_errors=(0.04, 0.06)))
    assert "4-sequence decode step 50.0 ms (6.0%)" in entry["sources"]["specs"]
    assert "fp32 by the prefills and the batched decode steps" in entry["sources"]["specs"]
    assert "from its prompt evaluations and batched decode steps;" in entry["notes"]
    assert Accelerator.model_validate(entry).matvec_flops_per_s("fp32") == pytest.approx(3.3e10)


def test_engine_kernels_on_without_the_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_kernels, "missing_parts", lambda: ["llama-cpp-python"])
    res = CliRunner().invoke(app, ["calibrate", "--host", "--engine-kernels", "on"])
    assert res.exit_code == 2
    assert "needs llama-cpp-python" in res.output


def test_engine_kernels_rejects_an_unknown_mode() -> None:
    res = CliRunner().invoke(app, ["calibrate", "--host", "--engine-kernels", "maybe"])
    assert res.exit_code == 2
    assert "auto, on or off" in res.output


def test_shapes_are_not_smollm2s() -> None:
    """The calibration must not time the model it is then asked to predict (SmolLM2-135M: 576 wide, 30 layers)."""
    assert all((s.hidden, s.layers) != (576, 30) for s in KERNEL_SHAPES)
    assert yaml.safe_dump(hf_config(KERNEL_SHAPES[0]))  # a plain config plan can read
