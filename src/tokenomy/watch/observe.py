"""What an engine did between two scrapes, from counter and histogram deltas (no I/O).

Times are converted to the cost model's clock: wall seconds × `time_scale` (1 for a real engine; a twin run
`--speedup K` is K). Per interval:
- TTFT = Δ ttft_sum / Δ ttft_count; ITL = Δ itl_sum / Δ itl_count (llama.cpp: Δ tokens_predicted_seconds /
  Δ tokens_predicted, its per-slot time per generated token);
- output throughput = Δ generation tokens / Δt; prompt and output tokens per request from the per-request
  length histograms (vllm:request_prompt_tokens, …) where exported, else Δ tokens / Δ requests (biased when
  few requests finish: the token counters also count unfinished ones; not taken below MIN_REQUESTS);
- the mean running batch by Little's law, L = λ·W: Σ e2e of the requests finished in the interval / Δt, less
  the mean queue (Δ queue_sum / Δt when the engine exports it, else the waiting gauge's mean); llama.cpp exports
  no e2e but the running average of busy slots per llama_decode() call and the count of calls, so Δ(average ×
  calls) / Δ calls is the mean batch of the interval's steps ("decode"); without either, or with fewer than
  MIN_REQUESTS finished (Little's law over a window is biased by the requests that straddle its edges, and one
  or two requests are all edge), the mean of the running gauge at both ends;
- queue length and KV usage: the gauges' mean at both ends.
A count lower than at the previous scrape means the engine restarted: the interval has no observation.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenomy.watch.scrape import Reading

# Finished requests an interval needs before its per-request means, its lengths and its Little's-law batch are
# used: with 0–2, each rests on one or two requests whose lives mostly lie outside the interval.
MIN_REQUESTS = 3


@dataclass(frozen=True)
class Observation:
    """One interval of one engine (cost-model seconds; None where the engine does not say)."""

    wall_s: float  # length of the interval on the watcher's clock
    model_s: float  # the same in the cost model's time (wall × time scale)
    requests: float | None  # finished in the interval (None: the engine does not count them, e.g. llama.cpp)
    ttft_count: float
    itl_count: float
    prompt_tokens: float
    generation_tokens: float
    ttft_s: float | None
    itl_s: float | None
    e2e_s: float | None
    output_tokens_per_s: float
    requests_per_s: float | None
    prompt_tokens_per_request: float | None
    output_tokens_per_request: float | None
    batch: float  # mean running sequences
    batch_source: str  # "little" (from e2e sums) or "gauge"
    waiting: float
    kv_usage: float | None


# Counts that only go up while an engine runs (a histogram's _sum may fall: observations can be negative).
MONOTONIC = frozenset(
    (
        "requests",
        "prompt_tokens",
        "generation_tokens",
        "ttft_count",
        "itl_count",
        "e2e_count",
        "generation_seconds",
        "decode_calls",
        "prompt_len_count",
        "output_len_count",
    )
)


class CounterReset(Exception):
    """A counter went down between two scrapes: the engine restarted."""


def _delta(prev: Reading, cur: Reading, key: str) -> float | None:
    a, b = prev.get(key), cur.get(key)
    if a is None or b is None:
        return None
    if b < a - 1e-9 and key in MONOTONIC:
        raise CounterReset(key)
    return b - a


def _mean_gauge(prev: Reading, cur: Reading, key: str) -> float | None:
    values = [v for v in (prev.get(key), cur.get(key)) if v is not None]
    return sum(values) / len(values) if values else None


def _ratio(num: float | None, den: float | None, min_den: float = 1e-12) -> float | None:
    return num / den if num is not None and den is not None and den > min_den else None


def _lengths(
    len_sum: float | None, len_count: float | None, tokens: float, requests: float | None, enough: bool
) -> float | None:
    """Tokens per finished request: the length histogram's mean, else Δ tokens / Δ requests; None below
    MIN_REQUESTS finished."""
    if not enough:
        return None
    return _ratio(len_sum, len_count, 0.5) or _ratio(tokens, requests, 0.5)


def _decode_batch(prev: Reading, cur: Reading) -> float | None:
    """Mean busy slots per engine step in the interval, from a running average over steps and the step count
    (llama.cpp's n_busy_slots_per_decode and n_decode_total): 0 without a step; None without them."""
    calls = _delta(prev, cur, "decode_calls")
    a, b = prev.get("busy_slots_per_decode"), cur.get("busy_slots_per_decode")
    if calls is None or a is None or b is None:
        return None
    if calls < 1:
        return 0.0
    n0 = prev.values["decode_calls"]
    return max((b * (n0 + calls) - a * n0) / calls, 0.0)


def observe(prev: Reading, cur: Reading, time_scale: float = 1.0) -> Observation:
    """The interval between two readings of one engine (CounterReset when the engine restarted)."""
    if time_scale <= 0:
        raise ValueError(f"time scale must be positive, got {time_scale}")
    wall_s = cur.time_s - prev.time_s
    if wall_s <= 0:
        raise ValueError("readings must be in time order")
    model_s = wall_s * time_scale
    d = {
        k: _delta(prev, cur, k)
        for k in (
            "requests",
            "prompt_tokens",
            "generation_tokens",
            "ttft_sum",
            "ttft_count",
            "itl_sum",
            "itl_count",
            "e2e_sum",
            "e2e_count",
            "queue_sum",
            "generation_seconds",
            "prompt_len_sum",
            "prompt_len_count",
            "output_len_sum",
            "output_len_count",
        )
    }
    requests = d["requests"] if d["requests"] is not None else d["e2e_count"]
    enough = requests is None or requests >= MIN_REQUESTS
    gen = d["generation_tokens"] or 0.0
    prompt = d["prompt_tokens"] or 0.0

    def scaled(value: float | None) -> float | None:
        return value * time_scale if value is not None else None

    ttft_s = scaled(_ratio(d["ttft_sum"], d["ttft_count"]))
    if d["itl_sum"] is not None:
        itl_s, itl_count = scaled(_ratio(d["itl_sum"], d["itl_count"])), d["itl_count"] or 0.0
    else:  # llama.cpp: seconds spent generating per generated token
        itl_s, itl_count = scaled(_ratio(d["generation_seconds"], gen)), gen
    e2e_s = scaled(_ratio(d["e2e_sum"], d["e2e_count"]))
    waiting = _mean_gauge(prev, cur, "waiting") or 0.0
    running = _mean_gauge(prev, cur, "running")
    if d["e2e_sum"] is not None and (d["e2e_count"] or 0) > 0 and (running is None or d["e2e_count"] >= MIN_REQUESTS):
        queued = d["queue_sum"] / wall_s if d["queue_sum"] is not None else waiting
        batch, source = max(d["e2e_sum"] / wall_s - queued, 0.0), "little"
    elif (busy := _decode_batch(prev, cur)) is not None:
        batch, source = busy, "decode"
    else:
        batch, source = running or 0.0, "gauge"
    return Observation(
        wall_s=wall_s,
        model_s=model_s,
        requests=requests,
        ttft_count=d["ttft_count"] or 0.0,
        itl_count=itl_count,
        prompt_tokens=prompt,
        generation_tokens=gen,
        ttft_s=ttft_s,
        itl_s=itl_s,
        e2e_s=e2e_s,
        output_tokens_per_s=gen / model_s,
        requests_per_s=requests / model_s if requests is not None else None,
        prompt_tokens_per_request=_lengths(d["prompt_len_sum"], d["prompt_len_count"], prompt, requests, enough),
        output_tokens_per_request=_lengths(d["output_len_sum"], d["output_len_count"], gen, requests, enough),
        batch=batch,
        batch_source=source,
        waiting=waiting,
        kv_usage=_mean_gauge(prev, cur, "kv_usage"),
    )
