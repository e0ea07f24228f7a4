"""The quality floor per request class: per benchmark, the lowest published score among the models that served
the class's requests (the advisor's quality data: advise/quality.py on catalog/data/quality.yaml, where a
quantized model scores its 16-bit score × its published recovery). A request spilled to an API counts that API's
score. The floor is unknown, with the reason, as soon as one model that served the class has no published score
on the benchmark (the true floor could be lower): never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tokenomy.advise.quality import QualityTable, load_quality
from tokenomy.catalog.errors import CatalogError
from tokenomy.sim.fleet import ApiTier, Fleet

if TYPE_CHECKING:
    from tokenomy.gateway.config import GatewayConfig


@dataclass(frozen=True)
class ServedModel:
    """What one tier ran, by the quality table's names: a catalogue model at a precision, or a catalogue API."""

    tier: str
    model: str | None  # catalogue model id, or the API's "provider/model"; None when not known
    precision: str | None = None  # weights precision of a self-hosted model; None for an API
    unknown: str = ""  # why the model is not known (model None)

    @property
    def label(self) -> str:
        """The model as reports show it: 'llama-3.1-8b int4', 'OpenAI/gpt-4o-mini'."""
        if self.model is None:
            return f"tier {self.tier}"
        return self.model if self.precision is None else f"{self.model} {self.precision}"


@dataclass(frozen=True)
class QualityFloor:
    """The lowest score (0-100) on one benchmark among the models that served one class; None when unknown."""

    benchmark: str
    score: float | None
    model: str | None  # the label of the model with that lowest score
    unknown: str = ""  # why the floor is unknown (score None)


def score(table: QualityTable, served: ServedModel, benchmark: str) -> tuple[float | None, str]:
    """A served model's published score on a benchmark, or None and why there is none."""
    if served.model is None:
        return None, served.unknown
    if served.precision is None:
        entry = table.apis.get(served.model)
        if entry is None:
            return None, f"no published scores for API '{served.model}' in quality.yaml"
        value = entry.scores.get(benchmark)
        return value, "" if value is not None else f"no published {benchmark} score for API '{served.model}'"
    entry = table.models.get(served.model)
    if entry is None:
        return None, f"no published scores for model '{served.model}' in quality.yaml"
    if benchmark not in entry.scores:
        return None, f"no published {benchmark} score for model '{served.model}'"
    value = table.model_score(served.model, served.precision, benchmark)
    if value is None:
        return None, f"no published {served.precision} recovery on {benchmark} for model '{served.model}'"
    return value, ""


def fleet_models(fleet: Fleet, apis: dict[str, str]) -> dict[str, ServedModel]:
    """Each tier of a fleet: a GPU tier's catalogue model and precision; an API tier's catalogue name (`apis`:
    tier -> "provider/model", as the fleet file's `api` field gives it)."""
    out: dict[str, ServedModel] = {}
    for tier in fleet.tiers:
        if isinstance(tier, ApiTier):
            api = apis.get(tier.name)
            why = f"API tier '{tier.name}' is priced by hand, with no catalogue 'api' name saying which model it is"
            out[tier.name] = ServedModel(tier.name, api, None, "" if api else why)
        else:
            out[tier.name] = ServedModel(tier.name, tier.deployment.model.id, tier.deployment.precision)
    return out


def gateway_models(config: GatewayConfig) -> dict[str, ServedModel]:
    """Each tier of a gateway config: a self-hosted tier's deployment (model, precision with 'native' read from the
    catalogue), an API tier's `price` name; a tier with neither is unknown."""
    from tokenomy.catalog.models import load_model

    out: dict[str, ServedModel] = {}
    for tier in config.tiers:
        d = tier.deployment
        if d is not None:
            precision = d.precision
            if precision == "native":
                try:
                    precision = load_model(d.model).native_precision
                except CatalogError:
                    why = f"tier '{tier.name}': model '{d.model}' is not in the catalogue (its precision is unknown)"
                    out[tier.name] = ServedModel(tier.name, None, None, why)
                    continue
            out[tier.name] = ServedModel(tier.name, d.model, precision)
        elif tier.price is not None:
            out[tier.name] = ServedModel(tier.name, tier.price)
        else:
            why = f"tier '{tier.name}' gives neither a deployment nor a catalogue price name saying which model it is"
            out[tier.name] = ServedModel(tier.name, None, None, why)
    return out


def _floor(table: QualityTable, served: list[ServedModel], benchmark: str) -> QualityFloor:
    """The lowest score on one benchmark among some served models (unknown if any of theirs is)."""
    best: tuple[float, str] | None = None
    for s in served:
        value, why = score(table, s, benchmark)
        if value is None:
            return QualityFloor(benchmark, None, None, why)
        if best is None or value < best[0]:
            best = (value, s.label)
    if best is None:
        return QualityFloor(benchmark, None, None, "no request of this class completed")
    return QualityFloor(benchmark, best[0], best[1])


NOT_SERVED = ""  # the tier name of a request no tier completed


def class_floors(
    classes: np.ndarray,
    tiers: np.ndarray | None,
    models: dict[str, ServedModel] | None,
    unknown: str = "",
    table: QualityTable | None = None,
) -> dict[str, list[QualityFloor]]:
    """Per request class, one floor per benchmark of the quality table, over the tiers that completed its requests.

    `classes` and `tiers` are per request (tier names, NOT_SERVED where none completed it); `models` maps tier
    names to what they ran (None: not known, every floor then unknown with the reason `unknown`)."""
    table = table or load_quality()
    out: dict[str, list[QualityFloor]] = {}
    for cls in sorted(set(classes.tolist())):
        if models is None or tiers is None:
            out[cls] = [QualityFloor(b, None, None, unknown) for b in table.benchmarks]
            continue
        names = sorted(set(tiers[classes == cls].tolist()) - {NOT_SERVED})
        served = [
            models.get(n) or ServedModel(n, None, None, f"tier '{n}' is not in the configuration given") for n in names
        ]
        out[cls] = [_floor(table, served, b) for b in table.benchmarks]
    return out
