"""From request records to the summary `simulate` and `bench` share (docs/design.md), plus bench-only figures.

Latencies count from each request's *intended* send time (its arrival in the schedule), so a
client that falls behind cannot hide queueing. ITL with multi-token chunks (speculative decoding
sends several tokens in one SSE event): a chunk carrying k tokens adds one gap (since the previous
chunk) and k − 1 zero gaps, so ITL pools one value per output token after the first and its mean
is (last − first) / (tokens − 1) per request — the convention of tokenomy's simulator (tokens of one
speculative burst arrive together). vLLM's benchmark_serving appends one gap per chunk whatever it
carries (its ITL is per chunk); SGLang's bench_serving spreads the gap as k gaps of gap/k (same mean
as ours, smoother percentiles).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenomy.bench.client import ERROR_KINDS, RequestRecord
from tokenomy.bench.search import SloTerm, per_request_limits
from tokenomy.sim.metrics import summary_stats

CLIENT_LAG_WARN_S = 0.005  # send lag p99 (or event-loop lag p99) above this: the client is the bottleneck


def split_tokens(total: int, weights: Sequence[float]) -> list[int]:
    """Split `total` tokens over chunks in proportion to `weights`, each chunk >= 1 (largest remainder)."""
    n = len(weights)
    if n == 0:
        return []
    if total <= n:
        return [1] * n
    w = np.maximum(np.asarray(weights, dtype=float), 0.0)
    w = np.ones(n) if w.sum() <= 0 else w
    share = w / w.sum() * total
    counts = np.maximum(np.floor(share).astype(np.int64), 1)
    while counts.sum() > total:  # the floor of 1 took too many: give back where the share is smallest
        i = int(np.argmin(np.where(counts > 1, share - counts, np.inf)))
        counts[i] -= 1
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return counts.tolist()


def chunk_tokens(rec: RequestRecord, output_tokens: int, count_tokens: Callable[[str], int]) -> list[int]:
    """Tokens each text chunk carried: from per-chunk usage when the server sent it, else one per chunk when
    the chunk count equals the token count, else the output split in proportion to the client's count."""
    n = len(rec.chunk_s)
    if n and len(rec.chunk_usage) == n:
        return [max(b - a, 0) for a, b in zip([0, *rec.chunk_usage[:-1]], rec.chunk_usage, strict=True)]
    if n == output_tokens or n == 0:
        return [1] * n
    return split_tokens(output_tokens, [count_tokens(t) for t in rec.chunk_text])


def token_gaps(chunk_s: Sequence[float], tokens: Sequence[int]) -> np.ndarray:
    """Inter-token gaps of one request: one gap per chunk after the first, k − 1 zeros for a k-token chunk."""
    t = np.asarray(chunk_s, dtype=float)
    k = np.asarray(tokens, dtype=np.int64)
    if t.size == 0:
        return np.zeros(0)
    gaps = np.diff(t)
    zeros = int(np.maximum(k - 1, 0).sum())
    return np.concatenate([gaps, np.zeros(zeros)])


@dataclass
class RunArrays:
    """Per-request figures of a run as arrays (NaN where a request failed), and the pooled ITL."""

    intended_s: np.ndarray
    sent_s: np.ndarray
    first_token_s: np.ndarray
    end_s: np.ndarray
    ok: np.ndarray
    input_tokens: np.ndarray  # requested
    prompt_tokens: np.ndarray  # server usage (falls back to requested)
    output_tokens: np.ndarray  # server usage (falls back to the client's count)
    client_tokens: np.ndarray  # client's count of the streamed text
    usage_reported: np.ndarray
    chunks: np.ndarray
    itl_s: np.ndarray  # pooled over requests that finished
    errors: list[str | None]

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.intended_s

    @property
    def e2e_s(self) -> np.ndarray:
        return self.end_s - self.intended_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Per request (E2E − TTFT) / (output − 1); NaN for one-token outputs and failures."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.output_tokens > 1, (self.end_s - self.first_token_s) / (self.output_tokens - 1), np.nan
            )

    @property
    def send_lag_s(self) -> np.ndarray:
        return self.sent_s - self.intended_s


