"""Offline runs of fixed-length requests: cohorts through a pipeline, a run of N requests as a benchmark times it.

TensorRT-LLM's offline runs (full-length KV admission, trtllm-bench's limits), the tables the rule was made for;
the simulator's offline run is the reference.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.calibrate.measurement_rows import measurement
from tokenomy.calibrate.measurements import Measurement
from tokenomy.calibrate.predict import predict
from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment, offline_deployment
from tokenomy.costmodel.perf import max_batch, offline_run_tokens_per_s, offline_throughput, steady_state
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload


def dep(pp: int = 1) -> Deployment:
    model, gpu = load_model("llama-3.1-8b"), load_accelerator("H100-SXM")
    return Deployment(model, gpu, 1, pp, "fp8", "auto", load_profile("tensorrt-llm"))


def simulated_offline_tps(d: Deployment, isl: int, osl: int, requests: int) -> float:
    """Output tokens/s of the simulator's offline run (every request queued at t = 0, fixed lengths), with the
    limits the engine's offline benchmark sets."""
    w = Workload(np.zeros(requests), np.full(requests, isl), np.full(requests, osl))
    return simulate(offline_deployment(d, isl, osl), w, ReplicaConfig()).summary()["throughput"]["output_tokens_per_s"]


def batch_of(d: Deployment, isl: int, osl: int) -> int:
    return max_batch(offline_deployment(d, isl, osl), isl, osl)


def test_pipeline_cohorts_match_the_simulated_offline_run() -> None:
    """tp1·pp4, 8,192 in / 1,024 out, four cohorts: the cohort closed form within 5% of the simulator. So is the
    staggered steady state (one micro-batch carrying the round's prompt), which was over 10% short of it while a
    round lasted its slowest micro-batch; bounded by a stage's load too (every micro-batch's host work and its share
    of their GPU work, `pipeline_round_s`), where the prompt rides matters less."""
    d, isl, osl = dep(pp=4), 8192, 1024
    batch = batch_of(d, isl, osl)
    simulated = simulated_offline_tps(d, isl, osl, 4 * batch)
    cohorts = float(offline_throughput(d, isl, osl).output_tokens_per_s[()])
    staggered = float(steady_state(offline_deployment(d, isl, osl), isl, osl, batch).output_tokens_per_s[()])
    print(f"\n  pp4 offline: cohorts {cohorts:,.0f}, staggered {staggered:,.0f}, simulated {simulated:,.0f} tok/s")
    assert abs(cohorts - simulated) / simulated < 0.05
    assert abs(staggered - simulated) / simulated < 0.05


def test_cohorts_need_a_pipeline_with_every_stage_busy() -> None:
    for d, batch in ((dep(), 64), (dep(pp=4), 3)):  # one stage; fewer requests than stages
        with_cohorts = steady_state(d, 2048, 512, batch, cohorts=True).output_tokens_per_s
        assert float(with_cohorts[()]) == pytest.approx(
            float(steady_state(d, 2048, 512, batch).output_tokens_per_s[()])
        )


def moe_dep(model: str, tp: int) -> Deployment:
    """tp H200s running an MoE model under TensorRT-LLM's attention-DP recipe (the profile's moe_attention_dp)."""
    profile = load_profile("tensorrt-llm").with_values(moe_attention_dp=True, attention_dp_balance=False)
    return Deployment(load_model(model), load_accelerator("H200-SXM"), tp, 1, "fp8", "auto", profile)


@pytest.mark.parametrize(
    ("model", "tp", "isl", "osl"),
    [("llama-4-maverick-17b-128e", 8, 8192, 256), ("qwen3-30b-a3b", 4, 8192, 1024)],
)
def test_an_attention_dp_cohort_prefills_on_every_rank_as_the_simulator_runs_it(
    model: str, tp: int, isl: int, osl: int
) -> None:
    """Two cohorts of long prompts under attention DP: every rank prefills its own share of a cohort, so the closed
    form (plan, validate) stays within 10% of the simulated run. Charging each step's few chunks to one rank, as
    independently arriving requests are, left it 35% short for Maverick on 8 ranks."""
    d = moe_dep(model, tp)
    assert d.attention_dp_ranks == tp
    requests = 2 * batch_of(d, isl, osl)
    simulated = simulated_offline_tps(d, isl, osl, requests)
    closed = offline_run_tokens_per_s(d, isl, osl, requests)
    print(f"\n  {model} tp{tp} {isl}/{osl}: closed form {closed:,.0f}, simulated {simulated:,.0f} tok/s")
    assert abs(closed - simulated) / simulated < 0.10


