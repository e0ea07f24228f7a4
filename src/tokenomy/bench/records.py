"""One row per request of a `tokenomy bench`: the flat record written to --requests-csv and --requests-jsonl."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenomy.bench.client import RequestRecord
    from tokenomy.bench.runner import BenchOutcome, RunOutcome

RECORD_FIELDS = (
    "run",
    "index",
    "session",
    "intended_s",
    "sent_s",
    "send_lag_s",
    "first_token_s",
    "end_s",
    "ttft_s",
    "e2e_s",
    "tpot_s",
    "input_tokens",
    "prompt_tokens",
    "output_tokens",
    "output_tokens_client",
    "max_tokens",
    "chunks",
    "finish_reason",
    "error",
    "http_status",
    "error_detail",
)


def record_row(run: str, rec: RequestRecord, session: int | None = None) -> dict[str, Any]:
    """One request as a flat row (times in seconds from the run's start; session: its conversation, if any)."""
    from tokenomy.tokenizer import count_tokens

    ok = rec.ok
    client_tokens = count_tokens("".join(rec.chunk_text)) if rec.chunk_text else 0
    # the server's usage, else the client's own count of what streamed (as the summary does)
    n_out = rec.completion_tokens if rec.completion_tokens is not None else (client_tokens if ok else None)
    tpot = (rec.end_s - rec.first_token_s) / (n_out - 1) if ok and n_out and n_out > 1 else None
    return {
        "run": run,
        "index": rec.index,
        "session": session,
        "intended_s": rec.intended_s,
        "sent_s": rec.sent_s,
        "send_lag_s": rec.sent_s - rec.intended_s,
        "first_token_s": rec.first_token_s if ok else None,
        "end_s": rec.end_s if ok else None,
        "ttft_s": rec.first_token_s - rec.intended_s if ok else None,
        "e2e_s": rec.end_s - rec.intended_s if ok else None,
        "tpot_s": tpot,
        "input_tokens": rec.input_tokens,
        "prompt_tokens": rec.prompt_tokens,
        "output_tokens": n_out,
        "output_tokens_client": client_tokens,
        "max_tokens": rec.max_tokens,
        "chunks": len(rec.chunk_s),
        "finish_reason": rec.finish_reason,
        "error": rec.error,
        "http_status": rec.http_status,
        "error_detail": rec.error_detail,
    }


def all_rows(outcome: BenchOutcome) -> list[dict[str, Any]]:
    """Every request of every run: the sweep points or search probes (run = their rate), the verification run
    of a search (run = 'verify RATE'), else the one run (run = 'main')."""
    runs = [(f"{r.summary['rate']:g}" if "rate" in r.summary else "main", r) for r in outcome.sweep or [outcome.main]]
    if outcome.verification is not None:
        runs.append((f"verify {outcome.verification.rate_rps:g}", outcome.main))
    return [record_row(label, rec, _session(run, rec.index)) for label, run in runs for rec in run.records]


def _session(run: RunOutcome, index: int) -> int | None:
    """The conversation request `index` of a run belongs to (None without sessions)."""
    ids = run.workload.session_ids
    return int(ids[index]) if ids is not None and 0 <= index < len(ids) else None


def write_request_rows(outcome: BenchOutcome, csv_path: Path | None, jsonl_path: Path | None) -> None:
    """Every request's row to a CSV file (floats to 6 decimals, missing as empty) and/or a JSON-lines file."""
    if not (csv_path or jsonl_path):
        return
    rows = all_rows(outcome)
    if csv_path:
        with csv_path.open("w", newline="") as fh:
            out = csv.DictWriter(fh, fieldnames=list(RECORD_FIELDS))
            out.writeheader()
            out.writerows({k: _csv_value(v) for k, v in r.items()} for r in rows)
    if jsonl_path:
        with jsonl_path.open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6f}"
    return v
