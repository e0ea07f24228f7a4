"""Quality per task class: published benchmark scores of models, precisions and APIs, and the floor check.

Scores live in `catalog/data/quality.yaml`, each with its date and source. A quantized model's
score is its 16-bit score times the recovery its model card publishes for that precision, capped
at 1 (Kurtic et al. 2024, "Give Me BF16 or Give Me Death"?, arXiv 2411.02355, and the Neural Magic
cards that report its evaluations). A score that is not published is None and never meets a floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.models import DATA_DIR

SIXTEEN_BIT = ("bf16", "fp16")
PRECISION_ALIASES = {"awq": "int4", "gptq": "int4", "fp8-block": "fp8"}  # int4 recovery rows: GPTQ W4A16


@dataclass(frozen=True)
class Scored:
    """Published scores (0-100) of one model or API, with where they come from."""

    name: str
    scores: dict[str, float]
    date: str
    source: str
    recovery: dict[str, dict[str, float]]  # precision -> benchmark -> quantized / 16-bit score
    recovery_sources: dict[str, str]


@dataclass(frozen=True)
class QualityTable:
    benchmarks: dict[str, str]  # name -> description
    models: dict[str, Scored]
    apis: dict[str, Scored]
    as_of: str

    def model_score(self, model: str, precision: str, benchmark: str) -> float | None:
        """16-bit score × min(recovery, 1) for a precision; None where either is not published."""
        entry = self.models.get(model)
        if entry is None or benchmark not in entry.scores:
            return None
        base = entry.scores[benchmark]
        precision = PRECISION_ALIASES.get(precision, precision)
        if precision in SIXTEEN_BIT:
            return base
        recovery = entry.recovery.get(precision, {}).get(benchmark)
        return None if recovery is None else base * min(recovery, 1.0)

    def api_score(self, api: str, benchmark: str) -> float | None:
        entry = self.apis.get(api)
        return None if entry is None else entry.scores.get(benchmark)

    def model_meets(self, model: str, precision: str, floors: dict[str, float]) -> bool:
        """Every floor met (a missing score fails)."""
        return meets(lambda b: self.model_score(model, precision, b), floors)

    def api_meets(self, api: str, floors: dict[str, float]) -> bool:
        return meets(lambda b: self.api_score(api, b), floors)


def meets(score_of: Any, floors: dict[str, float]) -> bool:
    """True when every benchmark's score is published and at least its floor."""
    for benchmark, floor in floors.items():
        score = score_of(benchmark)
        if score is None or score < floor:
            return False
    return True


def _scored(name: str, raw: dict[str, Any], where: str) -> Scored:
    if not isinstance(raw, dict) or not isinstance(raw.get("scores"), dict):
        raise CatalogError(f"{where}: '{name}' needs a 'scores' mapping of benchmark: score")
    if not raw.get("source") or not raw.get("date"):
        raise CatalogError(f"{where}: '{name}' needs a source and a date for its scores")
    recovery, sources = {}, {}
    for precision, row in (raw.get("recovery") or {}).items():
        if not row.get("source"):
            raise CatalogError(f"{where}: '{name}' recovery '{precision}' needs a source")
        recovery[precision] = {k: float(v) for k, v in row.items() if k not in ("source", "date")}
        sources[precision] = str(row["source"])
    scores = {k: float(v) for k, v in raw["scores"].items()}
    return Scored(name, scores, str(raw["date"]), str(raw["source"]), recovery, sources)


@cache
def load_quality(path: str | None = None) -> QualityTable:
    """The quality table: the catalogue's quality.yaml, or another file in the same shape."""
    where = path or "catalogue quality.yaml"
    text = Path(path).read_text() if path else (DATA_DIR / "quality.yaml").read_text()
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"{where}: not valid YAML ({exc})") from exc
    benchmarks = {str(k): str(v) for k, v in (raw.get("benchmarks") or {}).items()}
    models = {k: _scored(k, v, where) for k, v in (raw.get("models") or {}).items()}
    apis = {k: _scored(k, v, where) for k, v in (raw.get("apis") or {}).items()}
    for entry in [*models.values(), *apis.values()]:
        unknown = sorted(set(entry.scores) - set(benchmarks))
        if unknown:
            raise CatalogError(f"{where}: '{entry.name}' scores unknown benchmark(s) {unknown}")
    return QualityTable(benchmarks, models, apis, str(raw.get("as_of", "")))
