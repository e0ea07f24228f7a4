"""Fit an engine profile's free parameters to measurements (bounded least squares on log error).

The fit knows what the data cannot tell it: a parameter whose predictions barely move when it
changes (its scaled Jacobian column, d log(prediction) / d(parameter / scale), has an RMS below
IDENTIFIABLE_SENSITIVITY) keeps the profile's prior, and the fit record says so; so does a fit
that ends on a bound. The record lists the rows and parameters it rests on.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

from tokenomy.calibrate.measurements import Measurement
from tokenomy.calibrate.predict import ONLINE_LOADS, predict
from tokenomy.catalog.profiles import profile_name_for
from tokenomy.costmodel.profile import FITTED, EngineProfile, bundle_prefix

BOUNDS = {
    "bw_efficiency": (0.3, 1.0),
    "flops_efficiency": (0.15, 1.0),
    "low_precision_flops_efficiency": (0.15, 1.0),
    "comm_efficiency": (0.05, 1.0),
    "step_overhead_s": (0.0, 0.05),
    "seq_overhead_s": (0.0, 1e-4),
    "overlap_k": (1.0, 8.0),
    "moe_gemm_half_tokens": (0.0, 512.0),
    "moe_permute_passes": (0.0, 32.0),
}
# Scale of each parameter for the identifiability test: a change of one scale unit is "a lot".
SCALES = {
    "bw_efficiency": 0.5,
    "flops_efficiency": 0.5,
    "low_precision_flops_efficiency": 0.5,
    "comm_efficiency": 0.5,
    "step_overhead_s": 0.002,
    "seq_overhead_s": 2e-5,
    "overlap_k": 1.0,
    "moe_gemm_half_tokens": 32.0,
    "moe_permute_passes": 4.0,
}
# Where a fit starts, and what a parameter the rows cannot identify keeps, when it differs from the EngineProfile
# default (the MoE terms default to 0, off, so that a profile written before them predicts as it did):
# - moe_gemm_half_tokens 32: grouped-GEMM kernels (CUTLASS, TensorRT-LLM and vLLM fused MoE) tile an expert's rows
#   in blocks of 64-128; a block is on average about half filled at the margin, so half the rate near 32 rows;
# - moe_permute_passes 4: the permute reads and writes each of a token's k routed hidden-state copies (2 passes),
#   the unpermute reads them back and the router/finalize kernels touch them once more (2).
PRIORS = {"moe_gemm_half_tokens": 32.0, "moe_permute_passes": 4.0}
# RMS change of log(prediction) per scale unit (given the other parameters) below which the rows do not
# pin a parameter down: offline throughput rows move ~4 % for 2 ms of step overhead once the efficiencies
# and per-sequence cost have absorbed what they can, and then drive it to its 0 bound.
IDENTIFIABLE_SENSITIVITY = 0.05
# The online step-overhead search: objective gains below this (median |log error|) do not identify it.
ONLINE_MIN_GAIN = 0.005
# Loads whose latency rows fit the per-step overhead (fit_step_overhead): a Poisson rate or a closed loop. A burst
# (calibrate/predict.py ONLINE_LOADS) is an online load too, so its rows never enter the offline fit, but its latency
# is the queue of hundreds of requests sent at once, not a step's fixed cost: it validates, it does not fit.
STEP_OVERHEAD_LOADS = ("rate", "concurrency")
OTHER_ENGINES = ("vllm", "vllm-rocm", "sglang", "generic")


def prior_profile(base: EngineProfile) -> EngineProfile:
    """`base` with its fitted parameters reset to the documented defaults and PRIORS (where a fit starts from)."""
    start = EngineProfile().with_values(**PRIORS)
    return replace(base, **{k: getattr(start, k) for k in FITTED}, fitted_on="", fit={})


def _residuals(values: np.ndarray, names: tuple[str, ...], base: EngineProfile, rows: list[Measurement]) -> np.ndarray:
    return _residuals_with(base, rows, **dict(zip(names, (float(v) for v in values), strict=True)))


def sensitivities(base: EngineProfile, rows: list[Measurement], names: tuple[str, ...]) -> dict[str, float]:
    """RMS over rows of d log(prediction) / d(parameter / scale), by forward differences of 5 % of a scale."""
    r0 = _residuals_with(base, rows)
    out = {}
    for name in names:
        lo, hi = BOUNDS[name]
        step = 0.05 * SCALES[name]
        x = getattr(base, name)
        x1 = x + step if x + step <= hi else x - step
        r1 = _residuals_with(base, rows, **{name: x1})
        out[name] = float(np.sqrt(np.mean(((r1 - r0) / ((x1 - x) / SCALES[name])) ** 2)))
    return out


def conditional_sensitivity(jac: np.ndarray, names: tuple[str, ...], n_rows: int) -> np.ndarray:
    """Per parameter, the RMS change of log(prediction) per scale unit that the others cannot absorb:
    1 / sqrt(diag((JᵀJ)⁻¹)) of the scaled Jacobian (the inverse of its standard-error factor)."""
    scaled = jac * np.array([SCALES[k] for k in names]) / np.sqrt(max(n_rows, 1))
    inv = np.linalg.pinv(scaled.T @ scaled)
    diag = np.diag(inv)
    return np.where(diag > 0, 1.0 / np.sqrt(np.maximum(diag, 1e-300)), 0.0)


def _at_bound(name: str, value: float) -> str:
    lo, hi = BOUNDS[name]
    tol = 1e-3 * (hi - lo)
    return "lower" if value - lo <= tol else "upper" if hi - value <= tol else ""


def _least_squares(
    base: EngineProfile, rows: list[Measurement], names: tuple[str, ...]
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Bounded soft-L1 least squares on log(pred / measured) over `names`; (values, residuals, Jacobian)."""
    x0 = np.array([getattr(base, k) for k in names], dtype=float)
    lo = np.array([BOUNDS[k][0] for k in names])
    hi = np.array([BOUNDS[k][1] for k in names])
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    result = least_squares(
        _residuals, x0, bounds=(lo, hi), args=(names, base, rows), loss="soft_l1", f_scale=0.1, diff_step=1e-3
    )
    return dict(zip(names, (float(v) for v in result.x), strict=True)), result.fun, np.asarray(result.jac)


