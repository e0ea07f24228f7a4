"""Attention DP's busiest rank: a prompt chunk runs its attention and non-expert layers on its own rank alone, and
every rank waits for the busiest at the next MoE exchange (costmodel.perf module docstring, StepCost.rank_excess_s)."""

from __future__ import annotations

import numpy as np
import pytest

from tokenomy.advise.closedform import _chunk_steps
from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import (
    chunks_rank_excess_s,
    poisson_rank_excess_s,
    prefill_seconds,
    queued_ttft_s,
    single_stream,
)
from tokenomy.sim.kvcache import Seq
from tokenomy.sim.metrics import RequestLog
from tokenomy.sim.replica import Replica, ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload


def deployment(model: str, tp: int, attention_dp: bool, balance: bool = False) -> Deployment:
    profile = load_profile("tensorrt-llm").with_values(moe_attention_dp=attention_dp, attention_dp_balance=balance)
    return Deployment(load_model(model), load_accelerator("H200-SXM"), tp, 1, "fp8", "auto", profile)


def test_without_attention_dp_no_rank_waits_for_another() -> None:
    """Tensor parallelism splits every chunk over all GPUs, and a dense model has no attention-DP ranks."""
    for d in (deployment("qwen3-30b-a3b", 4, False), deployment("llama-3.1-70b", 4, True)):
        cost = d.step_cost()
        assert d.attention_dp_ranks == 1 and cost.rank_s_per_token == 0.0
        assert cost.rank_excess_s(4096.0, 1e7, 4096.0, 1e7, 1.0) == 0.0
        assert float(chunks_rank_excess_s(cost, np.array(1.0), 4096.0, 0.0, 1.0)) == 0.0


def test_the_busiest_rank_holds_whole_chunks_as_evenly_as_they_go() -> None:
    """R equal chunks on R ranks wait for nobody; two more put two on two ranks; a lone chunk costs its rank the
    whole chunk where an even split would have given it 1/R."""
    cost = deployment("qwen3-30b-a3b", 4, True).step_cost()
    assert cost.ranks == 4
    chunk, done = 1024.0, 0.0
    pairs = chunk * (done + chunk / 2)
    assert float(chunks_rank_excess_s(cost, np.array(4.0), chunk, done, 4.0)) == pytest.approx(0.0, abs=1e-12)
    lone = float(chunks_rank_excess_s(cost, np.array(1.0), chunk, done, 1.0))
    assert lone == pytest.approx(cost.rank_compute_s(chunk, pairs) * 3 / 4)
    six = float(chunks_rank_excess_s(cost, np.array(6.0), chunk, done, 6.0))
    even_share = cost.rank_compute_s(6 * chunk, 6 * pairs) / 4
    assert six == pytest.approx(cost.rank_compute_s(2 * chunk, 2 * pairs) - even_share)
    assert 0 < six < lone


def test_prompts_on_separate_ranks_run_side_by_side() -> None:
    """Llama 4 Maverick (mostly non-expert FLOPs per token) on 8 GPUs: eight prompts on eight attention-DP ranks take
    under twice one (each rank computes its own; the routed experts they share grow), where tensor parallelism
    computes them one after another over the same GPUs, over five times one."""
    adp, tp = (deployment("llama-4-maverick-17b-128e", 8, dp) for dp in (True, False))
    one_adp, eight_adp = (float(prefill_seconds(adp, 4096, b)) for b in (1, 8))
    one_tp, eight_tp = (float(prefill_seconds(tp, 4096, b)) for b in (1, 8))
    assert eight_adp / one_adp < 2.0
    assert eight_tp / one_tp > 5.0
    # one prompt alone: its rank computes all of its attention and non-expert layers, so it is slower than split
    assert one_adp > one_tp


def test_single_stream_ttft_pays_the_lone_prompts_rank() -> None:
    """One request alone on an attention-DP replica computes its prompt on one rank: its TTFT is above the same
    prompt's split over the same GPUs by tensor parallelism (Maverick, 8 GPUs)."""
    adp, tp = (deployment("llama-4-maverick-17b-128e", 8, dp) for dp in (True, False))
    assert single_stream(adp, 4096, 16)[0] > 1.3 * single_stream(tp, 4096, 16)[0]


def test_the_simulator_places_chunks_as_the_closed_form_counts_them() -> None:
    """Nine equal chunks on eight ranks: the simulator's step pays what the closed form charges for ⌈9/8⌉ = 2 on the
    busiest rank; chunks of unequal length go largest first onto the least loaded rank."""
    d = deployment("llama-4-maverick-17b-128e", 8, True)
    assert d.attention_dp_ranks == 8
    n = 9
    w = Workload(np.zeros(n), np.full(n, 512), np.full(n, 8), name="t")
    replica = Replica(d, ReplicaConfig(), RequestLog.for_workload(w))
    seqs = [Seq(i, 512, 8) for i in range(n)]
    equal = replica._rank_excess_s([(s, 512) for s in seqs])
    assert equal > 0
    assert equal == pytest.approx(float(chunks_rank_excess_s(d.step_cost(), np.array(9.0), 512.0, 0.0, 9.0)))
    # 8 chunks of 100 and one of 2,000: the long one is the busiest rank on its own
    mixed = [(s, 100) for s in seqs[:8]] + [(seqs[8], 2000)]
    cost = d.step_cost()
    total_tokens, total_pairs = 800 + 2000, 8 * 100 * 50 + 2000 * 1000
    expected = cost.rank_compute_s(2000.0, 2000.0 * 1000) - cost.rank_compute_s(total_tokens, total_pairs) / 8
    assert replica._rank_excess_s(mixed) == pytest.approx(expected)


