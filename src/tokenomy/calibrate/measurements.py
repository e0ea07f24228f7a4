"""Measurement files (docs/design.md schema): read, check, and report bad rows by file, line and field."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from tokenomy.catalog.errors import CatalogError
from tokenomy.costmodel.quant import canonical_kv_precision, canonical_precision

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
# Columns a file may add: `settings`, the engine settings its run set that the profiles model (predict.ROW_SETTINGS).
OPTIONAL_COLUMNS = ("settings",)
LOAD_KINDS = ("offline", "burst", "rate", "concurrency", "batch")
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
    file: str = ""  # the file's name (rows of several shipped files are validated together)
    settings: str = ""  # engine settings the run set that the profiles model, 'name=value; …' (predict.ROW_SETTINGS)


@dataclass(frozen=True)
class RowProblem:
    """A row that could not be read: where it is and what is wrong with it."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: line {self.line}: field '{self.field}': {self.message}"


@dataclass(frozen=True)
class MeasurementFile:
    """The rows of a measurement file that could be read, and the structurally broken ones that could not."""

    path: str
    rows: list[Measurement]
    broken: list[RowProblem]


def _int(text: str | None, default: int | None = None) -> int | None:
    text = (text or "").strip()
    if not text:
        return default
    value = float(text)
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def _convert(value: float, unit: str) -> float:
    """Times to seconds (ms, us, s); rates are kept as given."""
    return value * TIME_UNITS.get(unit.strip(), 1.0)


