"""The per-request rows of a simulated run (`tokenomy simulate --requests-csv`): lengths, times, where it ran."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tokenomy.sim.metrics import RequestLog

REQUEST_COLUMNS = (
    "id",
    "arrival_s",
    "input_tokens",
    "output_tokens",
    "ttft_s",
    "e2e_s",
    "tpot_s",
    "preemptions",
    "cached_tokens",
    "served_by",
)


def write_requests_csv(log: RequestLog, path: Path) -> None:
    """One row per request: its lengths, times (TPOT = decode time / (output tokens - 1)) and where it ran."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(REQUEST_COLUMNS)
        ttft = log.first_token_s - log.arrival_s
        e2e = log.finish_s - log.arrival_s
        tpot = np.where(
            log.output_tokens > 1, (log.finish_s - log.first_token_s) / np.maximum(log.output_tokens - 1, 1), np.nan
        )
        for i in range(len(log.arrival_s)):
            out.writerow(
                [
                    i,
                    f"{log.arrival_s[i]:.6f}",
                    int(log.input_tokens[i]),
                    int(log.output_tokens[i]),
                    _fmt(ttft[i]),
                    _fmt(e2e[i]),
                    _fmt(tpot[i]),
                    int(log.preemptions[i]),
                    int(log.cached_tokens[i]),
                    int(log.where[i]),
                ]
            )


def _fmt(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.6f}"
