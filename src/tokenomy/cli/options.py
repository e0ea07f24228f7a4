"""Command-line options that several commands share, so that they read and behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# The deployment (plan, simulate, twin).
Model = Annotated[str, typer.Option(help="catalogue model id or path to a config.json")]
Gpu = Annotated[str, typer.Option(help="accelerator id, e.g. H100-SXM")]
Tp = Annotated[int | None, typer.Option(help="tensor-parallel degree (default: smallest that fits)")]
Pp = Annotated[int, typer.Option(help="pipeline-parallel degree")]
Precision = Annotated[str, typer.Option(help="weights: native, bf16, fp8, int4, ...")]
KvPrecision = Annotated[str, typer.Option(help="KV cache: auto, bf16, fp8, int8, fp4")]
Engine = Annotated[str, typer.Option(help="engine profile: vllm, sglang, tensorrt-llm, generic")]
AcceleratorsFile = Annotated[Path | None, typer.Option("--accelerators", help="extra accelerators YAML")]

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
Seed = Annotated[int, typer.Option(min=0, help="random seed (>= 0): the same seed gives the same run")]
