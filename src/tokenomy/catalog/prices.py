"""API prices: $ per million input, output and cached-input tokens, each with its date and source."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

from tokenomy.catalog.models import DATA_DIR

if TYPE_CHECKING:
    from tokenomy.costmodel.deployment import Deployment

# The one rule for pricing self-hosted tokens (docs/design.md "Pricing self-hosted tokens"), used by the gateway's
# ledger and by replay alike: the deployment's $/hour amortised over the tokens it serves at this mean
# utilisation, for requests of this shape (costmodel/plan.py `plan` → `usd_per_mtok`).
SELF_HOSTED_UTILISATION = 0.7
SELF_HOSTED_PRICING_ISL = 1024
SELF_HOSTED_PRICING_OSL = 256


@dataclass(frozen=True)
class ApiPrice:
    provider: str
    model: str
    catalog_model: str  # catalogue id of the open model it serves; '' for proprietary models
    usd_per_mtok_input: float
    usd_per_mtok_output: float
    usd_per_mtok_cached_input: float | None
    price_date: str
    source: str

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}"

    def blended_usd_per_mtok(self, input_tokens: float, output_tokens: float) -> float:
        """$ per million tokens for a given input:output mix."""
        total = input_tokens + output_tokens
        return (input_tokens * self.usd_per_mtok_input + output_tokens * self.usd_per_mtok_output) / total


@dataclass(frozen=True)
class TokenPrices:
    """$ per million input, output and cached-input tokens of one tier (cached None: billed as input)."""

    usd_per_mtok_input: float
    usd_per_mtok_output: float
    usd_per_mtok_cached_input: float | None = None

    def usd(self, input_tokens: float, output_tokens: float, cached_input_tokens: float = 0.0) -> float:
        """Cost of one request: its cached input tokens (a part of its input) at the cached rate, the rest at input."""
        cached_rate = self.usd_per_mtok_cached_input
        cached_rate = self.usd_per_mtok_input if cached_rate is None else cached_rate
        cached = min(max(cached_input_tokens, 0.0), input_tokens)
        return (
            (input_tokens - cached) * self.usd_per_mtok_input
            + cached * cached_rate
            + output_tokens * self.usd_per_mtok_output
        ) / 1e6


def self_hosted_prices(
    deployment: Deployment,
    usd_per_gpu_hour: float,
    utilisation: float = SELF_HOSTED_UTILISATION,
    isl: int = SELF_HOSTED_PRICING_ISL,
    osl: int = SELF_HOSTED_PRICING_OSL,
) -> TokenPrices:
    """A self-hosted replica's $/Mtok by the one rule: its $/hour over the tokens it serves at `utilisation` for
    isl/osl requests (costmodel/plan.py; input and output by their share of step time). Cached input tokens are
    billed as input (the rule amortises GPU-hours, not the prefill a prefix-cache hit skips). ValueError when the
    deployment does not fit."""
    from tokenomy.costmodel.plan import Workload, plan

    p = plan(deployment, Workload(isl, osl, utilisation), deployment.n_gpus, usd_per_gpu_hour)
    if not p["fits"]:
        raise ValueError(p.get("why_not", "the deployment does not fit"))
    return TokenPrices(p["usd_per_mtok"]["input"], p["usd_per_mtok"]["output"])


# Batch APIs (catalog/data/SOURCES.md "Batch APIs"): the fraction off every token price, per provider, for
# requests that may wait up to BATCH_TURNAROUND_H for their answer.
BATCH_DISCOUNT = {"OpenAI": 0.5, "Anthropic": 0.5}
BATCH_TURNAROUND_H = 24.0


def batch_price(api: ApiPrice) -> ApiPrice | None:
    """The offering through its provider's Batch API (input, output and cached input × (1 − discount), same
    name), or None where the provider publishes no batch discount."""
    discount = BATCH_DISCOUNT.get(api.provider)
    if discount is None:
        return None
    keep = 1.0 - discount
    cached = api.usd_per_mtok_cached_input
    return replace(
        api,
        usd_per_mtok_input=api.usd_per_mtok_input * keep,
        usd_per_mtok_output=api.usd_per_mtok_output * keep,
        usd_per_mtok_cached_input=cached * keep if cached is not None else None,
        source=f"{api.source}; batch: {discount:.0%} off, up to {BATCH_TURNAROUND_H:g} h",
    )


def _float_or_none(text: str) -> float | None:
    return float(text) if text and text.strip() else None


@cache
def api_prices() -> tuple[ApiPrice, ...]:
    """Every catalogued API offering at its newest price."""
    with (DATA_DIR / "api_prices.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return tuple(
        ApiPrice(
            provider=r["provider"],
            model=r["model"],
            catalog_model=r.get("catalog_model", "") or "",
            usd_per_mtok_input=float(r["usd_per_mtok_input"]),
            usd_per_mtok_output=float(r["usd_per_mtok_output"]),
            usd_per_mtok_cached_input=_float_or_none(r.get("usd_per_mtok_cached_input", "")),
            price_date=r.get("price_date", ""),
            source=r.get("source", ""),
        )
        for r in rows
    )


def comparable_apis(model_id: str, total_params: float, limit: int = 4) -> list[ApiPrice]:
    """The APIs most comparable to self-hosting a model: hosts of the same weights, else cheap proprietary tiers.

    Same-weights offerings come first (cheapest first); when there are fewer than `limit`, the
    proprietary models of the nearest price class fill the list (small models against 'mini'
    tiers, large ones against flagship tiers — a heuristic stated in the report).
    """
    prices = api_prices()
    same = sorted((p for p in prices if p.catalog_model == model_id), key=lambda p: p.blended_usd_per_mtok(3, 1))
    if len(same) >= limit:
        return same[:limit]
    proprietary = [p for p in prices if not p.catalog_model]
    # Rough price class by size: < 20B params vs 'mini' tiers (~$0.1-1/Mtok), larger vs mid tiers.
    target = 0.4 if total_params < 20e9 else 3.0 if total_params < 200e9 else 8.0
    proprietary.sort(key=lambda p: abs(p.blended_usd_per_mtok(3, 1) - target))
    return same + proprietary[: limit - len(same)]