def fit_profile(base: EngineProfile, rows: list[Measurement]) -> EngineProfile:
    """Fit the FITTED parameters of `base` to the offline rows the cost model can predict; other fields kept.

    Parameters the rows cannot identify keep `base`'s value (its prior). With online rows only
    (e.g. `tokenomy bench` at a rate or concurrency), only the per-step overhead is fitted.
    """
    offline = [r for r in rows if r.load_kind not in ONLINE_LOADS]  # online rows go through fit_step_overhead
    usable = [r for r in offline if predict(r, base).value is not None and r.value > 0]
    if not usable:
        fitted = fit_step_overhead(base.with_values(fit={}), rows)
        if "online_rows" not in fitted.fit:
            bursts = sum(r.load_kind == "burst" for r in rows)
            also = f" ({bursts} burst rows validate only: they fit nothing)" if bursts else ""
            raise ValueError(f"no measurement rows the cost model can predict for this engine{also}")
        return fitted.with_values(
            fit={**fitted.fit, "rows": fitted.fit["online_rows"], "median_ape": fitted.fit["online_median_ape"]}
        )
    free = tuple(FITTED)
    prior: dict[str, str] = {}
    sens = sensitivities(base, usable, free)  # parameters the rows do not move at all (e.g. comm with tp = 1)
    for k in [k for k in free if sens[k] < IDENTIFIABLE_SENSITIVITY]:
        prior[k] = f"prior kept ({getattr(base, k):.4g}): the rows barely depend on it (sensitivity {sens[k]:.2g})"
    free = tuple(k for k in free if k not in prior)
    values: dict[str, float] = {}
    fun, conditional = _residuals_with(base, usable), np.zeros(0)
    while free:
        values, fun, jac = _least_squares(base, usable, free)
        conditional = conditional_sensitivity(jac, free, len(usable))
        weakest = int(np.argmin(conditional))
        if conditional[weakest] >= IDENTIFIABLE_SENSITIVITY:
            break
        k = free[weakest]  # not pinned down given the others: back to its prior, refit the rest
        prior[k] = (
            f"prior kept ({getattr(base, k):.4g}): not identifiable given the other parameters "
            f"(conditional sensitivity {conditional[weakest]:.2g})"
        )
        free = free[:weakest] + free[weakest + 1 :]
        values, fun = {}, _residuals_with(base, usable)
    params: dict[str, dict[str, Any]] = {}
    for k in FITTED:
        if k in values:
            side = _at_bound(k, values[k])
            status = f"fitted, at its {side} bound {BOUNDS[k][0 if side == 'lower' else 1]:g}" if side else "fitted"
            params[k] = {"value": values[k], "status": status, "sensitivity": float(conditional[free.index(k)])}
        else:
            params[k] = {"value": getattr(base, k), "status": prior.get(k, "prior")}
    ape = np.abs(np.exp(fun) - 1.0)
    return base.with_values(
        **values,
        fit={
            "rows": len(usable),
            "median_ape": float(np.median(ape)),
            "p90_ape": float(np.percentile(ape, 90)),
            "row_ids": [r.id for r in usable],
            "parameters": params,
        },
    )