def run_arrays(records: Sequence[RequestRecord], count_tokens: Callable[[str], int]) -> RunArrays:
    """Per-request arrays of a run; tokenises the streamed text (after the run, off the hot path)."""
    n = len(records)
    ok = np.array([r.ok for r in records], dtype=bool)
    client = np.array([count_tokens("".join(r.chunk_text)) if r.chunk_text else 0 for r in records], dtype=np.int64)
    usage = np.array([r.completion_tokens is not None for r in records], dtype=bool)
    out = np.array(
        [r.completion_tokens if r.completion_tokens is not None else client[i] for i, r in enumerate(records)],
        dtype=np.int64,
    )
    prompt = np.array([r.prompt_tokens if r.prompt_tokens is not None else r.input_tokens for r in records])
    gaps = [token_gaps(r.chunk_s, chunk_tokens(r, int(out[i]), count_tokens)) for i, r in enumerate(records) if ok[i]]
    first = np.array([r.first_token_s for r in records], dtype=float)
    end = np.array([r.end_s for r in records], dtype=float)
    first[~ok], end[~ok] = np.nan, np.nan
    return RunArrays(
        intended_s=np.array([r.intended_s for r in records], dtype=float).reshape(n),
        sent_s=np.array([r.sent_s for r in records], dtype=float).reshape(n),
        first_token_s=first,
        end_s=end,
        ok=ok,
        input_tokens=np.array([r.input_tokens for r in records], dtype=np.int64).reshape(n),
        prompt_tokens=prompt.astype(np.int64).reshape(n),
        output_tokens=out.reshape(n),
        client_tokens=client.reshape(n),
        usage_reported=usage.reshape(n),
        chunks=np.array([len(r.chunk_s) for r in records], dtype=np.int64).reshape(n),
        itl_s=np.concatenate(gaps) if gaps else np.zeros(0),
        errors=[r.error for r in records],
    )


def error_counts(
    errors: Sequence[str | None],
    statuses: Sequence[int | None] = (),
    records: Sequence[RequestRecord] = (),
) -> dict[str, Any]:
    """Failed requests by kind (every kind listed, zeros included), the total, HTTP statuses seen and, from the
    records, each distinct failure with its count and the server's message (`messages`, most frequent first)."""
    counts = {k: 0 for k in ERROR_KINDS}
    for e in errors:
        if e is not None:
            counts[e] = counts.get(e, 0) + 1
    by_status: dict[str, int] = {}
    for s in statuses:
        if s is not None:
            by_status[str(s)] = by_status.get(str(s), 0) + 1
    out: dict[str, Any] = {"total": sum(counts.values()), **counts, "http_status": by_status}
    if records:
        seen: dict[tuple[str, int | None, str], int] = {}
        for r in records:
            if r.error is not None:
                key = (r.error, r.http_status, server_message(r.error_detail))
                seen[key] = seen.get(key, 0) + 1
        out["messages"] = [
            {"kind": k, "http_status": st, "message": msg, "count": n}
            for (k, st, msg), n in sorted(seen.items(), key=lambda kv: -kv[1])[:MAX_ERROR_MESSAGES]
        ]
    return out


MAX_ERROR_MESSAGES = 5


def server_message(detail: str) -> str:
    """The message in an error body: an OpenAI JSON error's error.message (or a string error), else the text."""
    text = (detail or "").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err
            return " ".join(str(msg).split())[:200]
        if isinstance(err, str):
            return " ".join(err.split())[:200]
    return " ".join(text.split())[:200]


def describe_error(kind: str, http_status: int | None, detail: str) -> str:
    """One failure in words: 'HTTP 500: out of memory', 'timeout (ReadTimeout)', 'stream_cut: …'."""
    msg = server_message(detail)
    if kind == "http" and http_status is not None:
        return f"HTTP {http_status}: {msg}" if msg else f"HTTP {http_status}"
    return f"{kind}: {msg}" if msg else kind


def met_slo(a: RunArrays, limits: dict[str, float]) -> np.ndarray:
    """Per request: finished and within every per-request limit on ttft, tpot and e2e; an itl limit is checked
    against the request's TPOT (its mean inter-token gap)."""
    ok = a.ok.copy()
    with np.errstate(invalid="ignore"):
        for metric, limit in limits.items():
            values = {"ttft": a.ttft_s, "e2e": a.e2e_s, "tpot": a.tpot_s, "itl": a.tpot_s}[metric]
            ok &= np.nan_to_num(values, nan=0.0 if metric in ("tpot", "itl") else math.inf) <= limit
    return ok


def slo_values(a: RunArrays, terms: Sequence[SloTerm]) -> dict[str, float]:
    """Each SLO term's statistic; a failed request counts as an infinitely slow one."""
    failed = int((~a.ok).sum())
    out: dict[str, float] = {}
    for t in terms:
        if t.metric == "itl":
            samples = a.itl_s
        else:
            values = {"ttft": a.ttft_s, "tpot": a.tpot_s, "e2e": a.e2e_s}[t.metric][a.ok]
            samples = values[~np.isnan(values)]
        samples = np.concatenate([samples, np.full(failed, math.inf)])
        out[t.key] = t.value(samples)
    return out


