"""The hourly mix: the bisected reserved count is the exact optimum, and the day plan adds up."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenomy.advise.hourly import daily_cost_usd, hour_cost_usd, optimal_reserved, plan_day


def brute_force(rates, capacity, reserved_usd, on_demand_usd, api_usd) -> float:  # noqa: ANN001
    peak = int(np.ceil(rates.max() / capacity)) + 1
    return min(
        24 * r * reserved_usd
        + hour_cost_usd(np.maximum(rates - r * capacity, 0), capacity, on_demand_usd, api_usd).sum()
        for r in range(peak + 1)
    )


@pytest.mark.parametrize("seed", range(40))
def test_daily_cost_is_the_brute_force_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0, 20, 24) * rng.uniform(0.2, 3)
    capacity, on_demand = rng.uniform(0.5, 8), rng.uniform(1, 10)
    reserved = on_demand * rng.uniform(0.3, 1.0)
    api = math.inf if seed % 3 == 0 else rng.uniform(1e-5, 3e-3)
    usd, _ = daily_cost_usd(rates, capacity, reserved, on_demand, api)
    assert usd == pytest.approx(brute_force(rates, capacity, reserved, on_demand, api), rel=1e-9)
    plan = plan_day(rates, capacity, reserved, on_demand, api)
    assert plan.usd_per_day == pytest.approx(usd, rel=1e-9)
    served = np.minimum(plan.replicas * capacity, rates) + plan.api_rps
    assert np.all(served >= rates - 1e-9)  # every hour's traffic has a home


def test_vectorised_over_candidates_matches_one_at_a_time() -> None:
    rates = np.array([1.0] * 8 + [6.0] * 10 + [2.0] * 6)
    caps, res, od = np.array([1.0, 2.5, 7.0]), np.array([1.3, 2.0, 9.0]), np.array([1.85, 3.0, 12.0])
    together, r_together = daily_cost_usd(rates, caps, res, od, 0.0005)
    for i in range(3):
        one, r_one = daily_cost_usd(rates, caps[i], res[i], od[i], 0.0005)
        assert together[i] == pytest.approx(one) and r_together[i] == r_one


def test_reserve_only_what_is_busy_long_enough() -> None:
    """With no API, the R-th replica is reserved iff at least 24·p_r/p_o hours need R replicas."""
    rates = np.array([3.0] * 12 + [1.0] * 12)  # 3 replicas for 12 h, 1 replica all day
    assert optimal_reserved(rates, 1.0, 1.0, 2.0, math.inf) == 3  # 12 h × $2 ≥ 24 h × $1
    assert optimal_reserved(rates, 1.0, 1.5, 2.0, math.inf) == 1  # 12 h × $2 < 24 h × $1.5
