"""Validate the cost model against a measurement file: per-metric absolute percentage errors, 80 % intervals,
and leave-one-group-out cross-validation of the fitted profile parameters."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokenomy.calibrate.fit import fit_engine_profiles, fit_inputs, prior_profile
from tokenomy.calibrate.measurements import Measurement
from tokenomy.calibrate.predict import Prediction, predict
from tokenomy.catalog.errors import CatalogError
from tokenomy.catalog.profiles import profile_name_for
from tokenomy.costmodel.intervals import (
    Residual,
    ResidualTable,
    accelerator_family,
    build_residual_table,
    model_family,
    residual_metric,
    shipped_residual_table,
)
from tokenomy.costmodel.profile import EngineProfile

# Leave-one-group-out groupings: how a row is assigned to the group held out.
GROUPINGS: dict[str, Callable[[Measurement], str]] = {
    "engine_version": lambda r: f"{r.engine} {r.engine_version}".strip(),
    "accelerator_family": lambda r: accelerator_family(r.gpu),
    "model_family": lambda r: model_family(r.model),
}


def residual(row: Measurement, predicted: float) -> Residual:
    """The out-of-sample residual of a held-out row: log(measured / predicted), keyed by its row id and its group
    (engine version × accelerator family × model family cell, the unit intervals.py counts groups in)."""
    accel, model = accelerator_family(row.gpu), model_family(row.model)
    group = f"{GROUPINGS['engine_version'](row)}|{accel}|{model}"
    metric = residual_metric(row.metric, row.load_kind)
    return Residual(metric, accel, model, math.log(row.value / predicted), row.id, group)


def _safe_predict(row: Measurement, profile: EngineProfile | None) -> Prediction:
    """predict(), with a catalogue or model error turned into a skip reason instead of an exception."""
    try:
        return predict(row, profile)
    except (CatalogError, ValueError, ZeroDivisionError) as exc:
        return Prediction(None, f"cannot predict: {exc}")


def _lengths(row: Measurement) -> str:
    """isl/osl (and the dataset when they bound a distribution), else the dataset name; never 'None/None'."""
    if row.isl and row.osl:
        return f"{row.isl}/{row.osl}" + (f" {row.dataset}" if row.dataset not in ("", "fixed") else "")
    return row.dataset or "lengths not given"


def _summary(values: list[float], covered: list[bool] | None = None) -> dict[str, float | int | None]:
    """n, median and p90 of absolute percentage errors; with `covered`, the share inside their 80% interval too."""
    apes = np.asarray(values, dtype=float)
    out: dict[str, float | int | None] = {
        "n": int(apes.size),
        "median_ape": float(np.median(apes)) if apes.size else None,
        "p90_ape": float(np.percentile(apes, 90)) if apes.size else None,
    }
    if covered is not None:
        out["coverage_80"] = float(np.mean(covered)) if covered else None
    return out


def metric_loads(loads: dict[str, Any], metric: str) -> list[tuple[str, dict[str, Any]]]:
    """(load kind, summary) of `metric` from a `loads` summary ('metric | load kind' keys), where the metric was
    measured under more than one load kind; none for a metric of one load kind (its metric line says it all)."""
    found = [(key.split(" | ", 1)[1], s) for key, s in loads.items() if key.startswith(f"{metric} | ")]
    return found if len(found) > 1 else []


def validate(
    rows: list[Measurement], profile: EngineProfile | None = None, table: ResidualTable | None = None
) -> dict[str, Any]:
    """Predict every row; summarise n, skipped (with reasons), median and p90 APE, and 80 %-interval coverage
    per metric and per metric and load kind (`loads`: 'output_throughput | offline'; APE = |pred − meas| / meas;
    intervals from `table`, default the shipped residual table)."""
    table = table if table is not None else shipped_residual_table()
    out_rows: list[dict[str, Any]] = []
    by_metric: dict[str, list[float]] = defaultdict(list)
    covered: dict[str, list[bool]] = defaultdict(list)
    by_load: dict[str, list[float]] = defaultdict(list)  # 'metric | load kind'
    load_covered: dict[str, list[bool]] = defaultdict(list)
    skipped: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for row in rows:
        pred = _safe_predict(row, profile)
        record: dict[str, Any] = {
            "id": row.id,
            "line": row.line,
            "file": row.file,
            "metric": row.metric,
            "engine": row.engine,
            "model": row.model,
            "gpu": row.gpu,
            "tp": row.tp,
            "precision": row.precision,
            "isl": row.isl,
            "osl": row.osl,
            "lengths": _lengths(row),
            "load_kind": row.load_kind,
            "measured": row.value,
            "scope": row.scope,
        }
        if pred.value is None or not math.isfinite(pred.value) or pred.value <= 0:
            skipped[row.metric] += 1
            reason = pred.skipped_reason or f"predicted {pred.value}"
            reasons[reason] += 1
            record["skipped_reason"] = reason
        else:
            ape = abs(pred.value - row.value) / abs(row.value)
            by_metric[row.metric].append(ape)
            by_load[f"{row.metric} | {row.load_kind}"].append(ape)
            record.update(predicted=pred.value, ape=ape)
            iv = (
                table.interval(
                    residual_metric(row.metric, row.load_kind),
                    accelerator_family(row.gpu),
                    model_family(row.model),
                    pred.value,
                )
                if table
                else None
            )
            if iv is not None:
                inside = iv.lo <= row.value <= iv.hi
                covered[row.metric].append(inside)
                load_covered[f"{row.metric} | {row.load_kind}"].append(inside)
                record.update(interval_80=[iv.lo, iv.hi], interval_pool=iv.pool, in_interval=inside)
                if iv.note:
                    record["interval_note"] = iv.note
        out_rows.append(record)
    metrics: dict[str, dict[str, Any]] = {}
    for metric in sorted(set(by_metric) | set(skipped)):
        metrics[metric] = {
            **_summary(by_metric.get(metric, []), covered.get(metric, [])),
            "skipped": skipped.get(metric, 0),
        }
    loads = {key: _summary(v, load_covered[key]) for key, v in sorted(by_load.items())}
    return {
        "metrics": metrics,
        "loads": loads,
        "skipped_reasons": dict(reasons.most_common()),
        "rows": out_rows,
    }


def worst_rows(result: dict[str, Any], n: int = 5) -> list[dict[str, Any]]:
    """The predicted rows with the largest errors."""
    scored = [r for r in result["rows"] if "ape" in r]
    return sorted(scored, key=lambda r: r["ape"], reverse=True)[:n]


@dataclass
class CrossValidation:
    """Out-of-sample residuals of leave-one-group-out fits, per grouping."""

    # grouping -> list of (group, row, predicted) for every held-out row the model could predict
    held_out: dict[str, list[tuple[str, Measurement, float]]] = field(default_factory=dict)
    fits: int = 0  # distinct refits run
    # "grouping: group" -> parameter -> "value: status" of the TensorRT-LLM refit that predicted that group
    fold_parameters: dict[str, dict[str, str]] = field(default_factory=dict)

    def residuals(self, grouping: str | None = None) -> list[Residual]:
        """The out-of-sample residuals of the held-out rows (one per row and grouping; `residual`)."""
        groupings = [grouping] if grouping else list(self.held_out)
        return [residual(row, pred) for g in groupings for _, row, pred in self.held_out[g]]


def cross_validate(
    rows: list[Measurement],
    bases: dict[str, EngineProfile],
    groupings: dict[str, Callable[[Measurement], str]] | None = None,
    fitter: Callable[[list[Measurement], dict[str, EngineProfile]], dict[str, EngineProfile]] = fit_engine_profiles,
    progress: Callable[[str], None] | None = None,
    fit_key: Callable[[list[Measurement]], frozenset[str]] = fit_inputs,
) -> CrossValidation:
    """Leave one group out per grouping: refit the profiles without the group (`fitter`), predict the group.

    Refits are shared between held-out groups that leave the fitter the same rows (`fit_key`)."""
    groupings = groupings or GROUPINGS
    cv = CrossValidation()
    fitted: dict[frozenset[str], dict[str, EngineProfile]] = {}
    for name, key in groupings.items():
        cv.held_out[name] = []
        for group in sorted({key(r) for r in rows}):
            train = [r for r in rows if key(r) != group]
            ids = fit_key(train)
            if ids not in fitted:
                if progress:
                    progress(f"{name}: fitting without {group} ({len(train)} rows)")
                try:
                    fitted[ids] = fitter(train, bases)
                except ValueError:  # nothing left to fit on: the group is predicted from the priors
                    fitted[ids] = {k: prior_profile(v) for k, v in bases.items()}
                cv.fits += 1
            profiles = fitted[ids]
            trt_fit = profiles.get("tensorrt-llm")
            if trt_fit is not None and trt_fit.fit.get("parameters"):
                cv.fold_parameters[f"{name}: {group}"] = {
                    k: f"{p['value']:.4g}: {p['status']}" for k, p in trt_fit.fit["parameters"].items()
                }
            for row in rows:
                if key(row) != group:
                    continue
                prof = profiles.get(profile_name_for(row.engine, row.gpu), profiles.get("generic"))
                pred = _safe_predict(row, prof)
                if pred.value is not None and math.isfinite(pred.value) and pred.value > 0:
                    cv.held_out[name].append((group, row, pred.value))
    return cv


def cv_report(cv: CrossValidation) -> dict[str, Any]:
    """Per grouping: out-of-sample median/p90 APE and 80 %-interval coverage per metric, overall, per load kind
    (`loads`: 'output_throughput | offline' apart from the same metric under load) and per group.

    A held-out row's interval is built by the shipped rule (costmodel/intervals.py: out-of-sample residuals pooled
    over all groupings) from the residuals of rows outside its group only, so the coverage is out of sample too;
    `coverage_80` also gives each metric's coverage over the three groupings together."""
    report: dict[str, Any] = {"fits": cv.fits, "fold_parameters": cv.fold_parameters, "groupings": {}}
    everything = cv.residuals()
    overall: dict[str, list[bool]] = defaultdict(list)
    for name, held in cv.held_out.items():
        apes: dict[str, list[float]] = defaultdict(list)
        per_group: dict[tuple[str, str], list[float]] = defaultdict(list)
        cover: dict[str, list[bool]] = defaultdict(list)
        per_load: dict[str, list[float]] = defaultdict(list)  # 'metric | load kind' (offline throughput apart)
        load_cover: dict[str, list[bool]] = defaultdict(list)
        tables: dict[str, ResidualTable] = {}
        for group in {g for g, _, _ in held}:
            inside = {row.id for g, row, _ in held if g == group}
            tables[group] = build_residual_table(r for r in everything if r.row not in inside)
        for group, row, pred in held:
            ape = abs(pred - row.value) / row.value
            load = f"{row.metric} | {row.load_kind}"
            apes[row.metric].append(ape)
            per_group[(row.metric, group)].append(ape)
            per_load[load].append(ape)
            pool = residual_metric(row.metric, row.load_kind)
            iv = tables[group].interval(pool, accelerator_family(row.gpu), model_family(row.model), pred)
            if iv is not None:
                cover[row.metric].append(iv.lo <= row.value <= iv.hi)
                load_cover[load].append(iv.lo <= row.value <= iv.hi)
                overall[row.metric].append(iv.lo <= row.value <= iv.hi)
        report["groupings"][name] = {
            "metrics": {m: _summary(v, cover[m]) for m, v in sorted(apes.items())},
            "groups": {f"{m} | {g}": _summary(v) for (m, g), v in sorted(per_group.items())},
            "loads": {k: _summary(v, load_cover[k]) for k, v in sorted(per_load.items())},
        }
    report["coverage_80"] = {m: float(np.mean(v)) for m, v in sorted(overall.items())}
    report["held_out"] = [
        {
            "grouping": name,
            "group": g,
            "id": row.id,
            "metric": row.metric,
            "load_kind": row.load_kind,
            "predicted": pred,
            "measured": row.value,
        }
        for name, held in cv.held_out.items()
        for g, row, pred in held
    ]
    return report