def slo_met(values: dict[str, float], terms: Sequence[SloTerm]) -> bool:
    return all(t.met_by(values[t.key]) for t in terms)


def summarise(
    a: RunArrays,
    terms: Sequence[SloTerm] = (),
    statuses: Sequence[int | None] = (),
    loop_lag_s: np.ndarray | None = None,
    records: Sequence[RequestRecord] = (),
) -> dict[str, Any]:
    """The summary of one run: docs/design.md's shared keys, then tokens, errors and the client's own lag."""
    ok = a.ok
    n_ok = int(ok.sum())
    ends = a.end_s[ok]
    start = float(np.nanmin(a.intended_s)) if a.intended_s.size else 0.0
    duration = float(ends.max() - start) if n_ok else 0.0
    span = max(duration, 1e-12)
    out_tokens = int(a.output_tokens[ok].sum())
    in_tokens = int(a.prompt_tokens[ok].sum())
    tpot = a.tpot_s[ok]
    lag = a.send_lag_s[~np.isnan(a.sent_s)]
    summary: dict[str, Any] = {
        "requests": {"total": int(a.ok.size), "completed": n_ok, "failed": int(a.ok.size - n_ok)},
        "duration_s": duration,
        "throughput": {
            "output_tokens_per_s": out_tokens / span if n_ok else 0.0,
            "input_tokens_per_s": in_tokens / span if n_ok else 0.0,
            "requests_per_s": n_ok / span if n_ok else 0.0,
        },
        "ttft_s": summary_stats(a.ttft_s[ok]),
        "itl_s": summary_stats(a.itl_s),
        "tpot_s": summary_stats(tpot[~np.isnan(tpot)]),
        "e2e_s": summary_stats(a.e2e_s[ok]),
        "tokens": token_check(a),
        "errors": error_counts(a.errors, statuses, records),
        "client": client_lag(lag, loop_lag_s),
    }
    if terms:
        met = met_slo(a, per_request_limits(list(terms)))
        values = slo_values(a, terms)
        summary["goodput_rps"] = float(met.sum()) / span if n_ok else 0.0
        summary["slo_attainment"] = float(met.sum()) / max(a.ok.size, 1)
        summary["slo"] = {"terms": [str(t) for t in terms], "values": values, "met": slo_met(values, terms)}
    return summary


def token_check(a: RunArrays) -> dict[str, Any]:
    """Server usage against the client's count of the streamed text, and prompts against what was asked."""
    ok = a.ok
    server = a.output_tokens[ok & a.usage_reported]
    client = a.client_tokens[ok & a.usage_reported]
    mismatched = int((server != client).sum())
    prompts_ok = a.prompt_tokens[ok]
    asked = a.input_tokens[ok]
    return {
        "input": int(a.prompt_tokens[ok].sum()),
        "output": int(a.output_tokens[ok].sum()),
        "usage_reported": int((ok & a.usage_reported).sum()),
        "output_client_count": int(a.client_tokens[ok].sum()),
        "output_mismatched_requests": mismatched,
        "output_mismatch_fraction": float(abs(int(client.sum()) - int(server.sum())) / max(int(server.sum()), 1)),
        "input_requested": int(asked.sum()),
        "input_mismatch_fraction": float(abs(int(prompts_ok.sum()) - int(asked.sum())) / max(int(asked.sum()), 1)),
        "chunks": int(a.chunks[ok].sum()),
        "mean_tokens_per_chunk": float(a.output_tokens[ok].sum() / max(int(a.chunks[ok].sum()), 1)),
    }


def client_lag(send_lag_s: np.ndarray, loop_lag_s: np.ndarray | None) -> dict[str, Any]:
    """The client's own delays: send lag (actual − intended send) and event-loop lag; a bottleneck flag."""
    lag = summary_stats(send_lag_s) if send_lag_s.size else summary_stats(np.zeros(0))
    lag["max"] = float(send_lag_s.max()) if send_lag_s.size else math.nan
    loop = summary_stats(loop_lag_s) if loop_lag_s is not None and loop_lag_s.size else None
    bottleneck = bool(send_lag_s.size and lag["p99"] > CLIENT_LAG_WARN_S) or bool(
        loop and loop["p99"] > CLIENT_LAG_WARN_S
    )
    return {"send_lag_s": lag, "loop_lag_s": loop, "bottleneck": bottleneck, "threshold_s": CLIENT_LAG_WARN_S}
