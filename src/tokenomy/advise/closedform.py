"""Closed-form latency and SLO-meeting capacity of one replica under Poisson load, vectorised over candidates.

At an occupancy of n requests in the engine (chunked prefill, continuous batching), with prompt
lengths x and output lengths o:
- TPOT(n): costmodel's `steady_state` at n requests, built from the simulator's scheduler rules
  (prompts as discrete chunks beside the decodes, pp micro-batches, γ+1 verify tokens per decoding
  sequence in the token budget); with a draft model the same steady state with speculative
  decoding (Leviathan et al. 2023).
- Per-request TPOT spread: prompts arriving during a request's life add c_p·x each (c_p: the
  prefill seconds per prompt token alongside n decodes), a compound-Poisson sum, so
  Var = c_p²·λ·TPOT·E[x²]·E[1/(o−1)]; and the occupancy drifts slowly around n: a birth-death
  process with arrivals λ and departures n/S(n), linearised, is Ornstein-Uhlenbeck with
  Var(n) = n / (1 − β), β = d ln S / d ln n (a request's life is too short to average it out), which
  adds TPOT(n + sd(n)) − TPOT(n). The tail TPOT is mean + z·sd (normal approximation).
- TTFT: the prompt's chunks of (budget − n) tokens, each computed alongside the n decodes
  (`perf.step_seconds`), plus the step in flight; plus waiting behind other prompts, an M/G/1
  queue of prefill work (ρ = λ·E[x]·c_p, Pollaczek–Khinchine mean λ·c_p²·E[x²] / (2(1 − ρ)), tail
  P(W > t) ≈ ρ·exp(−ρt / E[W])); plus waiting for a free slot once all max-batch slots are busy,
  Erlang C for M/M/c with c = slots and per-slot service S(c): P(W > t) = C(c, a)·exp(−(c − a)t / S(c)).
- Per-request time S(n) = TTFT(n) + (E[o] − 1)·TPOT(n), and throughput λ = n / S(n) (Little's law).
The miss budget 1 − attainment is split evenly between TTFT and TPOT (union bound). A candidate's
capacity is the largest λ over its operating points whose tail TTFT and tail TPOT meet the SLO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, ndtri, pdtr

from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import (
    Scheduling,
    chunks_rank_excess_s,
    max_batch,
    prompt_room,
    steady_state,
    step_seconds,
)

OPERATING_FRACTIONS = np.geomspace(1 / 256, 1.0, 33)  # operating occupancies as fractions of the slots


@dataclass(frozen=True)
class Shape:
    """The request shape a tier serves, from seeded draws of its length distributions (tokens)."""

    isl_mean: float
    isl_sq_mean: float  # E[x²]
    isl_tail: float  # prompt length at the attainment quantile
    osl_mean: float
    inv_decode_steps_mean: float  # E[1 / (o − 1)] over requests with o ≥ 2

    @classmethod
    def from_samples(cls, isl: np.ndarray, osl: np.ndarray, attainment: float) -> Shape:
        isl, osl = np.asarray(isl, dtype=float), np.asarray(osl, dtype=float)
        steps = osl[osl >= 2] - 1
        return cls(
            isl_mean=float(isl.mean()),
            isl_sq_mean=float((isl**2).mean()),
            isl_tail=float(np.quantile(isl, attainment)),
            osl_mean=float(osl.mean()),
            inv_decode_steps_mean=float((1.0 / steps).mean()) if len(steps) else 1.0,
        )


@dataclass(frozen=True)
class SpecParams:
    draft_tokens: int
    acceptance: float


@dataclass(frozen=True)
class Curves:
    """One deployment's per-occupancy step times on `grid` (requests in the engine), in seconds."""

    grid: np.ndarray
    tpot_s: np.ndarray  # mean TPOT (decode steps and the prompt chunks among them), no draft
    decode_s: np.ndarray  # decode-only step
    spec_tpot_s: np.ndarray | None  # the same with speculative decoding (None without a draft)
    ttft_mean_s: np.ndarray  # service of a mean prompt
    ttft_tail_s: np.ndarray  # service of the tail prompt
    prefill_s_per_token: np.ndarray  # c_p: what one prompt token adds to a step alongside n decodes
    slots_kv: int  # concurrent requests the KV cache holds at full length
    slots_kv_spec: int  # the same with the draft model's weights in memory too

    def tpot_rows(self, spec: bool) -> np.ndarray:
        """TPOT per occupancy: plain, or with speculative decoding."""
        if spec and self.spec_tpot_s is not None:
            return self.spec_tpot_s
        return self.tpot_s


def occupancy_grid(largest: int) -> np.ndarray:
    """Log-spaced occupancies from 1 to `largest` (fractional: the formulas take any real batch)."""
    return np.geomspace(1.0, float(max(largest, 2)), 48)


