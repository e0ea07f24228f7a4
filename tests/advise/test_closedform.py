"""The queueing formulas of the closed form against textbook values."""

from __future__ import annotations

import numpy as np
import pytest

from tokenomy.advise.closedform import erlang_c, mg1_wait_tail_s, slot_wait_tail_s


def test_erlang_c_matches_textbook_values() -> None:
    assert erlang_c(np.array(1.0), np.array(0.6)) == pytest.approx(0.6)  # M/M/1: P(wait) = ρ
    assert erlang_c(np.array(2.0), np.array(1.0)) == pytest.approx(1 / 3)  # c=2, a=1
    assert erlang_c(np.array(10.0), np.array(12.0)) == 1.0  # overloaded
    big = erlang_c(np.array([256.0]), np.array([200.0]))
    assert 0 <= big[0] < 1e-3  # many slots at 78% load rarely queue


def test_mg1_mean_wait_is_pollaczek_khinchine() -> None:
    """M/M/1 has E[S²] = 2/μ²; the tail formula ln(ρ/q)·E[W]/ρ is the exact M/M/1 waiting-time quantile."""
    lam, mu = 0.8, 1.0
    exact_p99 = np.log(0.8 / 0.01) / (mu - lam)
    assert mg1_wait_tail_s(np.array(lam), np.array(1 / mu), np.array(2 / mu**2), 0.01) == pytest.approx(exact_p99)
    assert np.isinf(mg1_wait_tail_s(np.array(1.2), np.array(1.0), np.array(2.0), 0.01))


def test_slot_wait_matches_mmc_quantile() -> None:
    """M/M/1 through the Erlang-C form: P(W > t) = ρ·exp(−(μ − λ)t)."""
    lam, service = 0.5, 1.0
    expected = np.log(0.5 / 0.01) / (1 - lam)
    assert slot_wait_tail_s(np.array(1.0), np.array(lam * service), np.array(service), 0.01) == pytest.approx(expected)
