"""Bench summaries as measurement rows (docs/design.md schema), so `validate` and `calibrate` take what bench measured.

A bench summary records its deployment (catalogue model and GPU, GPUs, tp, precision, engine),
lengths and load in deployment time (see `bench.economics`); each run gives one row per metric.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from tokenomy.calibrate.measurements import COLUMNS
from tokenomy.catalog.errors import CatalogError

# (metric, summary path, unit, multiply by speedup K (times) / divide by K (rates))
METRICS = (
    ("output_throughput", ("throughput", "output_tokens_per_s"), "tok/s", "rate"),
    ("request_throughput", ("throughput", "requests_per_s"), "req/s", "rate"),
    ("mean_ttft", ("ttft_s", "mean"), "s", "time"),
    ("median_ttft", ("ttft_s", "p50"), "s", "time"),
    ("p99_ttft", ("ttft_s", "p99"), "s", "time"),
    ("mean_itl", ("itl_s", "mean"), "s", "time"),
    ("median_itl", ("itl_s", "p50"), "s", "time"),
    ("p99_itl", ("itl_s", "p99"), "s", "time"),
    ("mean_tpot", ("tpot_s", "mean"), "s", "time"),
    ("median_tpot", ("tpot_s", "p50"), "s", "time"),
    ("mean_e2e", ("e2e_s", "mean"), "s", "time"),
    ("median_e2e", ("e2e_s", "p50"), "s", "time"),
)


def _get(d: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def measurement_rows(summary: dict[str, Any], run_id: str) -> list[dict[str, str]]:
    """Rows of one run's summary (or of each sweep point); needs the catalogue deployment the summary records."""
    dep = summary.get("deployment") or {}
    if not dep.get("model") or not dep.get("gpu"):
        raise CatalogError("measurement rows need a catalogue model (--model or --catalog-model) and --gpu")
    points = summary.get("sweep") or [summary]
    rows: list[dict[str, str]] = []
    for i, point in enumerate(points):
        rows += _point_rows(point, dep, summary, f"{run_id}-{i}" if len(points) > 1 else run_id)
    return rows


def _point_rows(point: dict[str, Any], dep: dict[str, Any], top: dict[str, Any], run_id: str) -> list[dict[str, str]]:
    k = float(top.get("speedup") or 1.0)
    load = point.get("load") or top.get("load") or {}
    wl = top.get("workload") or {}
    base = {
        "source": f"tokenomy bench {top.get('endpoint', {}).get('url', '')}".strip(),
        "engine": dep.get("engine", "generic"),
        "engine_version": "",
        "model": dep["model"],
        "gpu": dep["gpu"],
        "num_gpus": str(dep.get("num_gpus", dep.get("tp", 1))),
        "tp": str(dep.get("tp", 1)),
        "pp": str(dep.get("pp", 1)),
        "precision": dep.get("precision", ""),
        "kv_precision": dep.get("kv_precision", ""),
        "isl": str(wl["isl"]) if str(wl.get("isl", "")).isdigit() else "",
        "osl": str(wl["osl"]) if str(wl.get("osl", "")).isdigit() else "",
        "dataset": wl.get("dataset", ""),
        "load_kind": load.get("kind", "offline"),
        "load_value": _load_value(load, k),
        "scope": "core",
    }
    rows = []
    for metric, path, unit, kind in METRICS:
        value = _get(point, path)
        if not isinstance(value, int | float) or not value > 0:
            continue  # NaN, zero or missing: nothing measured
        value = value * k if kind == "time" else value / k
        rows.append({"id": f"{run_id}-{metric}", **base, "metric": metric, "value": f"{value:.6g}", "unit": unit})
    return rows


def _load_value(load: dict[str, Any], speedup: float) -> str:
    """The load in deployment terms: a rate against a K× faster endpoint is K× lower; concurrency is unchanged."""
    value = load.get("value")
    if value is None:
        return ""
    return f"{value / speedup:.6g}" if load.get("kind") == "rate" else f"{value:.6g}"


def append_measurements(rows: list[dict[str, str]], path: Path) -> None:
    """Append rows to a measurement CSV under its own header (a column the rows lack, such as `settings`, left
    empty), writing the header when the file is new or empty."""
    new = not path.exists() or path.stat().st_size == 0
    fields = list(COLUMNS)
    if not new:
        with path.open(newline="") as fh:
            fields = [h.strip() for h in next(csv.reader(fh), [])] or fields
        missing = [c for c in COLUMNS if c not in fields]
        if missing:  # appending would drop those fields of every row
            raise CatalogError(f"{path}: line 1: the header lacks column(s) {', '.join(missing)}; not appended to")
    with path.open("a", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=fields, restval="")
        if new:
            out.writeheader()
        out.writerows(rows)


def bench_json_csv_text(path: Path) -> str:
    """A bench `--json` summary file as measurement CSV text (read by `read_measurements`)."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path}: not a readable bench JSON summary ({exc})") from exc
    if not isinstance(summary, dict) or "ttft_s" not in summary:
        raise CatalogError(f"{path}: not a `tokenomy bench --json` summary (no ttft_s)")
    buf = io.StringIO()
    out = csv.DictWriter(buf, fieldnames=list(COLUMNS))
    out.writeheader()
    out.writerows(measurement_rows(summary, summary.get("run_id") or path.stem))
    return buf.getvalue()