@dataclass(frozen=True)
class _Draft:
    draft: Deployment
    draft_tokens: int
    acceptance: float


def _chunk_steps(d: Deployment, n: np.ndarray, prompt_tokens: float, ctx: float) -> tuple[np.ndarray, np.ndarray]:
    """(chunks a prompt needs, seconds of one chunk step beside n decodes of `ctx` context), by the
    simulator's rules: decodes first in each of pp micro-batches, the prompt's chunk in the largest."""
    rows = np.where(n >= d.pp, n / d.pp, np.minimum(n, 1.0))
    per_step = np.maximum(prompt_room(d, d.token_budget, rows), 1.0)
    chunk = np.minimum(prompt_tokens, per_step)
    keys = (rows * ctx + chunk * chunk / 2) / (rows + chunk)
    step = step_seconds(d, chunk + rows, rows + 1, ctx * rows / (rows + 1), keys)
    # under attention DP the prompt's chunk runs on its own rank alone (costmodel.perf.chunks_rank_excess_s)
    return np.ceil(prompt_tokens / per_step), step + chunks_rank_excess_s(d.step_cost(), 1.0, chunk, 0.0, n + 1)


def replica_curves(
    d: Deployment, shape: Shape, grid: np.ndarray, draft: Deployment | None, spec: SpecParams
) -> Curves | None:
    """Step-time curves of one deployment for a request shape; None when no request fits in its memory."""
    if not d.memory.fits:
        return None
    isl, osl = round(shape.isl_mean), round(shape.osl_mean)
    slots = max_batch(d, isl, osl)
    if slots < 1:
        return None
    ctx = shape.isl_mean + shape.osl_mean / 2
    ss = steady_state(d, isl, osl, grid)
    decode = ss.decode_seconds
    steps_mean, chunk_mean = _chunk_steps(d, grid, shape.isl_mean, ctx)
    steps_tail, chunk_tail = _chunk_steps(d, grid, shape.isl_tail, ctx)
    rows = np.where(grid >= d.pp, grid / d.pp, np.minimum(grid, 1.0))
    chunk_tokens = np.minimum(shape.isl_mean, np.maximum(prompt_room(d, d.token_budget, rows), 1.0))
    spec_tpot, slots_spec = None, 0
    if draft is not None:
        rules = Scheduling(spec=_Draft(draft, spec.draft_tokens, spec.acceptance))
        spec_tpot = steady_state(d, isl, osl, grid, rules).tpot_s
        room = 1.0 - draft.weight_bytes / max(d.memory.kv_bytes, 1.0)
        slots_spec = int(slots * max(room, 0.0))
    return Curves(
        grid=grid,
        tpot_s=ss.tpot_s,
        decode_s=decode,
        spec_tpot_s=spec_tpot,
        ttft_mean_s=steps_mean * chunk_mean + decode,
        ttft_tail_s=steps_tail * chunk_tail + decode,
        prefill_s_per_token=np.maximum(chunk_mean - decode, 0.0) / chunk_tokens,
        slots_kv=slots,
        slots_kv_spec=slots_spec,
    )