def test_sliding_window_layers_hold_more_requests_in_the_simulator_as_in_the_closed_form() -> None:
    """gpt-oss-120b on one H200, 1,024 in / 8,192 out: its sliding-window layers keep 128 tokens, so the KV pool holds
    more long requests than a full-attention count says; the simulator's pool sizes itself as the closed form does
    (within 5%; 0.64× of the closed form when it counted every layer at full length)."""
    d = Deployment(
        load_model("gpt-oss-120b"),
        load_accelerator("H200-SXM"),
        1,
        1,
        "mxfp4-experts",
        "auto",
        load_profile("tensorrt-llm"),
    )
    assert d.model.n_sliding_layers
    isl, osl = 1024, 8192
    requests = 2 * batch_of(d, isl, osl)
    simulated = simulated_offline_tps(d, isl, osl, requests)
    closed = offline_run_tokens_per_s(d, isl, osl, requests)
    print(f"\n  gpt-oss-120b 1024/8192: closed form {closed:,.0f}, simulated {simulated:,.0f} tok/s")
    assert abs(closed - simulated) / simulated < 0.05


@pytest.mark.parametrize("requests", [2, 7, 9])
def test_a_cohort_not_a_multiple_of_the_ranks_waits_for_its_busiest_rank_as_simulated(requests: int) -> None:
    """One cohort of 2, 7 or 9 long prompts on 8 attention-DP ranks: they prefill side by side, ⌈b/8⌉ on the busiest
    rank, and the closed form stays within 6% of the simulated run (0.63× for 7 when each step's chunks sat on one
    rank); side by side, a cohort beats requests arriving one by one (the staggered steady state)."""
    d = moe_dep("llama-4-maverick-17b-128e", 8)
    simulated = simulated_offline_tps(d, 8192, 256, requests)
    closed = offline_run_tokens_per_s(d, 8192, 256, requests)
    staggered = float(steady_state(offline_deployment(d, 8192, 256), 8192, 256, requests).output_tokens_per_s[()])
    assert abs(closed - simulated) / simulated < 0.06
    assert closed > 1.05 * staggered


def test_a_run_of_whole_cohorts_runs_at_the_steady_rate_and_a_thin_last_one_costs() -> None:
    d, isl, osl = dep(), 1024, 1024
    batch = batch_of(d, isl, osl)
    endless = offline_run_tokens_per_s(d, isl, osl, None)
    assert offline_run_tokens_per_s(d, isl, osl, 3 * batch) == pytest.approx(endless)
    assert offline_run_tokens_per_s(d, isl, osl, 3 * batch + 1) < 0.97 * endless  # a fourth cohort: one request
    assert offline_run_tokens_per_s(d, isl, osl, 300 * batch + 1) == pytest.approx(endless, rel=0.01)


@pytest.mark.parametrize("extra", [1, 0.5])
def test_a_run_with_a_thin_last_cohort_matches_the_simulator(extra: float) -> None:
    """One cohort of 1,024/1,024 on one H100 and then one more request, or half a cohort: within 3% of the
    simulated run, and below the endless run's rate."""
    d, isl, osl = dep(), 1024, 1024
    batch = batch_of(d, isl, osl)
    requests = batch + max(int(extra * batch), 1) if extra < 1 else batch + 1
    simulated = simulated_offline_tps(d, isl, osl, requests)
    closed = offline_run_tokens_per_s(d, isl, osl, requests)
    print(f"\n  {requests} requests: closed form {closed:,.0f}, simulated {simulated:,.0f} tok/s")
    assert abs(closed - simulated) / simulated < 0.03
    assert closed < 0.97 * offline_run_tokens_per_s(d, isl, osl, None)


def test_a_run_needs_a_request() -> None:
    with pytest.raises(ValueError, match="at least one request"):
        offline_run_tokens_per_s(dep(), 1024, 1024, 0)


def offline_row(load_value: float | None, num_gpus: int = 1) -> Measurement:
    return measurement(load_value=load_value, num_gpus=num_gpus)


def test_an_offline_row_with_its_request_count_is_predicted_as_that_run() -> None:
    endless = predict(offline_row(None)).value
    batch = batch_of(dep(), 1024, 1024)
    assert predict(offline_row(float(batch))).value == pytest.approx(endless)
    assert predict(offline_row(float(batch + 1))).value < 0.97 * endless


def test_requests_over_replicas_end_when_the_busiest_replica_ends() -> None:
    batch = batch_of(dep(), 1024, 1024)
    one = predict(offline_row(None)).value
    assert predict(offline_row(float(2 * batch), num_gpus=2)).value == pytest.approx(2 * one)
    assert predict(offline_row(float(2 * batch + 1), num_gpus=2)).value < 0.97 * 2 * one
    # a single request on two GPUs runs on one of them: no faster than on one GPU
    assert predict(offline_row(1.0, num_gpus=2)).value == pytest.approx(predict(offline_row(1.0)).value)


@pytest.mark.parametrize("load_value", [0.0, 2.5, float("inf")])
def test_an_offline_request_count_that_is_not_a_whole_number_is_skipped_with_its_reason(load_value: float) -> None:
    p = predict(replace(offline_row(None), load_value=load_value))
    assert p.value is None
    assert "counts the run's requests" in p.skipped_reason and f"{load_value:g}" in p.skipped_reason
