"""The steady-state closed form against the simulator on the cases of issue 12, and its building blocks."""

from __future__ import annotations

import numpy as np
import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import pipeline_round_s, single_stream, steady_state
from tokenomy.costmodel.plan import Workload, plan
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload as SimWorkload


def dep(model: str, tp: int = 1, pp: int = 1) -> Deployment:
    return Deployment(load_model(model), load_accelerator("H100-SXM"), tp, pp, "bf16", "auto", load_profile("vllm"))


def sim_tps(d: Deployment, n: int, concurrency: int | None) -> float:
    w = SimWorkload(np.zeros(n), np.full(n, 1024), np.full(n, 256), concurrency=concurrency)
    return simulate(d, w, ReplicaConfig()).summary()["throughput"]["output_tokens_per_s"]


def test_pipeline_round_is_its_slowest_micro_batch_or_the_stage_load() -> None:
    assert pipeline_round_s([0.01, 0.01], 2) == pytest.approx(0.01)  # full pipeline, no bubble
    assert pipeline_round_s([0.01], 2) == pytest.approx(0.01)  # one micro-batch: the other stage idles
    assert pipeline_round_s([0.03, 0.01], 2) == pytest.approx(0.03)  # the slow one holds the fast one back
    assert pipeline_round_s([0.01, 0.01, 0.01], 2) == pytest.approx(0.015)  # more micro-batches than stages


def test_pipeline_parallel_plan_and_simulate_agree() -> None:
    """Llama-3.1-8B bf16 on 2×H100 as tp1·pp2, 1024 in / 256 out, offline: within 15% (issue 12)."""
    d = dep("llama-3.1-8b", pp=2)
    planned = plan(d, Workload(1024, 256), 2, None)["max_output_tokens_per_s"]
    simulated = sim_tps(d, 1000, None)
    print(f"\n  tp1·pp2 offline: plan {planned:,.0f} tok/s, simulate {simulated:,.0f} tok/s")
    assert abs(planned - simulated) / simulated < 0.15
    # two stages give more than one GPU's worth: twice the compute for the same weights read
    one = plan(dep("llama-3.1-8b"), Workload(1024, 256), 1, None)["max_output_tokens_per_s"]
    assert planned > 1.3 * one


@pytest.mark.parametrize("concurrency", [1, 16])
def test_moe_curve_matches_simulated_concurrency(concurrency: int) -> None:
    """qwen3-30b-a3b bf16 on one H100, 1024/256: the plan's curve at batch c vs `simulate --concurrency c`."""
    d = dep("qwen3-30b-a3b")
    curve = float(steady_state(d, 1024, 256, concurrency).output_tokens_per_s[()])
    simulated = sim_tps(d, 6 * concurrency, concurrency)
    print(f"\n  MoE c={concurrency}: curve {curve:,.0f} tok/s, simulate {simulated:,.0f} tok/s")
    assert abs(curve - simulated) / simulated < 0.15


def test_plan_single_stream_is_its_curve_at_batch_one() -> None:
    for d in (dep("qwen3-30b-a3b"), dep("llama-3.1-8b", pp=2)):
        p = plan(d, Workload(1024, 256), d.n_gpus, None)
        assert p["curve"]["batch"][0] == 1
        assert p["single_stream_tokens_per_s"] == pytest.approx(p["curve"]["output_tokens_per_s"][0])
        ttft, tpot = single_stream(d, 1024, 256)
        assert (p["ttft_s"], p["itl_s"]) == pytest.approx((ttft, tpot))
        # one request's cycle: its prompt, then 255 decode steps
        assert 256 / (ttft + 255 * tpot) == pytest.approx(p["single_stream_tokens_per_s"], rel=1e-6)


def test_moe_steps_touch_the_experts_of_their_own_tokens() -> None:
    """A lone decode step reads k experts, not the experts of a prompt smeared over the decode steps."""
    d = dep("qwen3-30b-a3b")
    ss = steady_state(d, 1024, 256, 1)
    lone_decode = float(d.step_cost().seconds(1, 1, 1152, 1152))
    assert float(ss.decode_seconds[()]) == pytest.approx(lone_decode, rel=0.01)
    assert float(ss.tpot_s[()]) < 1.05 * lone_decode


def test_budget_binds_at_large_batch() -> None:
    """When prompts cannot all fit beside the decodes, every step is full and throughput stops growing."""
    d = dep("llama-3.1-8b")
    ss = steady_state(d, 8000, 16, np.array([64.0, 128.0, 256.0]))
    tokens_per_step = ss.requests_per_s * (8000 + 15) * ss.step_seconds
    assert tokens_per_step[-1] == pytest.approx(d.profile.max_num_batched_tokens, rel=0.01)
    assert ss.requests_per_s[-1] == pytest.approx(ss.requests_per_s[-2], rel=0.02)
