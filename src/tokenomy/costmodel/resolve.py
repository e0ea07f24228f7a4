"""One way to describe a deployment and one way to build it: `DeploymentSpec` (names and numbers, validated) and
`resolve(spec)` (catalogue lookups, precision, tensor parallelism, GPU count) → `ResolvedDeployment`.

Every command, gateway tier, twin, calibration row and advisor candidate builds its `Deployment` here, so the same
names give the same replica everywhere. A spec's validation errors are pydantic's, located at the spec's field
(the CLI maps them to its option names with `cli.errors.option_error`); what only the catalogue can tell (an
unknown name, a GPU count that the chosen tp × pp does not divide) is a `SpecError`, a CatalogError that also
names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tokenomy.catalog.accelerators import load_accelerator
from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.models import load_model
from tokenomy.catalog.profiles import engine_profile
from tokenomy.costmodel.deployment import Deployment, auto_tensor_parallel
from tokenomy.costmodel.profile import EngineProfile

AUTO_TP_MAX_GPUS = 8  # without `gpus`, tp is chosen within one 8-GPU node


class DeploymentSpec(BaseModel):
    """A deployment by name: model, accelerator, parallelism, precisions, engine and the engine's limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="catalogue model id or path to a config.json")
    gpu: str = Field("H100-SXM", min_length=1, description="accelerator id")
    tp: int | None = Field(None, gt=0, description="tensor-parallel degree; None: the smallest that serves well")
    pp: int = Field(1, gt=0, description="pipeline-parallel degree")
    gpus: int | None = Field(None, gt=0, description="GPUs in all (replicas × tp × pp); None: one replica")
    precision: str = Field("native", description="weights: native (the checkpoint's), bf16, fp8, int4, …")
    kv_precision: str = Field("auto", description="KV cache: auto (the engine's default), bf16, fp8, int8, fp4")
    engine: str = Field("vllm", description="engine profile name or profile JSON path")
    max_context: int = Field(0, ge=0, description="static reservation length in tokens; 0: min(model max, 32768)")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="memory fraction; None: engine's")
    max_num_seqs: int | None = Field(None, gt=0, description="scheduler limit on sequences; None: engine's")
    max_num_batched_tokens: int | None = Field(None, gt=0, description="token budget per step; None: engine's")
    accelerators_file: str | None = Field(None, description="YAML file adding accelerators")
    isl: int = Field(1024, gt=0, description="prompt tokens of the request shape automatic tp is chosen for")
    osl: int = Field(256, gt=0, description="output tokens of that request shape")

    @field_validator("precision", "kv_precision", "engine")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("gpus")
    @classmethod
    def _whole_replicas(cls, gpus: int | None, info: ValidationInfo) -> int | None:
        tp, pp = info.data.get("tp"), info.data.get("pp")
        if gpus is not None and tp is not None and pp is not None and gpus % (tp * pp):
            raise ValueError(f"not a multiple of tp × pp = {tp * pp}")
        return gpus

    def profile_overrides(self) -> dict[str, Any]:
        """The engine-profile fields this spec sets (memory fraction, scheduler limits)."""
        names = ("gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class SpecError(CatalogError):
    """A spec the catalogue refuses, naming the spec field (`field`) and why (`reason`)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ResolvedDeployment:
    """A spec turned into the replica the cost model runs, and how many GPUs (so replicas) it asks for."""

    spec: DeploymentSpec
    deployment: Deployment
    n_gpus: int  # all GPUs: replicas × tp × pp

    @property
    def replicas(self) -> int:
        return self.n_gpus // self.deployment.n_gpus


def resolve(spec: DeploymentSpec, profile: EngineProfile | None = None) -> ResolvedDeployment:
    """The deployment a spec names: model, accelerator and engine profile looked up, 'native' precision read from
    the checkpoint, tp (when None) from `auto_tensor_parallel` on `gpus` (else 8) GPUs at isl/osl, GPU count checked.

    The engine's profile is the one it runs with on that accelerator (catalog.profiles.engine_profile: vllm on an
    AMD GPU is vllm-rocm). `profile` replaces the profile `spec.engine` names (a profile being fitted, or one
    already loaded); the spec's memory fraction and scheduler limits apply on top of either. CatalogError for an
    unknown name; SpecError for a GPU count that is not a whole number of replicas.
    """
    model = load_model(spec.model)
    gpu = load_accelerator(spec.gpu, spec.accelerators_file)
    prof = profile if profile is not None else engine_profile(spec.engine, spec.gpu, spec.accelerators_file)
    overrides = spec.profile_overrides()
    if overrides:
        prof = prof.with_values(**overrides)
    precision = model.native_precision if spec.precision == "native" else spec.precision
    d = Deployment(model, gpu, spec.tp or 1, spec.pp, precision, spec.kv_precision, prof, spec.max_context)
    if spec.tp is None:
        d = auto_tensor_parallel(d, spec.gpus or AUTO_TP_MAX_GPUS, spec.isl, spec.osl)
    n_gpus = spec.gpus or d.n_gpus
    if n_gpus % d.n_gpus:
        reason = f"not a multiple of tp × pp = {d.n_gpus} with the tp chosen automatically (got {n_gpus})"
        raise SpecError("gpus", reason)
    return ResolvedDeployment(spec, d, n_gpus)
