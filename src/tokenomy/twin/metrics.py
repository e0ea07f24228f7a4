"""Prometheus series with vLLM's names, types and buckets, so routers, dashboards and `tokenomy watch` read a
twin's load as they would a vLLM server's.

Names, types and bucket bounds follow vLLM's V1 Prometheus logger (vllm/v1/metrics/loggers.py and the
"Production Metrics" page of docs.vllm.ai); the Kubernetes Gateway API Inference Extension's model-server
protocol reads `vllm:num_requests_waiting`, `vllm:num_requests_running` and `vllm:gpu_cache_usage_perc`
(or `vllm:kv_cache_usage_perc`). Every series carries the `model_name` label (the served model name).

Gauges and counters are read from the engine when scraped (nothing is counted per token). The per-request
histograms are observed once per finished request, in wall-clock seconds as the clients see them:
- `vllm:time_to_first_token_seconds`, `vllm:e2e_request_latency_seconds`, `vllm:request_prompt_tokens`,
  `vllm:request_generation_tokens`, `vllm:request_time_per_output_token_seconds` (one sample per request);
- `vllm:inter_token_latency_seconds` and its older name `vllm:time_per_output_token_seconds`: vLLM observes
  every gap between consecutive tokens. The twin observes a request's n−1 gaps at once, each at the request's
  mean gap (first token to last / (n−1)): `_sum` and `_count` are exactly vLLM's (total decode time, number of
  gaps), the buckets place a request's gaps at their mean.
Each server has its own CollectorRegistry, so several twins can run in one process. `twin:*` series are the
twin's own (emission lateness, resyncs, speedup).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tokenomy.twin.engine import TwinEngine

# vLLM's bucket bounds (seconds), from vllm/v1/metrics/loggers.py.
LATENCY_BUCKETS_S = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)  # vllm:time_to_first_token_seconds
TTFT_BUCKETS_S = LATENCY_BUCKETS_S
ITL_BUCKETS_S = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
REQUEST_LATENCY_BUCKETS_S = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)  # vllm:e2e_request_latency_seconds and the other per-phase request times
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def buckets_1_2_5(max_value: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, … up to `max_value` (vLLM's build_1_2_5_buckets, for token-count histograms)."""
    out: list[float] = []
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale > max_value:
                return tuple(out)
            out.append(float(m * scale))
        scale *= 10


class WeightedHistogram:
    """A Prometheus histogram that takes several equal observations at once (cumulative buckets on output)."""

    def __init__(self, name: str, doc: str, bounds: Sequence[float]):
        self.name, self.doc = name, doc
        self.bounds = tuple(bounds)
        self.counts = [0.0] * (len(self.bounds) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, value: float, n: float = 1.0) -> None:
        """Add `n` observations of `value`."""
        if n <= 0 or not math.isfinite(value):
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += n
        self.sum += value * n

    def family(self, labels: list[str], label_values: list[str]) -> HistogramMetricFamily:
        h = HistogramMetricFamily(self.name, self.doc, labels=labels)
        cumulative, buckets = 0.0, []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), cumulative))
        h.add_metric(label_values, buckets, self.sum)
        return h


