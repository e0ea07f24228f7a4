"""Routing: which tiers may answer a request, cheapest first, and whether each can take it now.

- The virtual model (`auto`) is classified (simple/complex); the tiers declaring that class are
  eligible. A named model passes through to the tiers serving it (a tier name picks that tier).
- Candidates are tried cheapest first for this request's tokens; the rest of the list is the
  failover order.
- A self-hosted tier with a TTFT SLO predicts the TTFT a typical new request would get from its
  in-flight load (its own counters and the upstream's /metrics) with the cost model's step time.
  Past the SLO it spills (requests skip it) until the prediction falls to `resume_fraction` × SLO
  and it has spilled for `spill_hold_s`: hysteresis in load and in time, so it does not flap.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from tokenomy.catalog.errors import unknown_name_error
from tokenomy.catalog.prices import api_prices, self_hosted_prices
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import StepCost, queued_ttft_s
from tokenomy.gateway.classifier import Classifier
from tokenomy.gateway.config import ConfigError, GatewayConfig, TierConfig
from tokenomy.gateway.upstream import Upstream

KV_FULL_FRACTION = 0.98  # an upstream reporting this much KV cache in use queues every new request
METRICS_STALE_S = 10.0  # ignore /metrics readings older than this


@dataclass(frozen=True)
class Prices:
    """$ per million input and output tokens of a tier."""

    usd_per_mtok_input: float
    usd_per_mtok_output: float
    source: str  # where the numbers come from
    usd_per_mtok_cached_input: float | None = None  # None: cached input tokens billed as input

    def usd(self, input_tokens: float, output_tokens: float, cached_input_tokens: float = 0) -> float:
        """Cost of an attempt; its cached input tokens (a part of input_tokens) at the cached-input rate."""
        usd = input_tokens * self.usd_per_mtok_input + output_tokens * self.usd_per_mtok_output
        if cached_input_tokens and self.usd_per_mtok_cached_input is not None:  # as catalog/prices.py TokenPrices
            cached = min(cached_input_tokens, input_tokens)
            usd -= cached * (self.usd_per_mtok_input - self.usd_per_mtok_cached_input)
        return usd / 1e6


def self_hosted_deployment(tier: TierConfig) -> Deployment:
    """The deployment behind a self-hosted tier, built like `tokenomy plan` builds one."""
    from tokenomy.costmodel.resolve import DeploymentSpec, resolve

    spec = tier.deployment
    assert spec is not None
    return resolve(
        DeploymentSpec(model=spec.model, gpu=spec.gpu, tp=spec.count, precision=spec.precision, engine=spec.engine)
    ).deployment


def tier_prices(tier: TierConfig, deployment: Deployment | None) -> Prices:
    """A self-hosted tier's $/Mtok from the planner; an API tier's from the config or the price catalogue."""
    if tier.usd_per_mtok_input is not None and tier.usd_per_mtok_output is not None:
        return Prices(tier.usd_per_mtok_input, tier.usd_per_mtok_output, "gateway config")
    if deployment is not None:
        spec = tier.deployment
        assert spec is not None
        usd_per_gpu_hour = spec.usd_per_hour / spec.count if spec.usd_per_hour is not None else None
        usd_per_gpu_hour = usd_per_gpu_hour if usd_per_gpu_hour is not None else deployment.gpu.usd_per_gpu_hour()
        if usd_per_gpu_hour is None:
            raise ConfigError(f"tier '{tier.name}': no catalogue price for {spec.gpu}; give deployment.usd_per_hour")
        try:  # the one rule for self-hosted tokens, shared with replay (docs/design.md)
            p = self_hosted_prices(deployment, usd_per_gpu_hour, spec.utilisation, spec.pricing_isl, spec.pricing_osl)
        except ValueError as exc:
            raise ConfigError(f"tier '{tier.name}': {exc}") from None
        name = f"{deployment.model.id} {deployment.fmt.name} on {spec.count}× {spec.gpu}"
        source = f"planner: {name} at {spec.utilisation:.0%} utilisation"
        return Prices(p.usd_per_mtok_input, p.usd_per_mtok_output, source)
    offers = {p.name.lower(): p for p in api_prices()}
    offer = offers.get((tier.price or "").lower())
    if offer is None:
        raise unknown_name_error("API price", tier.price or "", [p.name for p in api_prices()])
    source = f"catalogue: {offer.name} ({offer.price_date})"
    return Prices(offer.usd_per_mtok_input, offer.usd_per_mtok_output, source, offer.usd_per_mtok_cached_input)


class Tier:
    """A configured tier at run time: prices, upstream, and (self-hosted) the cost model's step time."""

    def __init__(self, config: TierConfig, upstream: Upstream, deployment: Deployment | None, prices: Prices):
        self.config = config
        self.name = config.name
        self.upstream = upstream
        self.deployment = deployment
        self.prices = prices
        self.step_cost: StepCost | None = deployment.step_cost() if deployment else None
        self.budget_tokens = deployment.token_budget if deployment else 0
        self.spilling = False
        self.spilling_since = 0.0
        self.spill_transitions = 0
        self.last_predicted_ttft_s: float | None = None

    def predicted_ttft_s(self, prompt_tokens: float) -> float:
        """TTFT a new request of `prompt_tokens` would get now (cost-model time; 0 for API tiers)."""
        if self.step_cost is None:
            return 0.0
        load = self.upstream.load
        running, waiting_tokens = load.decoding, load.waiting_prompt_tokens
        context = load.decoding_context_tokens + running * load.mean_output_tokens / 2
        if load.reported_running is not None and time.monotonic() - load.reported_at < METRICS_STALE_S:
            if (load.reported_kv_usage or 0.0) >= KV_FULL_FRACTION:
                return math.inf
            unseen_running = max(load.reported_running - load.in_flight, 0.0)
            running += int(unseen_running)
            context += unseen_running * (load.mean_prompt_tokens + load.mean_output_tokens / 2)
            unseen_waiting = max((load.reported_waiting or 0.0) - load.waiting, 0.0)
            waiting_tokens += int(unseen_waiting * load.mean_prompt_tokens)
        return queued_ttft_s(self.step_cost, self.budget_tokens, running, context, waiting_tokens + prompt_tokens)

    def spill_reason(self) -> str | None:
        """Why this tier should not take a request now ('' / None: it should); updates the spill state."""
        cap = self.config.max_inflight
        if cap is not None and self.upstream.load.in_flight >= cap:
            return f"{self.name}: {self.upstream.load.in_flight} in flight ≥ max_inflight {cap}"
        slo = self.config.ttft_slo_s
        if slo is None or self.step_cost is None:
            return None
        predicted = self.predicted_ttft_s(self.upstream.load.mean_prompt_tokens)
        self.last_predicted_ttft_s = predicted
        now = time.monotonic()
        if not self.spilling and predicted > slo:
            self.spilling, self.spilling_since = True, now
            self.spill_transitions += 1
        elif self.spilling and predicted <= slo * self.config.resume_fraction:
            if now - self.spilling_since >= self.config.spill_hold_s:
                self.spilling = False
                self.spill_transitions += 1
        if self.spilling:
            if predicted > slo:
                return f"{self.name}: predicted TTFT {predicted:.3f} s over the {slo:g} s SLO"
            resume = slo * self.config.resume_fraction
            return (
                f"{self.name}: still spilling (predicted TTFT {predicted:.3f} s; it resumes at ≤ {resume:.3g} s "
                f"once it has spilled for {self.config.spill_hold_s:g} s)"
            )
        return None