def _online_grid_s() -> np.ndarray:
    """Step-overhead candidates over its whole bounds (0-50 ms): 0.5 ms apart to 4 ms, then geometric."""
    lo, hi = BOUNDS["step_overhead_s"]
    fine = np.arange(lo, 0.004 + 1e-12, 0.0005)
    coarse = np.geomspace(0.005, hi, 10)
    return np.unique(np.concatenate([fine, coarse]))


def fit_step_overhead(base: EngineProfile, rows: list[Measurement]) -> EngineProfile:
    """Fit the per-step overhead to the online (rate/concurrency) latency rows, through the simulator.

    Offline throughput barely constrains a fixed cost per step; the inter-token latency at low load
    is mostly that cost, so it is fitted there (grid over the full bounds, then a bounded search
    between the best point's neighbours, on the median absolute log error). Without online rows,
    or when the best overhead beats the prior by less than ONLINE_MIN_GAIN, `base`'s value stays.
    """
    online = [
        r for r in rows if r.load_kind in STEP_OVERHEAD_LOADS and r.metric.endswith(("_itl", "_ttft")) and r.value > 0
    ]
    online = [r for r in online if predict(r, base).value is not None]
    params = dict(base.fit.get("parameters", {}))
    if not online:
        params["step_overhead_s"] = {
            **params.get("step_overhead_s", {"value": base.step_overhead_s}),
            "online": "no online TTFT/ITL rows: not refitted on latency",
        }
        return base.with_values(fit={**base.fit, "parameters": params} if base.fit else base.fit)

    def median_log_error(step_overhead_s: float) -> float:
        return float(np.median(np.abs(_residuals_with(base, online, step_overhead_s=step_overhead_s))))

    # The error is not convex in the overhead (queueing sets in at high rates): a grid over the bounds first.
    grid = _online_grid_s()
    errors = [median_log_error(x) for x in grid]
    i = int(np.argmin(errors))
    bounds = (float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)]))
    best = minimize_scalar(median_log_error, bounds=bounds, method="bounded", options={"xatol": 2e-5})
    best_x, best_err = (float(best.x), float(best.fun)) if best.fun <= errors[i] else (float(grid[i]), errors[i])
    prior_err = median_log_error(base.step_overhead_s)
    row_ids = [r.id for r in online]
    if prior_err - best_err < ONLINE_MIN_GAIN:
        status = f"kept {base.step_overhead_s:.4g} s: the online rows improve on it by < {ONLINE_MIN_GAIN} log error"
        value, err = base.step_overhead_s, prior_err
    else:
        side = _at_bound("step_overhead_s", best_x)
        status = "fitted on online latency rows" + (f", at its {side} bound" if side else "")
        value, err = best_x, best_err
    offline = {f"offline_{k}": v for k, v in params.get("step_overhead_s", {}).items() if k != "value"}
    params["step_overhead_s"] = {"value": value, "status": status, **offline, "online_row_ids": row_ids}
    fit = dict(base.fit, online_rows=len(online), online_median_ape=float(np.expm1(err)), parameters=params)
    return base.with_values(step_overhead_s=value, fit=fit)


def calibrate_profile(base: EngineProfile, rows: list[Measurement]) -> EngineProfile:
    """`tokenomy calibrate`: fit_profile on the offline rows, then the step overhead on the online latency rows."""
    fitted = fit_profile(base, rows)
    if "online_rows" in fitted.fit or not any(r.load_kind in STEP_OVERHEAD_LOADS for r in rows):
        return fitted
    return fit_step_overhead(fitted, rows)


def parameter_lines(profile: EngineProfile) -> list[str]:
    """One line per fitted-profile parameter: its value and whether the rows identified it (fit record)."""
    params = profile.fit.get("parameters", {})
    return [f"{name} = {p['value']:.4g}: {p['status']}" for name, p in params.items()]


