"""Command-line options that several commands share, so that they read and behave the same everywhere.

The deployment group (model, gpu, tp, pp, precision, kv-precision, engine, accelerators) becomes a
`costmodel.resolve.DeploymentSpec` through `deployment_spec(...)`, and a replica through `resolve_deployment(...)`:
errors name the command-line option (`--gpus: not a multiple of tp × pp = 2 (got 3)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from tokenomy.catalog.errors import CatalogError
from tokenomy.cli.errors import option_error
from tokenomy.costmodel.profile import EngineProfile
from tokenomy.costmodel.resolve import DeploymentSpec, ResolvedDeployment, SpecError, resolve

# The deployment (plan, simulate, twin, bench, watch).
Model = Annotated[str, typer.Option(help="catalogue model id or path to a config.json")]
Gpu = Annotated[str, typer.Option(help="accelerator id, e.g. H100-SXM")]
Tp = Annotated[int | None, typer.Option(help="tensor-parallel degree (default: smallest that fits)")]
Pp = Annotated[int, typer.Option(help="pipeline-parallel degree")]
Precision = Annotated[str, typer.Option(help="weights: native, bf16, fp8, int4, ...")]
KvPrecision = Annotated[str, typer.Option(help="KV cache: auto, bf16, fp8, int8, fp4")]
Engine = Annotated[
    str,
    typer.Option(
        help="engine profile: vllm, sglang, tensorrt-llm, generic, or a JSON file (vllm and sglang on an AMD GPU: "
        "their ROCm builds, vllm-rocm and sglang-rocm)"
    ),
]
AcceleratorsFile = Annotated[Path | None, typer.Option("--accelerators", help="extra accelerators YAML")]
Gpus = Annotated[int | None, typer.Option(help="GPUs in total (replicas = gpus / (tp × pp))")]
MaxContext = Annotated[int, typer.Option(help="static reservation length (default min(model max, 32768))")]

# The workload (simulate, bench).
Isl = Annotated[str, typer.Option(help="input tokens: N, uniform:A:B, lognormal:MEAN:SIGMA, empirical:FILE")]
Rate = Annotated[float | None, typer.Option(help="requests/s (Poisson; gamma with --burstiness)")]
Burstiness = Annotated[float, typer.Option(help="gamma shape of inter-arrivals: 1 Poisson, <1 burstier")]
Concurrency = Annotated[int | None, typer.Option(help="closed loop: requests kept in flight")]
Trace = Annotated[
    str | None,
    typer.Option(help="trace file (Azure CSV, Mooncake or tokenomy JSONL) or azure-conv, azure-code, mooncake-conv"),
]
TimeScale = Annotated[float, typer.Option(help="multiply trace arrival times (0.5 = twice as fast)")]
Turns = Annotated[
    str | None,
    typer.Option(
        help="multi-turn sessions: turns per session (N, uniform:A:B, lognormal:MEAN:SIGMA); --isl is then each "
        "turn's new message, --rate opens sessions/s, --concurrency keeps sessions in flight"
    ),
]
ThinkS = Annotated[
    str, typer.Option(help="sessions: seconds from an answer to the next turn: S, uniform:A:B, exponential:MEAN")
]
SystemPromptTokens = Annotated[
    int, typer.Option(min=0, help="sessions: tokens of a system prompt every session's prompts start with (shared)")
]
SystemPrompts = Annotated[int, typer.Option(min=1, help="sessions: distinct system prompts, one drawn per session")]
Seed = Annotated[int, typer.Option(min=0, help="random seed (>= 0): the same seed gives the same run")]

# DeploymentSpec fields whose option is not '--' + the field name with dashes.
DEPLOYMENT_OPTIONS = {
    "accelerators_file": "--accelerators",
    "max_num_batched_tokens": "--max-batched-tokens",
}


def option_name(field: str) -> str:
    """The command-line option a DeploymentSpec field comes from."""
    return DEPLOYMENT_OPTIONS.get(field, "--" + field.replace("_", "-"))


def deployment_spec(accelerators_file: Path | str | None = None, **fields: Any) -> DeploymentSpec:
    """The DeploymentSpec of a command's deployment options; a bad value is a CatalogError naming the option."""
    if accelerators_file is not None:
        fields["accelerators_file"] = str(accelerators_file)
    try:
        return DeploymentSpec(**fields)
    except ValidationError as exc:
        raise option_error(exc, DEPLOYMENT_OPTIONS) from exc


def resolve_deployment(spec: DeploymentSpec, profile: EngineProfile | None = None) -> ResolvedDeployment:
    """`costmodel.resolve.resolve`, with a refused field reported as its command-line option."""
    try:
        return resolve(spec, profile)
    except SpecError as exc:
        raise CatalogError(f"{option_name(exc.field)}: {exc.reason}") from exc


def deployment_of(accelerators_file: Path | str | None = None, **fields: Any) -> ResolvedDeployment:
    """The replica a command's deployment options name: `deployment_spec` then `resolve_deployment`."""
    return resolve_deployment(deployment_spec(accelerators_file, **fields))


@dataclass(frozen=True)
class WorkloadOptions:
    """The workload options simulate and bench share, as given (their `--isl` … `--system-prompts`)."""

    isl: str
    osl: str
    rate: float | None
    burstiness: float
    concurrency: int | None
    num_requests: int
    trace: str | None
    time_scale: float
    turns: str | None
    think_s: str
    system_prompt_tokens: int
    system_prompts: int

    def session_fields(self) -> dict[str, Any]:
        """The WorkloadSpec fields of the session options (--turns … --system-prompts)."""
        return {
            "turns": self.turns,
            "think_s": self.think_s,
            "system_prompt_tokens": self.system_prompt_tokens,
            "system_prompts": self.system_prompts,
        }
