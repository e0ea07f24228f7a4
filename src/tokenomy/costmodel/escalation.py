"""Validate and escalate: cost, latency and validity of a chain of tiers tried cheapest first.

A request goes to tier 1 and its answer is validated; when it fails, tier 2 is asked, and so on. The last
tier's answer is returned whatever it is (and counted failed when it does not pass). Every attempt is paid
for: the tier's price for the request plus its validation (validators and judge calls).

With p_i the pass rate of tier i for a request class, c_i the cost of an attempt and t_i its latency:

- tier i is reached with probability r_i = Π_{j<i} (1 − p_j);
- expected cost per request C = Σ_i r_i c_i, expected latency per request T = Σ_i r_i t_i;
- the final answer is valid with probability V = 1 − Π_i (1 − p_i), so the cost per valid answer is C / V;
- a valid answer from tier i took T_i = Σ_{j≤i} t_j, so the mean latency of valid answers is Σ_i r_i p_i T_i / V.

Functions take arrays whose last axis is the tier (leading axes broadcast, e.g. a sweep over pass rates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class EscalationTier:
    """One tier of a chain, for one request class."""

    name: str
    usd_per_request: float  # the tier's price for one request of this class
    latency_s: float  # end-to-end time of one request on this tier
    pass_rate: float  # fraction of this tier's answers for this class that pass validation (0-1)
    validation_usd: float = 0.0  # per attempt: judge calls (cheap validators cost ~0)
    validation_latency_s: float = 0.0  # per attempt

    @property
    def attempt_usd(self) -> float:
        """Cost of one attempt: c = price + validation."""
        return self.usd_per_request + self.validation_usd

    @property
    def attempt_latency_s(self) -> float:
        """Time of one attempt: t = latency + validation latency."""
        return self.latency_s + self.validation_latency_s


def _rates(pass_rates: ArrayLike) -> np.ndarray:
    p = np.asarray(pass_rates, dtype=float)
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError("pass_rates needs at least one tier on its last axis")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("pass rates must lie in [0, 1]")
    return p


def reach_probability(pass_rates: ArrayLike) -> np.ndarray:
    """r_i = Π_{j<i} (1 − p_j): the probability that tier i is asked (r_1 = 1)."""
    fail = 1.0 - _rates(pass_rates)
    ones = np.ones(fail.shape[:-1] + (1,))
    return np.concatenate([ones, np.cumprod(fail[..., :-1], axis=-1)], axis=-1)


def valid_probability(pass_rates: ArrayLike) -> np.ndarray:
    """V = 1 − Π_i (1 − p_i): the probability that the returned answer passes validation."""
    return 1.0 - np.prod(1.0 - _rates(pass_rates), axis=-1)


def expected_cost_usd(attempt_usd: ArrayLike, pass_rates: ArrayLike) -> np.ndarray:
    """C = Σ_i r_i c_i: expected cost per request, every attempt paid for."""
    return np.sum(reach_probability(pass_rates) * np.asarray(attempt_usd, dtype=float), axis=-1)


def expected_latency_s(attempt_latency_s: ArrayLike, pass_rates: ArrayLike) -> np.ndarray:
    """T = Σ_i r_i t_i: expected latency per request, attempts one after another."""
    return np.sum(reach_probability(pass_rates) * np.asarray(attempt_latency_s, dtype=float), axis=-1)


def usd_per_valid_answer(attempt_usd: ArrayLike, pass_rates: ArrayLike) -> np.ndarray:
    """C / V: total spend divided by the number of valid answers (inf when no answer can be valid)."""
    cost, valid = expected_cost_usd(attempt_usd, pass_rates), valid_probability(pass_rates)
    return np.divide(cost, valid, out=np.full_like(valid, np.inf), where=valid > 0)


def latency_of_valid_s(attempt_latency_s: ArrayLike, pass_rates: ArrayLike) -> np.ndarray:
    """E[T | valid] = Σ_i r_i p_i T_i / V with T_i = Σ_{j≤i} t_j (nan when no answer can be valid)."""
    p = _rates(pass_rates)
    cumulative_s = np.cumsum(np.broadcast_to(np.asarray(attempt_latency_s, dtype=float), p.shape), axis=-1)
    weighted = np.sum(reach_probability(p) * p * cumulative_s, axis=-1)
    valid = valid_probability(p)
    return np.divide(weighted, valid, out=np.full_like(valid, np.nan), where=valid > 0)


def expected_escalations(pass_rates: ArrayLike) -> np.ndarray:
    """E[escalations] = Σ_{i≥2} r_i: mean number of tiers asked after the first."""
    return np.sum(reach_probability(pass_rates)[..., 1:], axis=-1)


def break_even_pass_rate(
    first_attempt_usd: ArrayLike, rest_attempt_usd: ArrayLike, rest_pass_rates: ArrayLike
) -> np.ndarray:
    """p* = c_1 · V_rest / C_rest: below this pass rate, trying tier 1 first costs more per valid answer.

    Chain (1, rest) vs rest alone: (c_1 + (1 − p) C_rest) / (p + (1 − p) V_rest) ≤ C_rest / V_rest ⇔ p ≥ p*.
    With a rest that always passes (V_rest = 1) this is also the per-request break-even c_1 / C_rest, i.e.
    c_1 / c_2 for two tiers. Above 1: trying tier 1 first never pays.
    """
    rest_cost = expected_cost_usd(rest_attempt_usd, rest_pass_rates)
    rest_valid = valid_probability(rest_pass_rates)
    numerator = np.asarray(first_attempt_usd, dtype=float) * rest_valid
    return np.divide(numerator, rest_cost, out=np.full_like(numerator, np.inf), where=rest_cost > 0)


@dataclass(frozen=True)
class ChainEstimate:
    """What an escalation chain is expected to cost and deliver per request of one class."""

    tiers: tuple[str, ...]
    reach_probability: tuple[float, ...]  # per tier: probability it is asked
    usd_per_request: float
    usd_per_valid_answer: float
    latency_s: float  # mean over all requests
    latency_of_valid_s: float  # mean over requests whose answer is valid
    valid_probability: float
    escalations_per_request: float
    break_even_pass_rate: float  # of the first tier against the rest of the chain; nan for one tier


def estimate_chain(tiers: Sequence[EscalationTier]) -> ChainEstimate:
    """The closed-form estimate of a chain, cheapest tier first."""
    if not tiers:
        raise ValueError("an escalation chain needs at least one tier")
    pass_rates = [t.pass_rate for t in tiers]
    attempt_usd = [t.attempt_usd for t in tiers]
    attempt_latency_s = [t.attempt_latency_s for t in tiers]
    break_even = (
        float(break_even_pass_rate(attempt_usd[0], attempt_usd[1:], pass_rates[1:])) if len(tiers) > 1 else math.nan
    )
    return ChainEstimate(
        tiers=tuple(t.name for t in tiers),
        reach_probability=tuple(float(r) for r in reach_probability(pass_rates)),
        usd_per_request=float(expected_cost_usd(attempt_usd, pass_rates)),
        usd_per_valid_answer=float(usd_per_valid_answer(attempt_usd, pass_rates)),
        latency_s=float(expected_latency_s(attempt_latency_s, pass_rates)),
        latency_of_valid_s=float(latency_of_valid_s(attempt_latency_s, pass_rates)),
        valid_probability=float(valid_probability(pass_rates)),
        escalations_per_request=float(expected_escalations(pass_rates)),
        break_even_pass_rate=break_even,
    )