def interpolate_log(grid: np.ndarray, values: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation on a log-spaced grid: values (rows, G) at n (rows, J), clamped to the grid."""
    x = (np.log(n) - np.log(grid[0])) / (np.log(grid[-1]) - np.log(grid[0])) * (len(grid) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(grid) - 2)
    w = np.clip(x - i, 0.0, 1.0)
    rows = np.arange(values.shape[0])[:, None]
    return values[rows, i] * (1 - w) + values[rows, i + 1] * w


def erlang_c(servers: np.ndarray, offered: np.ndarray) -> np.ndarray:
    """P(an arrival waits) in an M/M/c queue: Erlang B = Poisson pmf(c; a) / cdf(c; a), C = B / (1 − ρ(1 − B))."""
    c = np.asarray(servers, dtype=float)
    a = np.asarray(offered, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_pmf = c * np.log(np.maximum(a, 1e-300)) - a - gammaln(c + 1)
        erlang_b = np.exp(log_pmf) / np.maximum(pdtr(c, a), 1e-300)
        out = erlang_b / (1 - (a / c) * (1 - erlang_b))
    return np.where(a >= c, 1.0, np.clip(np.nan_to_num(out, nan=1.0), 0.0, 1.0))


def slot_wait_tail_s(servers: np.ndarray, offered: np.ndarray, service_s: np.ndarray, tail: float) -> np.ndarray:
    """Wait for a free slot exceeded by a fraction `tail` of arrivals: max(0, ln(C/tail))·S/(c − a); inf if a ≥ c."""
    c, a = np.asarray(servers, dtype=float), np.asarray(offered, dtype=float)
    p_wait = erlang_c(c, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.maximum(np.log(np.maximum(p_wait, 1e-300) / tail), 0.0) * service_s / (c - a)
    return np.where(a < c, w, np.inf)


def mg1_wait_tail_s(rate: np.ndarray, service_s: np.ndarray, service_sq_s2: np.ndarray, tail: float) -> np.ndarray:
    """M/G/1 wait exceeded by a fraction `tail` of arrivals: Pollaczek–Khinchine E[W] = λ·E[S²] / (2(1 − ρ)),
    ρ = λ·E[S], with P(W > t) ≈ ρ·exp(−ρt / E[W]) → (E[W]/ρ)·ln(ρ/tail); inf when ρ ≥ 1."""
    rho = rate * service_s
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_wait = rate * service_sq_s2 / (2 * (1 - rho))
        w = np.where(rho > tail, mean_wait / rho * np.log(rho / tail), 0.0)
    return np.where(rho < 1, w, np.inf)


def prefill_wait_tail_s(rate: np.ndarray, s_per_token: np.ndarray, shape: Shape, tail: float) -> np.ndarray:
    """Wait behind other prompts: an M/G/1 queue of prefill work, each prompt taking c_p·x seconds."""
    return mg1_wait_tail_s(rate, s_per_token * shape.isl_mean, s_per_token**2 * shape.isl_sq_mean, tail)


@dataclass(frozen=True)
class OperatingPoints:
    """Per candidate (rows) and operating occupancy (columns): load and tail latencies."""

    occupancy: np.ndarray
    rate_rps: np.ndarray
    tpot_mean_s: np.ndarray
    tpot_tail_s: np.ndarray
    ttft_tail_s: np.ndarray


def operating_points(
    tpot_curves: np.ndarray,
    ttft_mean_curves: np.ndarray,
    ttft_tail_curves: np.ndarray,
    prefill_curves: np.ndarray,
    grid: np.ndarray,
    slots: np.ndarray,
    shape: Shape,
    attainment: float,
) -> OperatingPoints:
    """Evaluate every candidate (row of the curve matrices, TPOT already spec-adjusted) at fractions of its slots."""
    tail = (1.0 - attainment) / 2  # half the miss budget each for TTFT and TPOT
    z = float(ndtri(1.0 - tail))
    slots = np.asarray(slots, dtype=float)[:, None]
    n = np.clip(OPERATING_FRACTIONS[None, :] * slots, 1.0, slots)
    tpot = interpolate_log(grid, tpot_curves, n)
    service = interpolate_log(grid, ttft_mean_curves, n) + (shape.osl_mean - 1) * tpot
    rate = n / service
    c_p = interpolate_log(grid, prefill_curves, n)
    up = n * 1.1
    service_up = interpolate_log(grid, ttft_mean_curves, up) + (shape.osl_mean - 1) * interpolate_log(
        grid, tpot_curves, up
    )
    beta = np.clip(np.log(service_up / service) / np.log(1.1), 0.0, 0.95)  # d ln S / d ln n
    n_sd = np.sqrt(n / (1 - beta))
    swing = interpolate_log(grid, tpot_curves, np.minimum(n + n_sd, slots)) - tpot
    var = c_p**2 * rate * tpot * shape.isl_sq_mean * shape.inv_decode_steps_mean + swing**2
    tpot_tail = tpot + z * np.sqrt(var)
    full_tpot = interpolate_log(grid, tpot_curves, slots)
    full_service = interpolate_log(grid, ttft_mean_curves, slots) + (shape.osl_mean - 1) * full_tpot
    wait = slot_wait_tail_s(slots, rate * full_service, full_service, tail)
    wait = wait + prefill_wait_tail_s(rate, c_p, shape, tail)
    ttft_tail = interpolate_log(grid, ttft_tail_curves, n) + wait
    return OperatingPoints(n, rate, tpot, tpot_tail, ttft_tail)


def capacity_at(points: OperatingPoints, ttft_s: np.ndarray, tpot_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(largest SLO-meeting rate per row, its column; −1 where none) for TTFT limits of shape (rows,) or (rows, T).

    With a (rows, T) limit the result is (rows, T): one capacity per TTFT target.
    """
    limit = np.asarray(ttft_s, dtype=float)
    per_target = limit.ndim == 2
    ok_tpot = points.tpot_tail_s <= tpot_s
    ttft = points.ttft_tail_s[..., None] if per_target else points.ttft_tail_s
    lim = limit[:, None, :] if per_target else limit[:, None]
    ok = (ttft <= lim) & (ok_tpot[..., None] if per_target else ok_tpot)
    rate = points.rate_rps[..., None] if per_target else points.rate_rps
    masked = np.where(ok, rate, -1.0)
    col = masked.argmax(axis=1)
    best = masked.max(axis=1)
    return np.maximum(best, 0.0), np.where(best > 0, col, -1)
