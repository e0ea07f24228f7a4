"""Baseline from history: the reserved replica count that minimises what the observed traffic would have cost.

Pure math, no I/O. The history's requests are bucketed by hour since the first arrival; the period is padded
with idle hours to whole days, because reserved capacity is billed around the clock. For one deployment
(per replica: capacity c req/s at the planned utilisation, reserved price p_r and on-demand price p_o per
replica-hour) and an API priced on each request's own tokens (a_h = mean $ per request of hour h), R reserved
replicas cost over the H hours

    cost(R) = H·R·p_r + Σ_h g_h(max(λ_h − R·c, 0))

where g_h is advise/hourly.py's cheapest way to serve what the reserved fleet cannot (whole on-demand replicas,
full replicas plus the remainder on the API, or all of it on the API) at that hour's API price. cost(R) is
evaluated for every R in 0..peak (peak = max_h ceil(λ_h / c); more reserved replicas only add cost) and the
cheapest is chosen (ties: fewer replicas). The seed's claims on the traffic:

- break-even daily volume: costmodel/economics.py `break_even_tokens_per_day` for one reserved replica against
  the API's blended $/Mtok on this traffic, in requests with the history's mean tokens per request;
- utilisation the reserved fleet reached: requests it served / what R replicas serve at their maximum
  throughput over the period (and / their planned capacity);
- the hybrid's saving against all-API (every request at the API's price) and all-self-hosted (the peak's
  replicas reserved all period; and, beside it, the cheapest reserved + on-demand fleet with no API).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tokenomy.advise.hourly import SECONDS_PER_HOUR, hour_options
from tokenomy.costmodel.economics import break_even_tokens_per_day

HOURS_PER_DAY = 24


@dataclass(frozen=True)
class ReplicaEconomics:
    """One replica of the deployment: what it serves and what it costs."""

    capacity_rps: float  # requests/s at the planned utilisation (plan's replica_tokens_per_day / tokens / 86400)
    max_rps: float  # requests/s at the largest batch (plan's max_requests_per_s_per_replica)
    reserved_usd_per_hour: float
    on_demand_usd_per_hour: float

    def __post_init__(self) -> None:
        if not (self.capacity_rps > 0 and self.max_rps >= self.capacity_rps):
            raise ValueError(f"capacity must be positive and at most the maximum, got {self.capacity_rps}")
        if not (self.reserved_usd_per_hour > 0 and self.on_demand_usd_per_hour > 0):
            raise ValueError("replica prices must be positive")


@dataclass(frozen=True)
class HourlyDemand:
    """The history by hour since its first request, padded with idle hours to whole days."""

    rates_rps: np.ndarray  # (H,) mean requests/s in each hour
    api_usd: np.ndarray  # (H,) what the hour's requests cost at the API's prices
    tokens: np.ndarray  # (H,) input + output tokens of the hour's requests
    observed_hours: int  # hours the requests span (the rest is padding)

    @property
    def hours(self) -> int:
        return len(self.rates_rps)

    @property
    def days(self) -> float:
        return self.hours / HOURS_PER_DAY

    @property
    def requests(self) -> float:
        return float(self.rates_rps.sum() * SECONDS_PER_HOUR)

    @property
    def api_usd_per_request(self) -> np.ndarray:
        """a_h: the mean API price of one request of hour h (0 in idle hours)."""
        n = self.rates_rps * SECONDS_PER_HOUR
        return np.divide(self.api_usd, n, out=np.zeros_like(self.api_usd), where=n > 0)


def hourly_demand(
    arrival_s: np.ndarray,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    api_usd_per_mtok_input: float,
    api_usd_per_mtok_output: float,
    demand_scale: float = 1.0,
    cached_input_tokens: np.ndarray | None = None,
    api_usd_per_mtok_cached_input: float | None = None,
) -> HourlyDemand:
    """Requests/s, API $ and tokens per hour (each request counted `demand_scale` times), padded to whole days.
    A request's cached input tokens (part of its input) cost the API's cached-input rate where it has one, so the
    break-even and the savings see the prompt-cache discount the history actually got."""
    arrival = np.asarray(arrival_s, dtype=float)
    if not len(arrival):
        raise ValueError("no requests in the history")
    if not (demand_scale > 0 and math.isfinite(demand_scale)):
        raise ValueError(f"demand scale must be a positive number, got {demand_scale}")
    hour = ((arrival - arrival.min()) // SECONDS_PER_HOUR).astype(np.int64)
    observed = int(hour.max()) + 1
    hours = HOURS_PER_DAY * math.ceil(observed / HOURS_PER_DAY)
    tin = np.asarray(input_tokens, dtype=float)
    tout = np.asarray(output_tokens, dtype=float)
    usd = (tin * api_usd_per_mtok_input + tout * api_usd_per_mtok_output) / 1e6
    if cached_input_tokens is not None and api_usd_per_mtok_cached_input is not None:
        cached = np.minimum(np.asarray(cached_input_tokens, dtype=float), tin)
        usd -= cached * (api_usd_per_mtok_input - api_usd_per_mtok_cached_input) / 1e6

    def per_hour(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(hour, weights=weights, minlength=hours).astype(float) * demand_scale

    return HourlyDemand(per_hour(None) / SECONDS_PER_HOUR, per_hour(usd), per_hour(tin + tout), observed)


def peak_replicas(demand: HourlyDemand, replica: ReplicaEconomics) -> int:
    """Replicas the busiest hour needs with no API: max_h ceil(λ_h / c)."""
    return int(np.ceil(demand.rates_rps / replica.capacity_rps).max())


def _hour_costs(rest_rps: np.ndarray, demand: HourlyDemand, replica: ReplicaEconomics) -> np.ndarray:
    """advise/hourly.py's three options for serving `rest_rps` (..., H) beyond the reserved fleet: (..., H, 3) $."""
    costs, _, _ = hour_options(
        rest_rps[..., None], replica.capacity_rps, replica.on_demand_usd_per_hour, demand.api_usd_per_request
    )
    return costs[..., 0, :]


