"""Hour by hour: a reserved baseline billed all day, whole on-demand replicas for the rest, or the API.

For one tier with a per-replica capacity c (req/s that still meet the SLOs), on-demand price p_o and
reserved price p_r per replica-hour, and an API costing a per request (inf where no API may serve
the traffic), an hour whose traffic exceeds the reserved capacity by r req/s costs

    g(r) = min( ceil(r/c)·p_o,                    all of it on on-demand replicas
                floor(r/c)·p_o + (r − floor(r/c)·c)·3600·a,   full replicas, the remainder on the API
                r·3600·a )                        all of it on the API.

The R-th reserved replica saves, over the day, S(R) = Σ_h min(p_o, 3600·a·clip(λ_h − (R−1)·c, 0, c))
and costs 24·p_r. S never grows with R, so the daily cost is convex in R and the cheapest reserved
count is the largest R with S(R) ≥ 24·p_r (found by bisection, vectorised over candidates).
All functions broadcast: rates (..., 24) against capacity and prices of shape (...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

HOURS = 24
SECONDS_PER_HOUR = 3600.0


def _col(x: ArrayLike) -> np.ndarray:
    """A per-candidate value as a column that broadcasts against (..., 24) hourly arrays."""
    return np.asarray(x, dtype=float)[..., None]


def hour_options(remaining_rps: ArrayLike, capacity_rps: ArrayLike, on_demand_usd: ArrayLike, api_usd: ArrayLike):  # noqa: ANN201
    """The three ways to serve `remaining_rps` for an hour: (all on-demand, full replicas + API, all API), in $.

    Returns (costs, full_replicas, remainder_rps); costs has a last axis of 3 options.
    """
    r = np.asarray(remaining_rps, dtype=float)
    c, p, a = _col(capacity_rps), _col(on_demand_usd), _col(api_usd) * SECONDS_PER_HOUR
    with np.errstate(divide="ignore", invalid="ignore"):
        full = np.where(c > 0, np.floor(r / c), 0.0)
        remainder = np.where(c > 0, r - full * c, r)
        whole = np.where(c > 0, np.ceil(r / c) * p, np.where(r > 0, np.inf, 0.0))
        api_part = np.where(remainder > 0, remainder * a, 0.0)
        mixed = np.where(c > 0, full * p + api_part, np.inf)
        all_api = np.where(r > 0, r * a, 0.0)
    return np.stack([whole, mixed, all_api], axis=-1), full, remainder


def hour_cost_usd(remaining_rps: ArrayLike, capacity_rps: ArrayLike, on_demand_usd: ArrayLike, api_usd: ArrayLike):  # noqa: ANN201
    """g(r): the cheapest of the three options, per hour."""
    costs, _, _ = hour_options(remaining_rps, capacity_rps, on_demand_usd, api_usd)
    return costs.min(axis=-1)


def reserved_saving_usd(
    rates_rps: ArrayLike, capacity_rps: ArrayLike, reserved: ArrayLike, on_demand_usd: ArrayLike, api_usd: ArrayLike
) -> np.ndarray:
    """S(R): what the R-th reserved replica saves in on-demand and API spend over the day."""
    rates = np.asarray(rates_rps, dtype=float)
    c = _col(capacity_rps)
    covered = np.clip(rates - (_col(reserved) - 1.0) * c, 0.0, c)
    a = _col(api_usd) * SECONDS_PER_HOUR
    with np.errstate(invalid="ignore"):
        per_hour = np.where(covered > 0, np.minimum(_col(on_demand_usd), a * covered), 0.0)
    return per_hour.sum(axis=-1)


def peak_replicas(rates_rps: ArrayLike, capacity_rps: ArrayLike) -> np.ndarray:
    """Replicas the busiest hour needs with no API: max_h ceil(λ_h / c) (0 where c is 0)."""
    c = _col(capacity_rps)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.where(c > 0, np.ceil(np.asarray(rates_rps, dtype=float) / c), 0.0)
    return n.max(axis=-1)


def optimal_reserved(
    rates_rps: ArrayLike,
    capacity_rps: ArrayLike,
    reserved_usd: ArrayLike,
    on_demand_usd: ArrayLike,
    api_usd: ArrayLike,
) -> np.ndarray:
    """The cheapest reserved count: the largest R with S(R) ≥ 24·p_r (bisection on the convex daily cost)."""
    cost_of_one = HOURS * np.asarray(reserved_usd, dtype=float)
    lo = np.zeros(np.shape(capacity_rps))
    hi = peak_replicas(rates_rps, capacity_rps)
    while np.any(lo < hi):
        active = lo < hi
        mid = np.ceil((lo + hi) / 2)
        pays = active & (reserved_saving_usd(rates_rps, capacity_rps, mid, on_demand_usd, api_usd) >= cost_of_one)
        lo = np.where(pays, mid, lo)
        hi = np.where(active & ~pays, mid - 1, hi)
    return lo


def daily_cost_usd(
    rates_rps: ArrayLike,
    capacity_rps: ArrayLike,
    reserved_usd: ArrayLike,
    on_demand_usd: ArrayLike,
    api_usd: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """(cheapest daily cost, its reserved count): 24·R·p_r + Σ_h g(max(λ_h − R·c, 0))."""
    reserved = optimal_reserved(rates_rps, capacity_rps, reserved_usd, on_demand_usd, api_usd)
    rest = np.maximum(np.asarray(rates_rps, dtype=float) - _col(reserved) * _col(capacity_rps), 0.0)
    usd = HOURS * reserved * np.asarray(reserved_usd, dtype=float)
    usd = usd + hour_cost_usd(rest, capacity_rps, on_demand_usd, api_usd).sum(axis=-1)
    return usd, reserved


@dataclass(frozen=True)
class DayPlan:
    """One tier's day: reserved replicas, and per hour the on-demand replicas and the traffic sent to the API."""

    reserved: int
    on_demand: np.ndarray  # (24,) whole replicas
    api_rps: np.ndarray  # (24,) requests/s sent to the API
    gpu_usd: np.ndarray  # (24,) reserved + on-demand spend in each hour
    api_usd: np.ndarray  # (24,)

    @property
    def replicas(self) -> np.ndarray:
        return self.reserved + self.on_demand

    @property
    def usd_per_day(self) -> float:
        return float(self.gpu_usd.sum() + self.api_usd.sum())


def plan_day(
    rates_rps: ArrayLike, capacity_rps: float, reserved_usd: float, on_demand_usd: float, api_usd: float
) -> DayPlan:
    """The hour-by-hour plan behind `daily_cost_usd` for one tier."""
    rates = np.asarray(rates_rps, dtype=float)
    reserved = int(optimal_reserved(rates, capacity_rps, reserved_usd, on_demand_usd, api_usd))
    rest = np.maximum(rates - reserved * capacity_rps, 0.0)
    costs, full, remainder = hour_options(rest, capacity_rps, on_demand_usd, api_usd)
    choice = costs.argmin(axis=-1)
    whole = np.ceil(rest / capacity_rps) if capacity_rps > 0 else np.zeros(HOURS)
    on_demand = np.select([choice == 0, choice == 1], [whole, full], 0.0)
    api_rps = np.select([choice == 0, choice == 1], [np.zeros(HOURS), remainder], rest)
    gpu_usd = (reserved * reserved_usd + on_demand * on_demand_usd) * np.ones(HOURS)
    api_usd_h = api_rps * SECONDS_PER_HOUR * api_usd if np.isfinite(api_usd) else np.zeros(HOURS)
    return DayPlan(reserved, on_demand.astype(int), api_rps, gpu_usd, api_usd_h)
