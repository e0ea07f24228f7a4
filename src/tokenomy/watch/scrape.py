"""Engine Prometheus endpoints read into one shape: vLLM's `vllm:*`, SGLang's `sglang:*`, llama.cpp server's
`llamacpp:*` (and the twin, which speaks vLLM's).

The text is parsed with prometheus-client's parser (`text_string_to_metric_families`); samples of one name
are summed over their labels (over `model_name` too, unless a model name is given). Series names:
- vLLM: docs.vllm.ai "Production Metrics" and vllm/v1/metrics/loggers.py;
- SGLang: docs.sglang.ai "Production Metrics" (sglang:num_running_reqs, num_queue_reqs, token_usage, …);
- llama.cpp: tools/server README, `--metrics` (llamacpp:prompt_tokens_total, tokens_predicted_seconds_total, …;
  its server writes values with 6 significant digits, so counters past 10⁶ lose their last digits).
`parse_reading` is pure; `fetch_reading` does the HTTP GET.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

DIALECTS = ("vllm", "sglang", "llamacpp")

# canonical key -> candidate sample names, first present wins
SERIES: dict[str, dict[str, tuple[str, ...]]] = {
    "vllm": {
        "running": ("vllm:num_requests_running",),
        "waiting": ("vllm:num_requests_waiting",),
        "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "prompt_tokens": ("vllm:prompt_tokens_total",),
        "generation_tokens": ("vllm:generation_tokens_total",),
        "requests": ("vllm:request_success_total", "vllm:e2e_request_latency_seconds_count"),
        "ttft_sum": ("vllm:time_to_first_token_seconds_sum",),
        "ttft_count": ("vllm:time_to_first_token_seconds_count",),
        "itl_sum": ("vllm:inter_token_latency_seconds_sum", "vllm:time_per_output_token_seconds_sum"),
        "itl_count": ("vllm:inter_token_latency_seconds_count", "vllm:time_per_output_token_seconds_count"),
        "e2e_sum": ("vllm:e2e_request_latency_seconds_sum",),
        "e2e_count": ("vllm:e2e_request_latency_seconds_count",),
        "queue_sum": ("vllm:request_queue_time_seconds_sum",),
        "queue_count": ("vllm:request_queue_time_seconds_count",),
        "prompt_len_sum": ("vllm:request_prompt_tokens_sum",),
        "prompt_len_count": ("vllm:request_prompt_tokens_count",),
        "output_len_sum": ("vllm:request_generation_tokens_sum",),
        "output_len_count": ("vllm:request_generation_tokens_count",),
        "time_scale": ("twin:speedup",),
    },
    "sglang": {
        "running": ("sglang:num_running_reqs",),
        "waiting": ("sglang:num_queue_reqs",),
        "kv_usage": ("sglang:token_usage",),
        "prompt_tokens": ("sglang:prompt_tokens_total",),
        "generation_tokens": ("sglang:generation_tokens_total",),
        "requests": ("sglang:num_requests_total", "sglang:e2e_request_latency_seconds_count"),
        "ttft_sum": ("sglang:time_to_first_token_seconds_sum",),
        "ttft_count": ("sglang:time_to_first_token_seconds_count",),
        "itl_sum": ("sglang:inter_token_latency_seconds_sum", "sglang:time_per_output_token_seconds_sum"),
        "itl_count": ("sglang:inter_token_latency_seconds_count", "sglang:time_per_output_token_seconds_count"),
        "e2e_sum": ("sglang:e2e_request_latency_seconds_sum",),
        "e2e_count": ("sglang:e2e_request_latency_seconds_count",),
        "queue_sum": ("sglang:queue_time_seconds_sum",),
        "queue_count": ("sglang:queue_time_seconds_count",),
        "prompt_len_sum": ("sglang:prompt_tokens_histogram_sum",),
        "prompt_len_count": ("sglang:prompt_tokens_histogram_count",),
        "output_len_sum": ("sglang:generation_tokens_histogram_sum",),
        "output_len_count": ("sglang:generation_tokens_histogram_count",),
    },
    "llamacpp": {
        "running": ("llamacpp:requests_processing",),
        "waiting": ("llamacpp:requests_deferred",),
        "kv_usage": ("llamacpp:kv_cache_usage_ratio",),
        "prompt_tokens": ("llamacpp:prompt_tokens_total",),
        "generation_tokens": ("llamacpp:tokens_predicted_total",),
        "prompt_seconds": ("llamacpp:prompt_seconds_total",),
        "generation_seconds": ("llamacpp:tokens_predicted_seconds_total",),
        "decode_calls": ("llamacpp:n_decode_total",),
        "busy_slots_per_decode": ("llamacpp:n_busy_slots_per_decode",),  # running average since start
    },
}


class ScrapeError(Exception):
    """An endpoint that could not be read or is not an engine's metrics."""