def cost_curve_usd(demand: HourlyDemand, replica: ReplicaEconomics, max_reserved: int) -> np.ndarray:
    """cost(R) over the period for R = 0..max_reserved: reserved all period + the cheapest way to serve the rest."""
    reserved = np.arange(max_reserved + 1, dtype=float)
    rest = np.maximum(demand.rates_rps[None, :] - reserved[:, None] * replica.capacity_rps, 0.0)
    rest_usd = _hour_costs(rest, demand, replica).min(axis=-1).sum(axis=-1)
    return demand.hours * reserved * replica.reserved_usd_per_hour + rest_usd


@dataclass(frozen=True)
class Baseline:
    """The cheapest reserved count for the history and what the seed claims about it (dollars over the period)."""

    reserved: int
    peak_replicas: int
    cost_curve_usd: np.ndarray  # cost(R) for R = 0..peak
    on_demand_by_hour: np.ndarray  # (H,) whole on-demand replicas
    api_rps_by_hour: np.ndarray  # (H,) requests/s sent to the API
    gpu_usd_by_hour: np.ndarray  # (H,) reserved + on-demand
    api_usd_by_hour: np.ndarray  # (H,)
    all_api_usd: float
    all_reserved_usd: float  # the peak's replicas reserved all period, no API
    self_hosted_usd: float  # the cheapest reserved + on-demand fleet with no API
    self_hosted_reserved: int
    utilisation_of_max: float  # requests the reserved fleet served / what it serves at maximum throughput
    utilisation_of_capacity: float  # … / what it serves at the planned utilisation
    api_share: float  # of requests
    break_even_requests_per_day: float  # inf when one reserved replica never beats the API
    break_even_tokens_per_day: float

    @property
    def hybrid_usd(self) -> float:
        return float(self.cost_curve_usd[self.reserved])

    def saving(self, other_usd: float) -> float:
        """Share of `other_usd` the hybrid saves (negative when it costs more)."""
        return 1.0 - self.hybrid_usd / other_usd if other_usd > 0 else 0.0


def baseline(demand: HourlyDemand, replica: ReplicaEconomics) -> Baseline:
    """The cheapest reserved count over the history (argmin of cost_curve_usd) and the seed's claims on it."""
    peak = peak_replicas(demand, replica)
    curve = cost_curve_usd(demand, replica, peak)
    reserved = int(np.argmin(curve))
    c, rates = replica.capacity_rps, demand.rates_rps
    rest = np.maximum(rates - reserved * c, 0.0)
    costs = _hour_costs(rest, demand, replica)
    choice = costs.argmin(axis=-1)
    whole, full = np.ceil(rest / c), np.floor(rest / c)
    on_demand = np.select([choice == 0, choice == 1], [whole, full], 0.0)
    api_rps = np.select([choice == 0, choice == 1], [np.zeros_like(rest), rest - full * c], rest)
    gpu_usd = reserved * replica.reserved_usd_per_hour + on_demand * replica.on_demand_usd_per_hour
    api_usd = api_rps * SECONDS_PER_HOUR * demand.api_usd_per_request
    # With no API: reserved + whole on-demand replicas, every reserved count.
    counts = np.arange(peak + 1, dtype=float)
    rest_all = np.maximum(rates[None, :] - counts[:, None] * c, 0.0)
    no_api = demand.hours * counts * replica.reserved_usd_per_hour + (
        np.ceil(rest_all / c) * replica.on_demand_usd_per_hour
    ).sum(axis=-1)
    served = np.minimum(rates, reserved * c).sum() * SECONDS_PER_HOUR
    seconds = demand.hours * SECONDS_PER_HOUR
    requests = demand.requests
    total_tokens = float(demand.tokens.sum())
    all_api = float(demand.api_usd.sum())
    tokens_per_request = total_tokens / requests
    be_tokens = break_even_tokens_per_day(
        replica.reserved_usd_per_hour,
        c * tokens_per_request * SECONDS_PER_HOUR * HOURS_PER_DAY,
        all_api / total_tokens * 1e6,
    )
    return Baseline(
        reserved=reserved,
        peak_replicas=peak,
        cost_curve_usd=curve,
        on_demand_by_hour=on_demand.astype(int),
        api_rps_by_hour=api_rps,
        gpu_usd_by_hour=gpu_usd,
        api_usd_by_hour=api_usd,
        all_api_usd=all_api,
        all_reserved_usd=demand.hours * peak * replica.reserved_usd_per_hour,
        self_hosted_usd=float(no_api.min()),
        self_hosted_reserved=int(np.argmin(no_api)),
        utilisation_of_max=float(served / (reserved * replica.max_rps * seconds)) if reserved else 0.0,
        utilisation_of_capacity=float(served / (reserved * c * seconds)) if reserved else 0.0,
        api_share=float(api_rps.sum() * SECONDS_PER_HOUR / requests),
        break_even_requests_per_day=be_tokens / tokens_per_request,
        break_even_tokens_per_day=be_tokens,
    )
