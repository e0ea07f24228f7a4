"""Escalation math: the closed form against a Monte-Carlo simulation, the issue's example, and the break-even."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenomy.costmodel.escalation import (
    EscalationTier,
    break_even_pass_rate,
    estimate_chain,
    expected_cost_usd,
    latency_of_valid_s,
    reach_probability,
    usd_per_valid_answer,
    valid_probability,
)

CHAIN = [
    EscalationTier("small-int4", 0.0004, 0.8, 0.62, validation_usd=0.00005, validation_latency_s=0.05),
    EscalationTier("70b-fp8", 0.0030, 2.1, 0.85, validation_usd=0.00005, validation_latency_s=0.05),
    EscalationTier("api", 0.0120, 3.5, 0.93, validation_usd=0.00005, validation_latency_s=0.05),
]


def simulate(tiers: list[EscalationTier], n_requests: int, seed: int) -> dict[str, float]:
    """Send n requests down the chain, drawing each attempt's pass/fail; return the measured averages."""
    rng = np.random.default_rng(seed)
    p = np.array([t.pass_rate for t in tiers])
    passes = rng.random((n_requests, len(tiers))) < p
    any_pass = passes.any(axis=1)
    answered_by = np.where(any_pass, passes.argmax(axis=1), len(tiers) - 1)  # last tier answers regardless
    cost_so_far = np.cumsum([t.attempt_usd for t in tiers])[answered_by]
    time_so_far = np.cumsum([t.attempt_latency_s for t in tiers])[answered_by]
    return {
        "usd_per_request": cost_so_far.mean(),
        "usd_per_valid_answer": cost_so_far.sum() / any_pass.sum(),
        "latency_s": time_so_far.mean(),
        "latency_of_valid_s": time_so_far[any_pass].mean(),
        "valid_probability": any_pass.mean(),
        "escalations_per_request": answered_by.mean(),
    }


def test_closed_form_agrees_with_monte_carlo_within_one_percent():
    estimate = estimate_chain(CHAIN)
    measured = simulate(CHAIN, n_requests=400_000, seed=7)
    for key, value in measured.items():
        assert getattr(estimate, key) == pytest.approx(value, rel=0.01), key


def test_reach_probabilities_are_products_of_earlier_failures():
    r = reach_probability([0.7, 0.5, 0.9])
    np.testing.assert_allclose(r, [1.0, 0.3, 0.15])
    assert float(valid_probability([0.7, 0.5, 0.9])) == pytest.approx(1 - 0.3 * 0.5 * 0.1)


def test_seventy_percent_at_a_tenth_of_the_price_halves_cost_per_valid_answer():
    cheap = EscalationTier("cheap", usd_per_request=0.001, latency_s=0.5, pass_rate=0.70)
    top = EscalationTier("top", usd_per_request=0.010, latency_s=2.0, pass_rate=0.98)
    chain, top_only = estimate_chain([cheap, top]), estimate_chain([top])
    assert top_only.usd_per_valid_answer / chain.usd_per_valid_answer >= 2.0
    assert chain.usd_per_request == pytest.approx(0.001 + 0.3 * 0.010)


def test_two_tier_break_even_is_the_price_ratio():
    assert float(break_even_pass_rate(0.001, [0.010], [1.0])) == pytest.approx(0.1, rel=1e-12)


@pytest.mark.parametrize("rest", [[1.0], [0.9], [0.85, 0.93]])
def test_at_the_break_even_pass_rate_trying_the_cheap_tier_first_costs_exactly_the_same(rest: list[float]):
    first_usd, rest_usd = 0.0012, [0.003, 0.012][: len(rest)]
    p_star = float(break_even_pass_rate(first_usd, rest_usd, rest))
    rest_only = float(usd_per_valid_answer(rest_usd, rest))

    def chain_cost(p: float) -> float:
        return float(usd_per_valid_answer([first_usd, *rest_usd], [p, *rest]))

    assert chain_cost(p_star) == pytest.approx(rest_only, rel=1e-12)
    assert chain_cost(p_star + 0.01) < rest_only < chain_cost(p_star - 0.01)


def test_break_even_counts_validation_cost():
    cheap = EscalationTier("cheap", 0.001, 0.5, 0.5, validation_usd=0.001)
    top = EscalationTier("top", 0.010, 2.0, 1.0)
    assert estimate_chain([cheap, top]).break_even_pass_rate == pytest.approx(0.2)


def test_functions_are_vectorised_over_a_sweep_of_pass_rates():
    first = np.linspace(0.0, 1.0, 11)
    pass_rates = np.column_stack([first, np.full_like(first, 0.95)])
    costs = usd_per_valid_answer([0.001, 0.01], pass_rates)
    one_by_one = [float(usd_per_valid_answer([0.001, 0.01], row)) for row in pass_rates]
    assert costs.shape == (11,)
    np.testing.assert_allclose(costs, one_by_one)
    assert np.all(np.diff(costs) < 0)  # a better cheap tier is always cheaper per valid answer
    np.testing.assert_allclose(expected_cost_usd([0.001, 0.01], pass_rates), 0.001 + (1 - first) * 0.01)


def test_single_tier_chain():
    estimate = estimate_chain([EscalationTier("only", 0.01, 1.0, 0.8)])
    assert estimate.usd_per_valid_answer == pytest.approx(0.01 / 0.8)
    assert estimate.latency_of_valid_s == pytest.approx(1.0)
    assert estimate.escalations_per_request == 0.0 and math.isnan(estimate.break_even_pass_rate)


def test_no_valid_answer_possible():
    assert float(usd_per_valid_answer([0.01], [0.0])) == math.inf
    assert math.isnan(float(latency_of_valid_s([1.0], [0.0])))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reach_probability([0.5, 1.2])
    with pytest.raises(ValueError, match="at least one tier"):
        estimate_chain([])
