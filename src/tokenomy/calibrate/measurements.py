"""Measurement files (DESIGN.md schema): read, check, and report bad rows by file, line and field."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from tokenomy.catalog.errors import CatalogError

COLUMNS = (
    "id",
    "source",
    "engine",
    "engine_version",
    "model",
    "gpu",
    "num_gpus",
    "tp",
    "pp",
    "precision",
    "kv_precision",
    "isl",
    "osl",
    "dataset",
    "load_kind",
    "load_value",
    "metric",
    "value",
    "unit",
    "scope",
)
LOAD_KINDS = ("offline", "rate", "concurrency", "batch")
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


@dataclass(frozen=True)
class Measurement:
    id: str
    engine: str
    model: str
    gpu: str
    num_gpus: int
    tp: int
    pp: int
    precision: str
    kv_precision: str
    isl: int | None
    osl: int | None
    dataset: str
    load_kind: str
    load_value: float | None
    metric: str
    value: float  # in base units: seconds for times, per-second rates as given
    unit: str
    scope: str
    line: int
    source: str = ""
    engine_version: str = ""


def _int(text: str, default: int | None = None) -> int | None:
    return int(float(text)) if text.strip() else default


def _convert(value: float, unit: str) -> float:
    """Times to seconds (ms, us, s); rates are kept as given."""
    return value * TIME_UNITS.get(unit.strip(), 1.0)


def read_measurements(path: Path) -> list[Measurement]:
    """Read a measurement CSV (or a `tokenomy bench --json` summary); errors name the file, line and field."""
    try:
        fh = path.open(newline="")
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: no such file") from exc
    if path.suffix.lower() == ".json":
        from tokenomy.bench.measurements import bench_json_csv_text

        fh.close()
        fh = io.StringIO(bench_json_csv_text(path))
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("id", "model", "gpu", "metric", "value") if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError(f"{path}: line 1: missing column(s) {', '.join(missing)} (schema: {', '.join(COLUMNS)})")
        rows = []
        for row in reader:
            line = reader.line_num
            field = "?"
            try:
                field = "tp"
                tp = _int(row.get("tp", ""), 1)
                field = "pp"
                pp = _int(row.get("pp", ""), 1)
                field = "num_gpus"
                num_gpus = _int(row.get("num_gpus", ""), tp * pp)
                field = "isl"
                isl = _int(row.get("isl", ""))
                field = "osl"
                osl = _int(row.get("osl", ""))
                field = "load_value"
                load_value = float(row["load_value"]) if (row.get("load_value") or "").strip() else None
                field = "value"
                value = _convert(float(row["value"]), row.get("unit", "") or "")
            except (ValueError, TypeError) as exc:
                raise CatalogError(f"{path}: line {line}: field '{field}': cannot read {row.get(field)!r}") from exc
            load_kind = (row.get("load_kind") or "offline").strip()
            if load_kind not in LOAD_KINDS:
                raise CatalogError(f"{path}: line {line}: field 'load_kind': '{load_kind}' is not one of {LOAD_KINDS}")
            for name, v in (("isl", isl), ("osl", osl), ("tp", tp), ("pp", pp), ("num_gpus", num_gpus)):
                if v is not None and v <= 0:
                    raise CatalogError(f"{path}: line {line}: field '{name}': must be positive, got {v}")
            if not math.isfinite(value) or value <= 0:
                raise CatalogError(
                    f"{path}: line {line}: field 'value': must be a positive number, got {row['value']!r}"
                )
            if num_gpus < tp * pp:
                raise CatalogError(
                    f"{path}: line {line}: field 'num_gpus': {num_gpus} is fewer than tp × pp = {tp * pp}"
                )
            rows.append(
                Measurement(
                    id=row["id"],
                    engine=(row.get("engine") or "generic").strip(),
                    model=row["model"].strip(),
                    gpu=row["gpu"].strip(),
                    num_gpus=num_gpus,
                    tp=tp,
                    pp=pp,
                    precision=(row.get("precision") or "bf16").strip(),
                    kv_precision=(row.get("kv_precision") or "").strip(),
                    isl=isl,
                    osl=osl,
                    dataset=(row.get("dataset") or "").strip(),
                    load_kind=load_kind,
                    load_value=load_value,
                    metric=row["metric"].strip(),
                    value=value,
                    unit=row.get("unit", "") or "",
                    scope=(row.get("scope") or "core").strip(),
                    line=line,
                    source=row.get("source", "") or "",
                    engine_version=row.get("engine_version", "") or "",
                )
            )
    return rows