class UnknownModel(LookupError):
    """A model name no tier serves."""


@dataclass
class Route:
    """Where one request may go: candidate tiers in the order to try them."""

    model: str
    request_class: str  # "simple"/"complex" for the virtual model; "named" for pass-through
    p_complex: float | None
    candidates: list[Tier]
    skipped: list[str] = field(default_factory=list)  # tiers not eligible for the class


class Router:
    """Maps a request to its route."""

    def __init__(self, config: GatewayConfig, tiers: list[Tier], classifier: Classifier):
        self.virtual_model = config.virtual_model
        self.tiers = tiers
        self.classifier = classifier

    def model_names(self) -> list[str]:
        """Every model name a client may ask for: the virtual model, each served model, each tier name."""
        names = [self.virtual_model]
        for t in self.tiers:
            for n in (t.config.model, t.name):
                if n not in names:
                    names.append(n)
        return names

    def route(
        self, body: dict[str, Any], prompt_tokens: int, max_tokens: int, forced_class: str | None = None
    ) -> Route:
        """The route of a request body (raises UnknownModel for a model no tier serves)."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise UnknownModel("the request needs a 'model' (a string)")
        p_complex = None
        if model == self.virtual_model:
            if forced_class:
                request_class = forced_class
            else:
                request_class, p_complex = self.classifier.classify(body)
            eligible = [t for t in self.tiers if request_class in t.config.classes]
        else:
            request_class = "named"
            by_name = [t for t in self.tiers if t.name == model]
            served_model = by_name[0].config.model if by_name else model
            same_model = [t for t in self.tiers if t.config.model == served_model and t not in by_name]
            eligible = by_name + sorted(same_model, key=lambda t: t.prices.usd(prompt_tokens, max_tokens))
            if not eligible:
                hint = str(unknown_name_error("model", model, self.model_names())).split(" (`")[0]
                raise UnknownModel(f"{hint} This gateway serves: {', '.join(self.model_names())}.")
            return Route(model, request_class, None, eligible)
        eligible.sort(key=lambda t: t.prices.usd(prompt_tokens, max_tokens))
        skipped = [t.name for t in self.tiers if t not in eligible]
        return Route(model, request_class, p_complex, eligible, skipped)
