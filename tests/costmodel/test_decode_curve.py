"""The simulator's decode spans time steps from `StepCost.decode_curve`: a decode step of a fixed batch as a
function of its summed context. It must give what `StepCost.seconds` gives for that step, whatever the overlap
exponent, for dense and MoE models and with tensor parallelism (pipeline rounds: test_pipeline_host.py)."""

from __future__ import annotations

import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment


def deployment(model: str, gpu: str, tp: int, fmt: str, overlap_k: float) -> Deployment:
    """A TensorRT-LLM deployment with the overlap exponent set."""
    profile = load_profile("tensorrt-llm").with_values(overlap_k=overlap_k)
    return Deployment(load_model(model), load_accelerator(gpu), tp, 1, fmt, "auto", profile)


@pytest.mark.parametrize("overlap_k", [1.0, 1.22, 3.0])
@pytest.mark.parametrize(
    ("model", "gpu", "tp", "fmt"),
    [
        ("llama-3.1-8b", "H100-SXM", 1, "bf16"),
        ("qwen3-30b-a3b", "B200", 1, "nvfp4"),
        ("llama-3.1-70b", "H100-SXM", 4, "fp8"),
    ],
)
def test_decode_curve_is_the_step_time(model: str, gpu: str, tp: int, fmt: str, overlap_k: float) -> None:
    """At 1, 7 and 300 sequences and contexts from 0 to 2M tokens the curve gives StepCost.seconds' decode step."""
    cost = deployment(model, gpu, tp, fmt, overlap_k).step_cost()
    for seqs in (1, 7, 300):
        curve = cost.decode_curve(seqs)
        assert curve is not None and curve.linear == (overlap_k == 1.0)
        for ctx in (0.0, 1_000.0, 2_000_000.0):
            assert curve.seconds(ctx) == pytest.approx(float(cost.seconds(seqs, seqs, ctx, ctx)), rel=1e-12)
            if curve.linear:  # the fast spans' line: intercept + slope · context
                step_s = float(cost.seconds(seqs, seqs, ctx, ctx))
                assert curve.intercept_s + curve.slope_s_per_token * ctx == pytest.approx(step_s, rel=1e-12)


def test_overlap_makes_the_curve_bend() -> None:
    """With k > 1 the step is a norm of two affine functions of the context, convex: at the midpoint of two contexts
    it lies below their chord (so Simpson's rule, not the line, sums a span of such steps)."""
    curve = deployment("llama-3.1-8b", "H100-SXM", 1, "bf16", 1.22).step_cost().decode_curve(256)
    assert curve is not None and not curve.linear
    lo, hi = curve.seconds(0.0), curve.seconds(4_000_000.0)
    assert curve.seconds(2_000_000.0) < (lo + hi) / 2 * (1 - 1e-3)


def test_sliding_windows_have_no_curve() -> None:
    """Sliding-window layers stop reading KV at the window, so the step is not one curve of the summed context."""
    cost = deployment("gemma-3-27b", "H100-SXM", 1, "bf16", 1.22).step_cost()
    assert cost.decode_curve(8) is None
