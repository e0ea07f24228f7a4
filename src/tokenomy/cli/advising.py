"""Glue between `tokenomy advise` and the advisor: the workload with CLI overrides, progress, outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tokenomy.advise.output import run_advisor
from tokenomy.advise.workload import Workload, example_workload_path, parse_workload
from tokenomy.catalog.errors import CatalogError
from tokenomy.results import AdviceReport
from tokenomy.sim.sweep import EXECUTORS
from tokenomy.yamlfile import read_yaml


def split(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def load_with_overrides(
    path: Path | None,
    requests_per_day: float | None = None,
    models: str | None = None,
    gpus: str | None = None,
    precisions: str | None = None,
    apis: str | None = None,
) -> Workload:
    """The workload file (or the built-in example) with command-line options applied on top."""
    source = path or example_workload_path()
    raw = read_yaml(source)
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: expected a mapping at the top level")
    if requests_per_day is not None:
        if requests_per_day <= 0:
            raise CatalogError(f"--requests-per-day must be positive, got {requests_per_day:g}")
        volume = dict(raw.get("volume") or {})
        volume.pop("hourly_rates_rps", None)
        volume["requests_per_day"] = requests_per_day
        raw["volume"] = volume
    candidates = dict(raw.get("candidates") or {})
    for name, value in (("models", models), ("gpus", gpus), ("precisions", precisions), ("apis", apis)):
        if value is not None:
            candidates[name] = split(value)
    raw["candidates"] = candidates
    return parse_workload(raw, str(source))


def run(
    workload: Workload,
    executor: str,
    verify: int,
    sim_requests: int,
    seed: int,
    on_job: Callable[[int, int], None] | None,
) -> AdviceReport:
    """The advisor's report for the workload (`advise.output.run_advisor`), after checking the run options."""
    if executor not in EXECUTORS:
        raise CatalogError(f"--executor must be one of {', '.join(EXECUTORS)}, got '{executor}'")
    if verify < 1 or sim_requests < 100:
        raise CatalogError("--verify must be >= 1 and --sim-requests >= 100")
    return run_advisor(workload, executor, verify, sim_requests, seed, on_job)
