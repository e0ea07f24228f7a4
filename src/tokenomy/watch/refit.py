"""Online refit of an engine profile's per-step overheads from observed ITL (no I/O).

The cost model's step time is additive in the profile's overheads (costmodel/perf.py, StepCost.seconds):
t = step_overhead_s + n_layers·layer_overhead_s + n_moe_layers·moe_layer_overhead_s + seq_overhead_s·seqs
+ roofline(…). At an observed load the
ITL is the mean of such steps a decoding request sits in (steady_state's tpot_s), so y = ITL_observed −
ITL_predicted(step and sequence overheads = 0) = step_overhead_s + seq_overhead_s·x, with x the sequences in
those steps (found exactly as the ITL difference of seq_overhead_s = 1 s and 0).
Over a window of intervals: least squares for both when the batch varied enough (MIN_SPREAD), else the
intercept alone with seq_overhead_s kept; negative values are not physical, so a fit with a negative slope or
intercept falls back to the intercept alone, which is clamped at 0.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import steady_state
from tokenomy.costmodel.profile import EngineProfile

MIN_SPREAD = 0.25  # fit the per-sequence overhead when the batch's range over the window is this share of its mean
MIN_POINTS_FOR_SLOPE = 4


@dataclass(frozen=True)
class StepPoint:
    """One interval's evidence: y = observed ITL − model ITL without overheads, x = sequences per step."""

    x_seqs: float
    y_s: float


@dataclass(frozen=True)
class OverheadFit:
    """Fitted overheads over a window (seconds), what they were, and how well they explain the window."""

    step_overhead_s: float
    seq_overhead_s: float
    prior_step_overhead_s: float
    prior_seq_overhead_s: float
    points: int
    fitted: tuple[str, ...]
    residual_rms_s: float


def _with_overheads(d: Deployment, step_s: float, seq_s: float) -> Deployment:
    return dataclasses.replace(d, profile=d.profile.with_values(step_overhead_s=step_s).with_sequence_cost(seq_s))


class OverheadRefit:
    """Keeps the last `window` intervals' evidence for one deployment and fits its overheads."""

    def __init__(self, d: Deployment, window: int = 20):
        if window < 1:
            raise ValueError(f"refit window must be at least 1 interval, got {window}")
        self.d = d
        self.bare = _with_overheads(d, 0.0, 0.0)
        self.unit_seq = _with_overheads(d, 0.0, 1.0)
        self.points: deque[StepPoint] = deque(maxlen=window)

    def point(self, itl_observed_s: float, batch: float, isl: int, osl: int) -> StepPoint:
        """The evidence of one interval (observed ITL in cost-model seconds at batch, isl, osl)."""
        b = max(batch, 1.0)
        bare_s = float(steady_state(self.bare, isl, osl, b).tpot_s)
        x = float(steady_state(self.unit_seq, isl, osl, b).tpot_s) - bare_s
        return StepPoint(x, itl_observed_s - bare_s)

    def add(self, itl_observed_s: float, batch: float, isl: int, osl: int) -> None:
        self.points.append(self.point(itl_observed_s, batch, isl, osl))

    def fit(self) -> OverheadFit | None:
        """Least-squares overheads over the window (None before the first interval)."""
        if not self.points:
            return None
        prof = self.d.profile
        x = np.array([p.x_seqs for p in self.points])
        y = np.array([p.y_s for p in self.points])  # per-layer and per-MoE-layer overheads stay as profiled (`bare`)
        seq_s, fitted = prof.sequence_cost_s(self.d.gpu.host_overhead_factor), ("step_overhead_s",)
        step_s = float(np.mean(y - seq_s * x))
        spread = (x.max() - x.min()) / max(x.mean(), 1e-12)
        if len(x) >= MIN_POINTS_FOR_SLOPE and spread >= MIN_SPREAD:
            design = np.column_stack([np.ones_like(x), x])
            (a, s), *_ = np.linalg.lstsq(design, y, rcond=None)
            if s >= 0 and a >= 0:
                step_s, seq_s, fitted = float(a), float(s), ("step_overhead_s", "seq_overhead_s")
        step_s = max(step_s, 0.0)
        residual = y - step_s - seq_s * x
        return OverheadFit(
            step_overhead_s=step_s,
            seq_overhead_s=seq_s,
            prior_step_overhead_s=prof.step_overhead_s,
            prior_seq_overhead_s=prof.sequence_cost_s(self.d.gpu.host_overhead_factor),
            points=len(x),
            fitted=fitted,
            residual_rms_s=float(np.sqrt(np.mean(residual**2))),
        )


def fitted_profile(profile: EngineProfile, fit: OverheadFit, source: str) -> EngineProfile:
    """`profile` with the fitted overheads, saying where and on what it was fitted (for `plan --engine FILE`)."""
    info: dict[str, Any] = {
        "method": "tokenomy watch: least squares of observed ITL over the window",
        "intervals": fit.points,
        "fitted": list(fit.fitted),
        "residual_rms_s": fit.residual_rms_s,
        "prior_step_overhead_s": fit.prior_step_overhead_s,
        "prior_seq_overhead_s": fit.prior_seq_overhead_s,
    }
    return profile.with_sequence_cost(fit.seq_overhead_s).with_values(
        step_overhead_s=fit.step_overhead_s,
        fitted_on=f"{source}: {fit.points} intervals (in sample)",
        fit=info,
    )