@dataclass(frozen=True)
class Reading:
    """One scrape of one engine, in canonical keys (counters cumulative, seconds of wall time)."""

    time_s: float  # when it was taken (monotonic clock of the watcher)
    dialect: str
    values: dict[str, float] = field(default_factory=dict)

    def get(self, key: str) -> float | None:
        return self.values.get(key)


def sample_sums(text: str, model_name: str | None = None) -> dict[str, float]:
    """Every sample name in a Prometheus text exposition and its value summed over label sets; with
    `model_name`, only samples without that label or with it equal to the name."""
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, IndexError, TypeError) as exc:
        raise ScrapeError(f"not a Prometheus text exposition ({exc})") from exc
    sums: dict[str, float] = {}
    for family in families:
        for s in family.samples:
            if model_name is not None and s.labels.get("model_name", model_name) != model_name:
                continue
            if s.name.endswith("_bucket") or s.name.endswith("_created"):
                continue
            sums[s.name] = sums.get(s.name, 0.0) + float(s.value)
    return sums


def detect_dialect(sums: dict[str, float]) -> str:
    """Which engine's series these are: the prefix with the most samples (ScrapeError when none)."""
    counts = {d: sum(1 for name in sums if name.startswith(d + ":")) for d in DIALECTS}
    best = max(counts, key=lambda d: counts[d])
    if not counts[best]:
        raise ScrapeError("no vllm:*, sglang:* or llamacpp:* series in the metrics (is this an engine's /metrics?)")
    return best


def parse_reading(text: str, time_s: float, dialect: str | None = None, model_name: str | None = None) -> Reading:
    """A Reading from exposition text; the dialect is detected unless given."""
    sums = sample_sums(text, model_name)
    dialect = dialect or detect_dialect(sums)
    if dialect not in SERIES:
        raise ScrapeError(f"unknown engine dialect '{dialect}'; choose from {', '.join(DIALECTS)}")
    values = {}
    for key, names in SERIES[dialect].items():
        for name in names:
            if name in sums:
                values[key] = sums[name]
                break
    return Reading(time_s, dialect, values)


def metrics_url(url: str) -> str:
    """The metrics endpoint of an engine given by its base URL or its /metrics URL."""
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url if url.endswith("/metrics") else url + "/metrics"


def fetch_reading(client: httpx.Client, url: str, dialect: str | None = None, model_name: str | None = None) -> Reading:
    """GET an engine's metrics and parse them (ScrapeError names the URL and what went wrong)."""
    target = metrics_url(url)
    try:
        response = client.get(target)
    except httpx.HTTPError as exc:
        raise ScrapeError(f"{target}: {type(exc).__name__}: {exc}") from exc
    now_s = time.monotonic()
    if response.status_code != 200:
        raise ScrapeError(f"{target}: HTTP {response.status_code}")
    try:
        return parse_reading(response.text, now_s, dialect, model_name)
    except ScrapeError as exc:
        raise ScrapeError(f"{target}: {exc}") from exc


def fetch_llamacpp_slots(client: httpx.Client, url: str) -> int | None:
    """The slots (requests at once) a llama.cpp server runs, from its /props `total_slots`; None if it does not say."""
    target = metrics_url(url)[: -len("/metrics")] + "/props"
    try:
        response = client.get(target)
        slots = response.json().get("total_slots") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return slots if type(slots) is int and slots >= 1 else None
