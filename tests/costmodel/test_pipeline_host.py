"""Pipeline rounds: every rank's executor schedules and prepares every micro-batch, so each stage pays every
micro-batch's host work in full and only its share of their GPU work (`perf.pipeline_round_s`).

The closed forms (`steady_state`) and the simulator's executor follow the same rule; the simulator is the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import load_profile
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import decode_step_seconds, pipeline_round_s, steady_state
from tokenomy.sim.metrics import RequestLog
from tokenomy.sim.replica import Replica, ReplicaConfig
from tokenomy.sim.run import simulate
from tokenomy.sim.workload import Workload


def dep(pp: int, seq_cost_s: float | None = None) -> Deployment:
    """Llama 3.3 70B in NVFP4 over pp RTX PRO 6000 (PCIe, as NVIDIA's pipeline tables ran it), TensorRT-LLM."""
    profile = load_profile("tensorrt-llm")
    if seq_cost_s is not None:
        profile = profile.with_sequence_cost(seq_cost_s)
    model, gpu = load_model("llama-3.3-70b"), load_accelerator("RTX-PRO-6000")
    return Deployment(model, gpu, 1, pp, "nvfp4", "auto", profile)


def test_round_pays_every_micro_batch_host_work_on_each_stage() -> None:
    """Four alike micro-batches of 10 ms, 2 ms of it host work, over 4 stages: 4 × (2 + 8/4) = 16 ms, where
    without host work the round is one micro-batch's 10 ms; one micro-batch alone still takes its 10 ms."""
    assert pipeline_round_s([10.0] * 4, 4, [2.0] * 4) == pytest.approx(16.0)
    assert pipeline_round_s([10.0] * 4, 4) == pytest.approx(10.0)
    assert pipeline_round_s([10.0, 0.0, 0.0, 0.0], 4, [2.0, 0.0, 0.0, 0.0]) == pytest.approx(10.0)
    # a slow micro-batch still sets the round when the stages' load is lighter
    assert pipeline_round_s([40.0, 4.0, 4.0, 4.0], 4, [1.0] * 4) == pytest.approx(40.0)


def test_host_work_grows_a_full_round_by_pp_minus_one_micro_batches_of_it() -> None:
    """A decode round of 256 rows over pp = 8 stages: the closed form's round is one micro-batch of 32 rows plus
    7 of its host parts (step overhead + per-sequence cost); the steady state decodes a shade under 32 rows per
    micro-batch (one request in 2,049 is prefilling), hence the 0.2% tolerance."""
    d = dep(8)
    ss = steady_state(d, 128, 2048, 256)
    mb = float(decode_step_seconds(d, 32, 128 + 1024))
    host = d.step_cost().host_seconds(32)
    assert host > 0
    assert float(ss.decode_seconds) == pytest.approx(mb + 7 * host, rel=2e-3)
    assert float(ss.decode_seconds) > mb * 1.05


def test_decode_heavy_pipelines_lose_throughput_per_gpu_as_pp_grows() -> None:
    """Throughput per GPU from pp = 2 to pp = 8 at 64 requests per stage, 128 in / 2,048 out: large micro-batches,
    whose host work every stage pays, keep under 85% of it (NVIDIA's RTX PRO 6000 tables: 4,993 → 9,833 tok/s,
    49%); with the host work split over the stages, as before, the model kept all of it."""
    rates = [float(steady_state(dep(pp), 128, 2048, 64 * pp, cohorts=True).output_tokens_per_s) / pp for pp in (2, 8)]
    assert rates[1] / rates[0] < 0.85


def test_without_host_work_the_round_is_unchanged() -> None:
    """With no step overhead and no per-sequence cost a full decode round is one micro-batch's trip, as before
    (to the 0.2% of rows prefilling, as above)."""
    d = dep(4, seq_cost_s=0.0)
    d = Deployment(d.model, d.gpu, 1, 4, "nvfp4", "auto", d.profile.with_values(step_overhead_s=0.0))
    ss = steady_state(d, 128, 2048, 128)
    assert float(ss.decode_seconds) == pytest.approx(float(decode_step_seconds(d, 32, 128 + 1024)), rel=2e-3)


@pytest.mark.parametrize("pp", [2, 4])
def test_simulated_decode_rounds_match_the_closed_form(pp: int) -> None:
    """The simulator's decode-only rounds (its fast path and its round-by-round one) last what the closed form
    says: 32 requests per stage, 64 in / 512 out, every request queued at once."""
    d = dep(pp)
    n = 32 * pp
    w = Workload(np.zeros(n), np.full(n, 64), np.full(n, 512))
    result = simulate(d, w, ReplicaConfig()).summary()
    tpot = result["tpot_s"]["mean"]
    closed = float(steady_state(d, 64, 512, n, cohorts=True).tpot_s)
    assert tpot == pytest.approx(closed, rel=0.05)


@pytest.mark.parametrize(("b", "pp"), [(3, 4), (7, 8), (10, 4), (13, 8), (64, 8)])
def test_fast_decode_rounds_equal_the_round_by_round_ones(b: int, pp: int) -> None:
    """The simulator's decode spans (`_decode_seconds`, and `_decode_curve` where it gives one) time a round as its
    round-by-round path does, with fewer rows than stages and with rows that do not split evenly."""
    replica = Replica(dep(pp), ReplicaConfig(), RequestLog.for_workload(Workload(np.zeros(1), np.ones(1), np.ones(1))))
    ctx = 1500.0 * b
    exact = replica._round_seconds([], b, ctx)
    assert replica._decode_seconds(b, ctx) == pytest.approx(exact, rel=1e-12)
    curve = replica._decode_curve(b)
    assert (curve is not None) == (b % pp == 0)  # one curve only where the rows split evenly
    if curve is not None:
        assert curve.seconds(ctx) == pytest.approx(exact, rel=1e-9)


def test_replica_rounds_pay_host_work_per_micro_batch() -> None:
    """A replica's decode round of 8 rows over 4 stages: one micro-batch of 2 rows plus 3 of its host parts."""
    d = dep(4)
    replica = Replica(d, ReplicaConfig(), RequestLog.for_workload(Workload(np.zeros(1), np.ones(1), np.ones(1))))
    cost = d.step_cost()
    expected = cost.seconds(2, 2, 200.0, 200.0) + 3 * cost.host_seconds(2)
    assert replica._decode_seconds(8, 800.0) == pytest.approx(expected, rel=1e-9)
