"""Stage 2 and the plan: both estimates side by side, agreement within the stated tolerance or flagged,
infeasible targets answered with the best reachable values, and a plan that respects the floors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.advise.conftest import SIM_REQUESTS, small_workload
from tokenomy.advise.advisor import CAPACITY_TOLERANCE, TPOT_TOLERANCE, advise
from tokenomy.advise.output import estimates


def test_verified_candidates_carry_both_estimates_and_an_honest_agreement_flag(small_advice) -> None:
    table = small_advice.table
    assert len(small_advice.verified) == 4
    for e, v in zip(estimates(small_advice), small_advice.verified, strict=True):
        cf, sim = e["closed_form"], e["simulated"]
        assert cf["capacity_rps"] > 0 and sim["probes"] and sim["probes"][0]["fraction"] == 1.0
        assert sim["tpot_mean_s"] > 0 and cf["tpot_mean_s"] > 0
        within = abs(e["capacity_diff"]) <= CAPACITY_TOLERANCE + 1e-9 and abs(e["tpot_diff"]) <= TPOT_TOLERANCE
        assert e["agrees"] == within
        assert v.capacity_sim_rps <= v.capacity_cf_rps  # probing only ever lowers the rate
        assert table.feasible()[v.row]


def test_closed_form_tpot_agrees_with_the_simulator_on_the_best_candidates(small_advice) -> None:
    """The mean TPOT at the closed-form capacity: within the stated tolerance for the candidates verified."""
    diffs = [abs(e["tpot_diff"]) for e in estimates(small_advice)]
    assert max(diffs) <= TPOT_TOLERANCE, diffs


def test_the_plan_serves_every_class_above_its_floors(small_advice) -> None:
    wl = small_advice.workload
    served = set()
    for tier in small_advice.tiers:
        for c in tier.group.classes:
            served.add(c.name)
            if tier.row is not None:
                key = small_advice.table.keys[small_advice.table.dep[tier.row]]
                assert wl.quality.model_meets(key.model, key.precision, c.spec.quality)
            if tier.group.api:
                assert wl.quality.api_meets(tier.group.api.per_class[c.name].name, c.spec.quality)
    assert served == {c.name for c in wl.classes}


def test_replicas_per_hour_carry_the_traffic(small_advice) -> None:
    for tier in small_advice.tiers:
        if tier.day is None:
            continue
        on_gpu = np.minimum(tier.day.replicas * tier.capacity_rps, tier.group.rates_rps)
        assert np.all(on_gpu + tier.day.api_rps >= tier.group.rates_rps - 1e-9)


def test_an_unreachable_floor_gets_the_best_published_score_and_a_plan() -> None:
    wl = small_workload(**{"classes.code.quality": {"humaneval": 99.0}})
    advice = advise(wl, verify=2, sim_requests=SIM_REQUESTS)
    problem = next(p for p in advice.infeasible if p.cls == "code")
    assert problem.what == "quality floor humaneval" and problem.asked == 99.0
    assert problem.best_reachable == 94.5 and "OpenAI/gpt-4.1" in problem.by  # the best published HumanEval
    assert "94.5" in problem.needed
    assert {c.name for t in advice.tiers for c in t.group.classes} == {"chat", "code"}
    code = next(t for t in advice.tiers if "code" in [c.name for c in t.group.classes])
    assert math.isfinite(code.usd_per_day)


def test_an_unreachable_slo_gets_the_best_reachable_latency_and_a_relaxed_plan() -> None:
    wl = small_workload(
        **{"classes.chat.slo": {"ttft_s": 0.001, "tpot_s": 0.05, "attainment": 0.99}, "classes.chat.allow_api": False}
    )
    advice = advise(wl, verify=2, sim_requests=SIM_REQUESTS)
    problem = next(p for p in advice.infeasible if p.cls == "chat" and p.what == "ttft_s")
    assert problem.asked == 0.001 and problem.best_reachable > 0.001
    assert problem.planned_with == pytest.approx(problem.best_reachable * 1.25)
    assert "even unloaded" in problem.needed
    chat = next(t for t in advice.tiers if "chat" in [c.name for c in t.group.classes])
    assert chat.row is not None and chat.usd_per_day > 0  # a plan, not an empty result


def test_a_floor_relaxes_to_the_best_model_that_fits_a_candidate_replica() -> None:
    """Without APIs and with at most 2 GPUs per replica, the 405B (88.6) cannot be served: 70B (86.0) is the best."""
    wl = small_workload(
        **{
            "classes.chat.quality": {"mmlu_cot": 95},
            "classes.chat.allow_api": False,
            "candidates.tensor_parallel": [1, 2],
        }
    )
    advice = advise(wl, verify=2, sim_requests=SIM_REQUESTS)
    problem = next(p for p in advice.infeasible if p.cls == "chat")
    assert problem.best_reachable == 86.0 and problem.by == "llama-3.1-70b bf16"
    assert "llama-3.1-405b bf16 scores 88.6 but fits no candidate replica" in problem.needed
    chat = next(t for t in advice.tiers if [c.name for c in t.group.classes] == ["chat"])
    assert advice.table.keys[advice.table.dep[chat.row]].model == "llama-3.1-70b"
