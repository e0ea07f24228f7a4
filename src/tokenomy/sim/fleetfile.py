"""Fleet files (`simulate --fleet`, replay's alternatives): GPU tiers by catalogue names, API tiers by price, and
the routes from request classes to tiers; errors name the file and the field."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tokenomy.catalog.errors import CatalogError, unknown_name_error
from tokenomy.catalog.prices import api_prices
from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.resolve import DeploymentSpec, SpecError, resolve
from tokenomy.sim.fleet import ApiTier, Fleet, GpuTier
from tokenomy.sim.replica import ReplicaConfig
from tokenomy.yamlfile import file_error, read_yaml


class GpuTierFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    model: str
    gpu: str = "H100-SXM"
    tp: int | None = Field(None, gt=0)
    pp: int = Field(1, gt=0)
    precision: str = "native"
    kv_precision: str = "auto"
    engine: str = "vllm"
    replicas: int = Field(1, gt=0)
    reserved: int = Field(0, ge=0)
    policy: str = "least_outstanding"
    ttft_slo_s: float | None = Field(None, gt=0)
    scheduler: str = "chunked"


class ApiTierFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    api: str | None = None  # "provider/model" from the price catalogue
    usd_per_mtok_input: float | None = Field(None, ge=0)
    usd_per_mtok_output: float | None = Field(None, ge=0)
    ttft_median_s: float = Field(0.5, gt=0)
    ttft_sigma: float = Field(0.4, ge=0)
    tpot_median_s: float = Field(0.02, gt=0)
    tpot_sigma: float = Field(0.25, ge=0)
    rate_limit_rps: float | None = Field(None, gt=0)
    ttft_slo_s: float | None = Field(None, gt=0)


class FleetFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tiers: list[GpuTierFile | ApiTierFile]
    routes: dict[str, list[str]]


def _api_tier(t: ApiTierFile) -> ApiTier:
    usd_in, usd_out = t.usd_per_mtok_input, t.usd_per_mtok_output
    if t.api:
        offers = {p.name: p for p in api_prices()}
        if t.api not in offers:
            raise unknown_name_error("API", t.api, list(offers))
        offer = offers[t.api]
        usd_in = offer.usd_per_mtok_input if usd_in is None else usd_in
        usd_out = offer.usd_per_mtok_output if usd_out is None else usd_out
    if usd_in is None or usd_out is None:
        raise CatalogError(f"tier '{t.name}': give 'api' (provider/model) or both usd_per_mtok_input and _output")
    return ApiTier(
        t.name,
        usd_in,
        usd_out,
        t.ttft_median_s,
        t.ttft_sigma,
        t.tpot_median_s,
        t.tpot_sigma,
        t.rate_limit_rps,
        t.ttft_slo_s,
    )


def _gpu_deployment(t: GpuTierFile, index: int) -> Deployment:
    """The replica of a GPU tier (costmodel.resolve); a refused field is named as the file's `tiers.N.field`."""
    fields = {k: getattr(t, k) for k in ("model", "gpu", "tp", "pp", "precision", "kv_precision", "engine")}
    try:
        return resolve(DeploymentSpec(**fields)).deployment
    except ValidationError as exc:
        raise file_error(exc, f"tiers.{index}") from exc
    except SpecError as exc:
        raise CatalogError(f"field 'tiers.{index}.{exc.field}': {exc.reason}") from exc


def load_fleet(path: Path, replica: ReplicaConfig) -> Fleet:
    """A fleet from a YAML file; errors name the file and the field."""
    raw = read_yaml(path)
    try:
        spec = FleetFile.model_validate(raw)
    except ValidationError as exc:
        raise file_error(exc, str(path)) from exc
    tiers: list[GpuTier | ApiTier] = []
    try:
        for i, t in enumerate(spec.tiers):
            if isinstance(t, ApiTierFile):
                tiers.append(_api_tier(t))
                continue
            d = _gpu_deployment(t, i)
            config = ReplicaConfig(
                t.scheduler,
                replica.kv,
                replica.block_tokens,
                prefix_caching=replica.prefix_caching,
                kv_admission=replica.kv_admission,
            )
            tiers.append(GpuTier(t.name, d, t.replicas, t.reserved, t.policy, t.ttft_slo_s, config))
        return Fleet(tuple(tiers), {k: tuple(v) for k, v in spec.routes.items()})
    except (CatalogError, ValueError) as exc:
        raise CatalogError(f"{path}: {exc}") from exc