# Engines whose own published rows refit what they can identify (the per-step overhead, on online latency rows).
# vLLM's shipped rows ran V0 multi-step scheduling (--num-scheduler-steps 10: tokens stream in bursts of 10 steps),
# which the simulator does not model, so they validate the profile but do not fit it.
OWN_ROW_FITS = ("sglang",)
# Profiles whose own offline and fixed-batch rows refit the profile parameters they identify (fit_profile), starting
# from the borrowed TensorRT-LLM values, which the parameters the rows cannot identify keep. A profile's own rows are
# those whose engine and GPU select it (catalog.profiles.profile_name_for): vllm-rocm's are the ROCm vLLM rows on
# 8×MI300X (measurements_rocm_vllm.csv, engine vllm on an AMD GPU). vllm (NVIDIA) borrows everything: its offline rows
# are ShareGPT-length runs, and its fixed-batch rows (measurements_vllm_argonne.csv) ran the V0 engine of vLLM 0.5-0.6,
# not the V1 engine the profile's scheduler settings describe, so they validate only.
OWN_OFFLINE_FITS = ("vllm-rocm",)


# Vendor builds with no rows of their own (catalog.profiles.VENDOR_PROFILES): profile -> (the engine whose host costs
# it keeps, the profile whose device efficiencies it takes). SGLang's ROCm build runs its own scheduler on the kernels
# vLLM's ROCm build also calls (hipBLASLt GEMMs, AMD's AITER attention and MoE), so it takes what the ROCm vLLM rows
# fitted for the device, as the NVIDIA profiles take TensorRT-LLM's.
ROCM_BUILDS = {"sglang-rocm": ("sglang", "vllm-rocm")}
HOST_COSTS = ("step_overhead_s", "seq_overhead_s")  # the engine's own step loop, on its host


def vendor_build(base: EngineProfile, engine: EngineProfile, device: EngineProfile) -> EngineProfile:
    """`base` (a vendor build's profile: its scheduler and memory settings) with `engine`'s host costs and `device`'s
    device efficiencies (every other FITTED value)."""
    device_keys = [k for k in FITTED if k not in HOST_COSTS]
    sources = {
        **base.sources,
        **{k: f"{device.name}'s value: {device.sources.get(k, device.fitted_on)}" for k in device_keys},
        **{k: f"{engine.name}'s value: {engine.sources.get(k, engine.fitted_on)}" for k in HOST_COSTS},
    }
    return replace(
        base,
        **{k: getattr(device, k) for k in device_keys},
        **{k: getattr(engine, k) for k in HOST_COSTS},
        fitted_on=f"device efficiencies from the {device.name} fit, host costs from {engine.name} (no rows of its own)",
        fit={},
        borrows_from=device.name,
        borrowed=device_keys,
        sources=sources,
    )


def _own_offline(rows: list[Measurement], profile: str) -> list[Measurement]:
    """The offline and fixed-batch rows run with `profile` (profile_name_for), if it is one of OWN_OFFLINE_FITS."""
    if profile not in OWN_OFFLINE_FITS:
        return []
    return [r for r in rows if r.load_kind not in ONLINE_LOADS and profile_name_for(r.engine, r.gpu) == profile]


def _engine_rows(rows: list[Measurement], engine: str) -> list[Measurement]:
    """The rows of `engine` itself: not those of a product bundling it (a 'nim-1.8.0' engine_version: NIM ran
    TensorRT-LLM with engine settings its pages do not give, so its rows validate the profile, never fit it)."""
    return [r for r in rows if r.engine == engine and not bundle_prefix(r.engine_version)]


def _own_rows(rows: list[Measurement], profile: str) -> list[Measurement]:
    """The rows of engine `profile` itself (_engine_rows) that run with that profile (not a vendor build's)."""
    return [r for r in _engine_rows(rows, profile) if profile_name_for(r.engine, r.gpu) == profile]


def fit_inputs(rows: list[Measurement]) -> frozenset[str]:
    """Ids of the rows fit_engine_profiles uses (its result depends on nothing else): TensorRT-LLM's own (not a
    bundle's), OWN_ROW_FITS' and OWN_OFFLINE_FITS' offline rows."""
    own = {r.id for name in OWN_OFFLINE_FITS for r in _own_offline(rows, name)}
    engines = [*_engine_rows(rows, "tensorrt-llm"), *(r for name in OWN_ROW_FITS for r in _own_rows(rows, name))]
    return frozenset({r.id for r in engines} | own)


