"""Speculative decoding: tokens per step, and the speedup it buys at a given batch size.

With γ draft tokens and per-token acceptance α, a verify step yields on average
(1 − α^(γ+1)) / (1 − α) tokens (Leviathan et al., 2023). One step costs γ draft decode steps
plus one target step verifying γ+1 tokens per sequence; that verification grows with batch
until it is compute-bound, so the speedup falls below 1 at large batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from tokenomy.costmodel.deployment import Deployment
from tokenomy.costmodel.perf import decode_step_seconds, draft_step_seconds, step_seconds


def expected_tokens_per_step(acceptance: ArrayLike, draft_tokens: int) -> np.ndarray:
    """Mean tokens emitted per verify step: (1 − α^(γ+1)) / (1 − α); γ+1 when α = 1."""
    a = np.asarray(acceptance, dtype=float)
    g = draft_tokens
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (1.0 - a ** (g + 1)) / (1.0 - a)
    return np.where(np.isclose(a, 1.0), g + 1.0, out)


@dataclass(frozen=True)
class SpecResult:
    tokens_per_step: np.ndarray
    step_seconds: np.ndarray  # γ draft steps + one verification
    itl_seconds: np.ndarray  # mean time per emitted token
    speedup: np.ndarray  # against plain decoding at the same batch


def speculative_decode(
    target: Deployment,
    draft: Deployment,
    batch: ArrayLike,
    context_tokens: ArrayLike,
    acceptance: float,
    draft_tokens: int,
) -> SpecResult:
    """Per-token time and speedup of draft-model speculative decoding at a batch size."""
    b = np.asarray(batch, dtype=float)
    tokens = expected_tokens_per_step(acceptance, draft_tokens)
    draft_time = draft_tokens * draft_step_seconds(draft, b, context_tokens)
    verify = step_seconds(target, b * (draft_tokens + 1), b, context_tokens, context_tokens)
    step = draft_time + verify
    itl = step / tokens
    return SpecResult(tokens, step, itl, decode_step_seconds(target, b, context_tokens) / itl)
