"""Glue between the command line, the catalogue and the cost model: build deployments from options."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.prices import comparable_apis
from tokenomy.catalog.profiles import profile_notes
from tokenomy.cli.errors import option_error
from tokenomy.cli.options import deployment_of
from tokenomy.costmodel.deployment import Deployment, serving_constraints
from tokenomy.costmodel.plan import Workload, plan, with_intervals
from tokenomy.results import PlanResult


class PlanRequest(BaseModel):
    """Options of `tokenomy plan`, validated (sizes must be positive)."""

    model: str
    gpu: str
    gpus: int | None = Field(default=None, gt=0)
    tp: int | None = Field(default=None, gt=0)
    pp: int = Field(default=1, gt=0)
    precisions: list[str]
    kv_precision: str = "auto"
    isl: int = Field(default=1024, gt=0)
    osl: int = Field(default=256, gt=0)
    engine: str = "vllm"
    utilisation: float = Field(default=0.7, gt=0, le=1)
    pricing: str = "on_demand"
    usd_per_gpu_hour: float | None = Field(default=None, gt=0)
    max_context: int = Field(default=0, ge=0)
    accelerators_file: str | None = None


def validated_request(**options: Any) -> PlanRequest:
    """A PlanRequest, with pydantic's errors turned into one clear line per bad option."""
    try:
        return PlanRequest(**options)
    except ValidationError as exc:
        raise option_error(exc, {"precisions": "--precision", "accelerators_file": "--accelerators"}) from exc


def build_deployment(req: PlanRequest, precision: str) -> tuple[Deployment, int]:
    """The deployment for one precision, and the total GPU count (tp chosen automatically when not given)."""
    r = deployment_of(
        model=req.model,
        gpu=req.gpu,
        tp=req.tp,
        pp=req.pp,
        gpus=req.gpus,
        precision=precision,
        kv_precision=req.kv_precision,
        engine=req.engine,
        max_context=req.max_context,
        accelerators_file=req.accelerators_file,
        isl=req.isl,
        osl=req.osl,
    )
    return r.deployment, r.n_gpus


def run_plans(req: PlanRequest) -> list[PlanResult]:
    """Plan every requested precision side by side, each a typed PlanResult (`tokenomy plan --json`)."""
    req = validated_request(**req.model_dump())
    if req.pricing not in ("on_demand", "reserved"):
        raise CatalogError(f"--pricing must be on_demand or reserved, got '{req.pricing}'")
    out = []
    for precision in req.precisions:
        d, n_gpus = build_deployment(req, precision)
        price = req.usd_per_gpu_hour or d.gpu.usd_per_gpu_hour(req.pricing)
        apis = comparable_apis(d.model.id, d.params.total)
        result = plan(d, Workload(req.isl, req.osl, req.utilisation), n_gpus, price, apis)
        result["price_source"] = "--usd-per-gpu-hour" if req.usd_per_gpu_hour else d.gpu.sources.get("price", "")
        result["notes"] = [*profile_notes(d.profile), *filter(None, [d.moe_kernel_note()])]
        result = refused(with_units(result), serving_constraints(d, req.isl, req.osl))
        out.append(PlanResult.model_validate(with_intervals(result)))
    return out


def with_units(result: dict[str, Any]) -> dict[str, Any]:
    """The plan with per-replica and per-deployment twins of its totals (added keys; existing keys unchanged).

    plan() reports throughput, power and $/hour for the whole deployment (all replicas) and memory per replica.
    """
    replicas = max(int(result["replicas"]), 1)
    out = dict(result)
    out["gpus_per_replica"] = result["tp"] * result["pp"]
    out["memory_per"] = "replica"
    for key in ("max_output_tokens_per_s", "max_requests_per_s", "power_w", "usd_per_hour"):
        if result.get(key) is not None:
            out[f"{key}_per_replica"] = result[key] / replicas
            out[f"{key}_deployment"] = result[key]
    if "curve" in result:
        curve = dict(result["curve"])
        curve["output_tokens_per_s_per_replica"] = [x / replicas for x in curve["output_tokens_per_s"]]
        curve["output_tokens_per_s_deployment"] = list(curve["output_tokens_per_s"])
        out["curve"] = curve
    return out


# The figures of a plan that only a deployment able to serve has (plan() leaves them out when it does not fit).
SERVING_ONLY_KEYS = (
    "max_batch",
    "max_requests_per_s",
    "itl_at_max_batch_s",
    "mbu_at_max_batch",
    "mfu_at_max_batch",
    "single_stream_tokens_per_s",
    "curve",
    "power_w",
    "energy_j_per_output_token",
    "usd_per_gpu_hour",
    "usd_per_hour",
    "replica_tokens_per_day",
    "break_even",
)


def refused(result: dict[str, Any], reasons: list[str]) -> dict[str, Any]:
    """The plan as one an engine would refuse: fits false, the reasons in why_not and constraints, no figures."""
    if not reasons:
        return result
    out = {k: v for k, v in result.items() if k not in SERVING_ONLY_KEYS}
    earlier = [result["why_not"]] if result.get("why_not") else []
    out.update(
        {
            "fits": False,
            "why_not": "; ".join(reasons + earlier),
            "constraints": reasons,
            "warnings": [w for w in result.get("warnings", []) if "exceeds" not in w and "divide" not in w],
            "max_concurrency": {"paged": 0, "static": 0},
            "ttft_s": None,
            "itl_s": None,
            "max_output_tokens_per_s": 0.0,
            "usd_per_mtok": {"input": None, "output": None},
        }
    )
    return out