def fit_engine_profiles(rows: list[Measurement], bases: dict[str, EngineProfile]) -> dict[str, EngineProfile]:
    """The shipped fitting recipe: TensorRT-LLM's parameters on its own rows (offline, then step overhead on its
    online rows), starting from the documented defaults; the other engines borrow its efficiencies and keep their
    own scheduler and memory settings (their few rows are online runs that cannot identify the fitted parameters);
    OWN_OFFLINE_FITS profiles (vllm-rocm) then refit what their own offline rows identify, and ROCM_BUILDS
    (sglang-rocm) take those device efficiencies with their engine's host costs."""
    trt = prior_profile(bases["tensorrt-llm"])
    trt_rows = _engine_rows(rows, trt.name)
    fitted = fit_step_overhead(fit_profile(trt, trt_rows), trt_rows)
    fitted = replace(fitted, fitted_on=f"measurements: {fitted.fit['rows']} tensorrt-llm rows")
    shared = {k: getattr(fitted, k) for k in FITTED}
    out = {trt.name: fitted}
    for name in OTHER_ENGINES:
        if name in bases:
            borrowed = replace(
                bases[name],
                **shared,
                fitted_on=f"borrowed: efficiencies and overheads from the {trt.name} fit",
                fit={},
                borrows_from=trt.name,
                borrowed=list(FITTED),
            )
            own = _own_rows(rows, name) if name in OWN_ROW_FITS else []
            out[name] = _refit_own_step_overhead(borrowed, own) if own else borrowed
            offline = _own_offline(rows, name)
            if offline and any(predict(r, borrowed).value is not None for r in offline):
                out[name] = _refit_own_offline(borrowed, offline)
    for name, (engine, device) in ROCM_BUILDS.items():
        if name in bases and engine in out and device in out:
            out[name] = vendor_build(bases[name], out[engine], out[device])
    return out


def _refit_own_offline(profile: EngineProfile, own: list[Measurement]) -> EngineProfile:
    """The borrowed profile refitted on the engine's own offline/batch rows (fit_profile: the borrowed values are the
    priors that parameters the rows cannot identify keep); `borrowed` then lists only those."""
    fitted = fit_profile(profile, own)
    params = fitted.fit["parameters"]
    own_fitted = [k for k, p in params.items() if p["status"].startswith("fitted")]
    where = f"fitted on {fitted.fit['rows']} own {profile.name} offline/batch rows (scripts/fit_profiles.py; `fit`)"
    kept = {
        k: f"borrowed from the {profile.borrows_from} fit: the {fitted.fit['rows']} own {profile.name} rows do not "
        f"identify it ({p['status']})"
        for k, p in params.items()
        if k not in own_fitted
    }
    return fitted.with_values(
        sources={**profile.sources, **kept, **dict.fromkeys(own_fitted, where)},
        fitted_on=f"{fitted.fit['rows']} own {profile.name} offline/batch rows: {', '.join(own_fitted) or 'nothing'} "
        f"fitted; the rest borrowed from the {profile.borrows_from} fit",
        borrowed=[k for k in profile.borrowed if k not in own_fitted],
    )


def _refit_own_step_overhead(profile: EngineProfile, own: list[Measurement]) -> EngineProfile:
    """The borrowed profile with its per-step overhead refitted on the engine's own online latency rows, where
    they identify it (fit_step_overhead); the fit record says either way."""
    checked = fit_step_overhead(profile.with_values(fit={"parameters": {}}), own)
    status = checked.fit.get("parameters", {}).get("step_overhead_s", {}).get("status", "")
    if not checked.fit.get("online_rows"):
        return profile
    if status.startswith("fitted"):
        return checked.with_values(
            fitted_on=f"step_overhead_s: {checked.fit['online_rows']} own {profile.name} rows; "
            f"other efficiencies borrowed from the {profile.borrows_from} fit",
            borrowed=[k for k in profile.borrowed if k != "step_overhead_s"],
        )
    return checked.with_values(step_overhead_s=profile.step_overhead_s)


def _residuals_with(base: EngineProfile, rows: list[Measurement], **values: float) -> np.ndarray:
    out = []
    profile = base.with_values(**values)
    for row in rows:
        pred = predict(row, profile).value
        out.append(np.log(pred / row.value) if pred and row.value > 0 else 0.0)
    return np.asarray(out)
