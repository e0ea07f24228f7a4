"""`tokenomy simulate`'s option parsing: number lists, class mixes, the workload spec and the executor name.

What the command runs is `tokenomy.sim.summary` (the run and its summary) and `tokenomy.sim.records` (the
per-request CSV); the fleet file is `tokenomy.sim.fleetfile`.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from tokenomy.catalog.errors import CatalogError
from tokenomy.cli.errors import option_error
from tokenomy.sim.workload import WorkloadSpec


def parse_floats(text: str | None, flag: str, positive: bool = False) -> list[float] | None:
    """'1,2.5,4' -> [1.0, 2.5, 4.0]; every number finite and >= 0 (> 0 when `positive`), else a CatalogError."""
    if not text:
        return None
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise CatalogError(f"{flag}: expected comma-separated numbers, got '{text}'") from exc
    bad = [v for v in values if not math.isfinite(v) or v < 0 or (positive and v == 0)]
    if bad or not values:
        need = "positive" if positive else "non-negative"
        raise CatalogError(f"{flag}: every value must be a finite {need} number, got {bad[0] if bad else text!r}")
    return values


def check_executor(executor: str) -> None:
    """Refuse an executor the sweep does not know."""
    from tokenomy.sim.sweep import EXECUTORS

    if executor not in EXECUTORS:
        raise CatalogError(f"--executor must be one of {', '.join(EXECUTORS)}, got '{executor}'")


WORKLOAD_OPTIONS = {"num_requests": "--num-requests", "daily_rates": "--daily-rates", "time_scale": "--time-scale"}


def workload_spec(**fields: Any) -> WorkloadSpec:
    """The WorkloadSpec of simulate's options; a bad one is a CatalogError naming the option."""
    try:
        return WorkloadSpec(**fields)
    except ValidationError as exc:
        raise option_error(exc, WORKLOAD_OPTIONS) from exc


def parse_classes(text: str | None) -> dict[str, float] | None:
    """'chat=0.7,batch=0.3' -> {'chat': 0.7, 'batch': 0.3}."""
    if not text:
        return None
    out: dict[str, Any] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight)
        except ValueError as exc:
            raise CatalogError(f"--classes: expected name=weight pairs, got '{part}'") from exc
    return out