def _open_text(path: Path) -> io.TextIOBase:
    """The file as CSV text: a CSV as is, a `tokenomy bench --json` summary converted."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of "id"
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: no such file") from exc
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".json":
        from tokenomy.bench.measurements import bench_json_csv_text

        fh.close()
        return io.StringIO(bench_json_csv_text(path))
    return fh


def _row(path: Path, line: int, row: dict, header: list[str]) -> Measurement | RowProblem:
    """One CSV record as a Measurement, or the first problem that stops it being read."""
    if None in row:  # csv.DictReader files extra fields under the key None
        extra = len(row[None])
        return RowProblem(str(path), line, header[-1], f"{len(header) + extra} fields, the header has {len(header)}")
    short = [c for c in header if row.get(c) is None]
    if short:
        got = len(header) - len(short)
        return RowProblem(
            str(path), line, short[0], f"{got} field(s), the header has {len(header)} (missing from here)"
        )
    for name in ("id", "model", "gpu", "metric", "value"):
        if not (row.get(name) or "").strip():
            return RowProblem(str(path), line, name, "empty")
    parsed: dict[str, object] = {}
    for name, default in (("tp", 1), ("pp", 1), ("isl", None), ("osl", None)):
        try:
            parsed[name] = _int(row.get(name), default)
        except ValueError:
            return RowProblem(str(path), line, name, f"not a whole number: {row.get(name)!r}")
    try:
        num_gpus = _int(row.get("num_gpus"), parsed["tp"] * parsed["pp"])  # type: ignore[operator]
    except ValueError:
        return RowProblem(str(path), line, "num_gpus", f"not a whole number: {row.get('num_gpus')!r}")
    load_text = (row.get("load_value") or "").strip()
    try:
        load_value = float(load_text) if load_text else None
    except ValueError:
        return RowProblem(str(path), line, "load_value", f"not a number: {load_text!r}")
    try:
        raw_value = float(row["value"])
    except ValueError:
        return RowProblem(str(path), line, "value", f"not a number: {row['value']!r}")
    for name, v in (
        ("isl", parsed["isl"]),
        ("osl", parsed["osl"]),
        ("tp", parsed["tp"]),
        ("pp", parsed["pp"]),
        ("num_gpus", num_gpus),
    ):
        if v is not None and v <= 0:  # type: ignore[operator]
            return RowProblem(str(path), line, name, f"must be positive, got {v}")
    if load_value is not None and not (math.isfinite(load_value) and load_value >= 0):
        return RowProblem(str(path), line, "load_value", f"must be a non-negative number, got {load_text!r}")
    if not math.isfinite(raw_value) or raw_value <= 0:
        return RowProblem(str(path), line, "value", f"must be a positive number, got {row['value']!r}")
    tp, pp = int(parsed["tp"]), int(parsed["pp"])  # type: ignore[arg-type]
    if num_gpus < tp * pp:  # type: ignore[operator]
        return RowProblem(str(path), line, "num_gpus", f"{num_gpus} is fewer than tp × pp = {tp * pp}")
    precision = (row.get("precision") or "bf16").strip()
    kv_precision = (row.get("kv_precision") or "").strip()
    try:  # published names ('FP4', 'W4A16', 'BF16') to ours; an unknown one stays and is skipped at prediction
        precision = canonical_precision(precision)
    except CatalogError:
        pass
    try:
        kv_precision = canonical_kv_precision(kv_precision) if kv_precision else ""
    except CatalogError:
        pass
    return Measurement(
        id=row["id"].strip(),
        engine=(row.get("engine") or "generic").strip(),
        model=row["model"].strip(),
        gpu=row["gpu"].strip(),
        num_gpus=int(num_gpus),  # type: ignore[arg-type]
        tp=tp,
        pp=pp,
        precision=precision,
        kv_precision=kv_precision,
        isl=parsed["isl"],  # type: ignore[arg-type]
        osl=parsed["osl"],  # type: ignore[arg-type]
        dataset=(row.get("dataset") or "").strip(),
        load_kind=(row.get("load_kind") or "offline").strip(),
        load_value=load_value,
        metric=row["metric"].strip(),
        value=_convert(raw_value, row.get("unit", "") or ""),
        unit=row.get("unit", "") or "",
        scope=(row.get("scope") or "core").strip(),
        line=line,
        file=path.name,
        source=row.get("source", "") or "",
        engine_version=(row.get("engine_version") or "").strip(),
        settings=(row.get("settings") or "").strip(),
    )


def read_measurement_file(path: Path) -> MeasurementFile:
    """Read a measurement CSV (or a `tokenomy bench --json` summary), keeping every readable row.

    Structurally broken rows (wrong field count, a non-numeric or non-positive number) are listed
    with their line and field instead of stopping the read; rows that are readable but that the
    cost model cannot predict (unknown load kind, metric or precision) are kept for `predict` to skip.
    """
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        try:
            fieldnames = reader.fieldnames or []
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CatalogError(f"{path}: line 1: not a readable CSV header ({exc})") from exc
        header = [h.strip() if h else h for h in fieldnames]
        reader.fieldnames = header
        missing = [c for c in ("id", "model", "gpu", "metric", "value") if c not in header]
        if missing:
            raise CatalogError(f"{path}: line 1: missing column(s) {', '.join(missing)} (schema: {', '.join(COLUMNS)})")
        rows: list[Measurement] = []
        broken: list[RowProblem] = []
        try:
            for record in reader:
                if not any((v or "").strip() for k, v in record.items() if k is not None):
                    continue  # a blank line
                item = _row(path, reader.line_num, record, header)
                (broken if isinstance(item, RowProblem) else rows).append(item)  # type: ignore[arg-type]
        except (csv.Error, UnicodeDecodeError) as exc:
            broken.append(RowProblem(str(path), reader.line_num, "?", f"unreadable CSV from here on: {exc}"))
    return MeasurementFile(str(path), rows, broken)


def read_measurements(path: Path) -> list[Measurement]:
    """Read a measurement file strictly: the rows, or an error naming the file, line and field of each broken row."""
    result = read_measurement_file(path)
    if result.broken:
        more = f" (and {len(result.broken) - 1} more broken row(s))" if len(result.broken) > 1 else ""
        raise CatalogError(f"{result.broken[0]}{more}")
    return result.rows


SHIPPED_GLOB = "measurements_*.csv"  # shipped beside measurements.csv (e.g. measurements_rocm_vllm.csv)


def shipped_measurement_files(folder: Path | None = None) -> list[Path]:
    """Every measurement file tokenomy ships: measurements.csv, then each measurements_*.csv beside it, in `folder`
    (default: catalog/data)."""
    from tokenomy.catalog.models import DATA_DIR

    folder = folder or DATA_DIR
    return [folder / "measurements.csv", *sorted(folder.glob(SHIPPED_GLOB))]


def read_measurement_files(paths: list[Path]) -> MeasurementFile:
    """Several measurement files read as one (read_measurement_file each): all readable rows, all broken ones (each
    naming its file); the path lists the files' names."""
    parts = [read_measurement_file(p) for p in paths]
    return MeasurementFile(
        ", ".join(Path(p.path).name for p in parts),
        [row for part in parts for row in part.rows],
        [problem for part in parts for problem in part.broken],
    )
