"""Alternatives to replay: fleet YAML files (the format of `simulate --fleet`), named, with optional SLOs.

An alternatives file:
    slo: {ttft_s: 1.0, tpot_s: 0.05}      # optional; e2e_s too
    alternatives:
      - name: hybrid
        fleet: fleet.yaml                   # relative to this file
      - name: all-api
        fleet: all_api.yaml
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.prices import api_prices
from tokenomy.sim.fleet import ApiTier, Fleet
from tokenomy.sim.fleetfile import load_fleet
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.sim.run import SLO
from tokenomy.yamlfile import field_error, read_yaml


class SloFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttft_s: float | None = Field(None, gt=0)
    tpot_s: float | None = Field(None, gt=0)
    e2e_s: float | None = Field(None, gt=0)


class AlternativeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    fleet: str = Field(min_length=1)


class AlternativesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slo: SloFile | None = None
    alternatives: list[AlternativeFile] = Field(min_length=1)


@dataclass(frozen=True)
class Alternative:
    name: str
    fleet: Fleet
    apis: dict[str, str] = field(default_factory=dict)  # API tier -> catalogue "provider/model" (its `api` field)


def load_alternatives(path: Path) -> tuple[list[Alternative], SLO | None]:
    """The alternatives of a YAML file and its SLO; errors name the file and the field."""
    try:
        spec = AlternativesFile.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise field_error(str(path), exc) from exc
    names = [a.name for a in spec.alternatives]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CatalogError(f"{path}: alternative names must differ; repeated: {', '.join(dupes)}")
    out = [alternative_from_file(a.name, path.parent / a.fleet) for a in spec.alternatives]
    slo = SLO(spec.slo.ttft_s, spec.slo.tpot_s, spec.slo.e2e_s) if spec.slo else None
    return out, slo


def alternative_from_file(name: str, path: Path) -> Alternative:
    """An alternative from a fleet YAML file, with the catalogue names of its API tiers (for the quality floor)."""
    fleet, apis = _fleet_and_apis(path)
    return Alternative(name, fleet, apis)


def fleet_from_file(path: Path) -> Fleet:
    """A fleet YAML file, as `simulate --fleet` reads it; API tiers named by `api` (at catalogue input prices)
    also get the catalogue's cached-input price, which replay bills cached input tokens at."""
    return _fleet_and_apis(path)[0]


def _fleet_and_apis(path: Path) -> tuple[Fleet, dict[str, str]]:
    """The fleet of a fleet file and its API tiers' catalogue names (tier -> "provider/model")."""
    if not path.is_file():
        raise CatalogError(f"{path}: no such fleet file")
    fleet = load_fleet(path, ReplicaConfig())
    offers = {p.name: p for p in api_prices()}
    raw = {t.get("name"): t for t in (read_yaml(path) or {}).get("tiers", []) if isinstance(t, dict)}
    tiers, apis = [], {}
    for tier in fleet.tiers:
        spec = raw.get(tier.name, {})
        offer = offers.get(spec.get("api")) if isinstance(tier, ApiTier) else None
        if offer is not None:
            apis[tier.name] = offer.name
            if spec.get("usd_per_mtok_input") is None:
                tier = replace(tier, usd_per_mtok_cached_input=offer.usd_per_mtok_cached_input)
        tiers.append(tier)
    return Fleet(tuple(tiers), fleet.routes), apis