class EngineCollector(Collector):
    """Scrape-time gauges and counters from a TwinEngine, and the twin's weighted histograms."""

    def __init__(
        self,
        engine: TwinEngine,
        model_name: str,
        success_by_reason: dict[str, int],
        weighted: Sequence[WeightedHistogram] = (),
    ):
        self.engine = engine
        self.model_name = model_name
        self.success_by_reason = success_by_reason
        self.weighted = tuple(weighted)

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily(name, doc, labels=["model_name"])
        g.add_metric([self.model_name], value)
        return g

    def _counter(self, name: str, doc: str, value: float) -> CounterMetricFamily:
        c = CounterMetricFamily(name, doc, labels=["model_name"])
        c.add_metric([self.model_name], value)
        return c

    def collect(self) -> Iterator[Metric]:
        e, counters = self.engine, self.engine.counters
        yield self._gauge("vllm:num_requests_running", "Number of requests in model execution batches.", e.running)
        yield self._gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", e.waiting)
        yield self._gauge(
            "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage (deprecated name).", e.kv_usage
        )
        yield self._gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", e.kv_usage)
        yield self._counter("vllm:prompt_tokens", "Number of prefill tokens processed.", counters.prompt_tokens)
        yield self._counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", counters.generation_tokens
        )
        yield self._counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            counters.prompt_tokens,
        )
        yield self._counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            counters.cached_prompt_tokens,
        )
        stats = getattr(e.replica, "stats", None)
        yield self._counter(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            getattr(stats, "preemptions", 0),
        )
        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=["model_name", "finished_reason"],
        )
        for reason, n in sorted(self.success_by_reason.items()):
            success.add_metric([self.model_name, reason], n)
        yield success
        kv = e.replica.kv
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig.",
            labels=["model_name", "block_size", "num_gpu_blocks"],
        )
        info.add_metric([self.model_name, str(getattr(kv, "block_tokens", 0)), str(getattr(kv, "total_blocks", 0))], 1)
        yield info
        for h in self.weighted:
            yield h.family(["model_name"], [self.model_name])
        lateness = e.lateness.summary()
        yield self._gauge(
            "twin:emission_lateness_p99_seconds",
            "p99 of how late token writes were against their scheduled time.",
            lateness.get("p99", 0.0),
        )
        yield self._counter(
            "twin:resyncs", "Times the twin fell behind schedule and moved its clock.", counters.resyncs
        )
        yield self._gauge("twin:speedup", "How many times faster than the cost model's clock the twin runs.", e.speedup)


class TwinMetrics:
    """The registry of one twin server and the per-request observations."""

    def __init__(self, engine: TwinEngine, model_name: str, max_model_len: int = 0):
        self.registry = CollectorRegistry()
        self.model_name = model_name
        self.success_by_reason: dict[str, int] = {}
        self.itl_s = WeightedHistogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS_S
        )
        self.tpot_s = WeightedHistogram(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds (older name of inter-token latency).",
            ITL_BUCKETS_S,
        )
        self.registry.register(EngineCollector(engine, model_name, self.success_by_reason, (self.itl_s, self.tpot_s)))

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, ["model_name"], buckets=buckets, registry=self.registry).labels(
                model_name=model_name
            )

        self.ttft_s = histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS_S
        )
        self.e2e_s = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            REQUEST_LATENCY_BUCKETS_S,
        )
        self.request_tpot_s = histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BUCKETS_S,
        )
        token_buckets = buckets_1_2_5(max(max_model_len or engine.d.model.max_context_tokens, 1))
        self.prompt_tokens = histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", token_buckets
        )
        self.generation_tokens = histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", token_buckets
        )

    def request_done(
        self,
        ttft_s: float,
        e2e_s: float,
        finished_reason: str,
        prompt_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        """One finished request: its TTFT and e2e (wall seconds), lengths, and its output gaps at their mean."""
        decode_s = max(e2e_s - ttft_s, 0.0)  # first to last token, both on the step schedule
        # A twin behind its schedule can hand a request a token scheduled before it arrived: never below 0.
        ttft_s, e2e_s = max(ttft_s, 0.0), max(e2e_s, 0.0)
        self.ttft_s.observe(ttft_s)
        self.e2e_s.observe(e2e_s)
        self.success_by_reason[finished_reason] = self.success_by_reason.get(finished_reason, 0) + 1
        if output_tokens > 0:
            self.prompt_tokens.observe(prompt_tokens)
            self.generation_tokens.observe(output_tokens)
        if output_tokens > 1:
            mean_gap_s = decode_s / (output_tokens - 1)
            self.itl_s.observe(mean_gap_s, output_tokens - 1)
            self.tpot_s.observe(mean_gap_s, output_tokens - 1)
            self.request_tpot_s.observe(mean_gap_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
