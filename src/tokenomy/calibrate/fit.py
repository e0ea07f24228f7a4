"""Fit an engine profile's free parameters to measurements (least squares on log error)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

from tokenomy.calibrate.measurements import Measurement
from tokenomy.calibrate.predict import predict
from tokenomy.costmodel.profile import FITTED, EngineProfile

BOUNDS = {
    "bw_efficiency": (0.3, 1.0),
    "flops_efficiency": (0.15, 1.0),
    "low_precision_flops_efficiency": (0.15, 1.0),
    "comm_efficiency": (0.05, 1.0),
    "step_overhead_s": (0.0, 0.05),
    "seq_overhead_s": (0.0, 1e-4),
    "overlap_k": (1.0, 8.0),
}


ONLINE_LOADS = ("rate", "concurrency")


def _residuals(values: np.ndarray, base: EngineProfile, rows: list[Measurement]) -> np.ndarray:
    return _residuals_with(base, rows, **dict(zip(FITTED, values, strict=True)))


def fit_profile(base: EngineProfile, rows: list[Measurement]) -> EngineProfile:
    """Fit the FITTED parameters of `base` to the rows the cost model can predict; other fields kept.

    With online rows only (e.g. `tokenomy bench` at a rate or concurrency), only the per-step overhead is fitted.
    """
    offline = [r for r in rows if r.load_kind not in ONLINE_LOADS]  # online rows go through fit_step_overhead
    usable = [r for r in offline if predict(r, base).value is not None and r.value > 0]
    if not usable:
        fitted = fit_step_overhead(base.with_values(fit={}), rows)
        if "online_rows" not in fitted.fit:
            raise ValueError("no measurement rows the cost model can predict for this engine")
        return fitted.with_values(
            fit={**fitted.fit, "rows": fitted.fit["online_rows"], "median_ape": fitted.fit["online_median_ape"]}
        )
    start = EngineProfile()  # always start from the same defaults, so a refit is reproducible
    x0 = np.array([getattr(start, k) for k in FITTED], dtype=float)
    lo = np.array([BOUNDS[k][0] for k in FITTED])
    hi = np.array([BOUNDS[k][1] for k in FITTED])
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    result = least_squares(
        _residuals, x0, bounds=(lo, hi), args=(base, usable), loss="soft_l1", f_scale=0.1, diff_step=1e-3
    )
    fitted = dict(zip(FITTED, (float(v) for v in result.x), strict=True))
    ape = np.abs(np.exp(result.fun) - 1.0)
    return base.with_values(
        **fitted,
        fit={"rows": len(usable), "median_ape": float(np.median(ape)), "p90_ape": float(np.percentile(ape, 90))},
    )


def fit_step_overhead(base: EngineProfile, rows: list[Measurement]) -> EngineProfile:
    """Fit the per-step overhead to the online (rate/concurrency) latency rows, through the simulator.

    Offline throughput barely constrains a fixed cost per step; the inter-token latency at low load
    is mostly that cost, so it is fitted there (1-D bounded search on the median absolute log error).
    """
    online = [r for r in rows if r.load_kind in ONLINE_LOADS and r.metric.endswith(("_itl", "_ttft")) and r.value > 0]
    online = [r for r in online if predict(r, base).value is not None]
    if not online:
        return base

    def median_log_error(step_overhead_s: float) -> float:
        return float(np.median(np.abs(_residuals_with(base, online, step_overhead_s=step_overhead_s))))

    # The error is not convex in the overhead (queueing sets in at high rates): a coarse grid first.
    grid = np.arange(0.0, 0.0101, 0.0005)
    start = float(grid[int(np.argmin([median_log_error(x) for x in grid]))])
    bounds = (max(start - 0.0005, 0.0), start + 0.0005)
    best = minimize_scalar(median_log_error, bounds=bounds, method="bounded", options={"xatol": 2e-5})
    fit = dict(base.fit, online_rows=len(online), online_median_ape=float(np.expm1(best.fun)))
    return base.with_values(step_overhead_s=float(best.x), fit=fit)


def _residuals_with(base: EngineProfile, rows: list[Measurement], **values: float) -> np.ndarray:
    out = []
    profile = base.with_values(**values)
    for row in rows:
        pred = predict(row, profile).value
        out.append(np.log(pred / row.value) if pred and row.value > 0 else 0.0)
    return np.asarray(out)