def test_a_balancing_engine_waits_for_no_rank_once_every_rank_has_a_sequence() -> None:
    """TensorRT-LLM's attention_dp_config.enable_balance holds prompts back until every rank has one: with a sequence
    per rank in the replica no step waits for one rank's prompt, but a lone request's prompt still runs on its rank."""
    cost = deployment("qwen3-30b-a3b", 4, True, balance=True).step_cost()
    assert float(chunks_rank_excess_s(cost, np.array(1.0), 1024.0, 0.0, 4.0)) == 0.0
    lone = float(chunks_rank_excess_s(cost, np.array(1.0), 1024.0, 0.0, 1.0))
    unbalanced = deployment("qwen3-30b-a3b", 4, True).step_cost()
    assert lone > 0
    assert lone == pytest.approx(float(chunks_rank_excess_s(unbalanced, np.array(1.0), 1024.0, 0.0, 1.0)))


def test_every_ttft_path_prices_a_lone_prompt_on_its_rank_alike() -> None:
    """plan's single stream, the router's and fleet's queued TTFT, advise's chunk steps and the simulator give one
    4,096-token Maverick prompt on 8 attention-DP ranks the same first-token time."""
    d = deployment("llama-4-maverick-17b-128e", 8, True)
    plan_ttft, _ = single_stream(d, 4096, 16)
    queued = queued_ttft_s(d.step_cost(), d.token_budget, 0, 0.0, 4096)
    steps, step_s = _chunk_steps(d, np.array([0.0]), 4096.0, 0.0)
    sim = simulate(d, Workload(np.zeros(1), np.array([4096]), np.array([16]), name="one")).summary()
    assert queued == pytest.approx(plan_ttft, rel=0.02)
    assert float(steps[0] * step_s[0]) == pytest.approx(plan_ttft, rel=0.02)
    assert sim["ttft_s"]["mean"] == pytest.approx(plan_ttft, rel=0.05)
    tensor_parallel = deployment("llama-4-maverick-17b-128e", 8, False)
    assert plan_ttft > 1.3 * single_stream(tensor_parallel, 4096, 16)[0]


def test_nine_prompts_on_eight_ranks_wait_for_the_rank_with_two() -> None:
    """A batch's prompts sit whole on the ranks: nine on eight put two on one, which the others wait for."""
    d = deployment("llama-4-maverick-17b-128e", 8, True)
    one, eight, nine = (float(prefill_seconds(d, 4096, b)) for b in (1, 8, 9))
    assert nine - eight > 0.5 * one  # about one more prompt's time on the busiest rank, not 1/8 of one


def test_the_busiest_rank_is_the_one_with_the_most_compute_not_tokens() -> None:
    """A 500-token chunk deep into a 30,000-token prompt costs its rank more attention than a fresh 600-token one:
    the simulator's step waits for that rank, and never comes out faster than an even split."""
    d = deployment("qwen3-30b-a3b", 4, True)
    w = Workload(np.zeros(2), np.full(2, 40000), np.full(2, 8), name="t")
    replica = Replica(d, ReplicaConfig(), RequestLog.for_workload(w))
    fresh, deep = Seq(0, 40000, 8), Seq(1, 40000, 8)
    deep.ctx = 30000
    cost = d.step_cost()
    excess = replica._rank_excess_s([(fresh, 600), (deep, 500)])
    deep_s = cost.rank_compute_s(500.0, 500 * (30000 + 250))
    assert deep_s > cost.rank_compute_s(600.0, 600 * 300)
    total = cost.rank_compute_s(1100.0, 600 * 300 + 500 * (30000 + 250))
    assert excess == pytest.approx(deep_s - total / 4) and excess > 0


def test_independent_arrivals_share_steps_so_their_mean_excess_is_below_one_chunk_per_step() -> None:
    """Requests arriving independently put K ~ Poisson(k) prompt chunks in a step, often two side by side on two
    ranks: the mean excess is below the k·(1 − 1/R) of every chunk in a step of its own, and near it as k → 0."""
    cost = deployment("qwen3-30b-a3b", 4, True).step_cost()
    lone = cost.rank_compute_s(2048.0, 2048.0 * 1024) * 3 / 4
    for k in (0.6, 2.0):
        mean = float(poisson_rank_excess_s(cost, np.array(k), 2048.0, 0.0, 1.0))
        assert 0 < mean < min(k, 1.0) * lone
    tiny = float(poisson_rank_excess_s(cost, np.array(0.01), 2048.0, 0.0, 1.0))
    assert tiny == pytest.approx(0.01 * lone, rel=0.02)
