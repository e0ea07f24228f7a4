"""Prometheus series with vLLM's names, so routers read a twin's load as they would a vLLM server's.

Gauges and counters are read from the engine when scraped (nothing is counted per token); the TTFT and
end-to-end histograms are observed once per request, in wall-clock seconds as the clients see them.
Each server has its own CollectorRegistry, so several twins can run in one process.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tokenomy.twin.engine import TwinEngine

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
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EngineCollector(Collector):
    """Scrape-time gauges and counters from a TwinEngine."""

    def __init__(self, engine: TwinEngine, model_name: str, success_by_reason: dict[str, int]):
        self.engine = engine
        self.model_name = model_name
        self.success_by_reason = success_by_reason

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
        yield self._gauge("vllm:num_requests_running", "Requests in the model execution batch.", e.running)
        yield self._gauge("vllm:num_requests_waiting", "Requests waiting to be processed.", e.waiting)
        yield self._gauge("vllm:gpu_cache_usage_perc", "KV-cache usage (1 = 100%).", e.kv_usage)
        yield self._gauge("vllm:kv_cache_usage_perc", "KV-cache usage (1 = 100%).", e.kv_usage)
        yield self._counter("vllm:prompt_tokens", "Prefill tokens processed.", counters.prompt_tokens)
        yield self._counter("vllm:generation_tokens", "Generation tokens processed.", counters.generation_tokens)
        yield self._counter(
            "vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", counters.prompt_tokens
        )
        yield self._counter(
            "vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.", counters.cached_prompt_tokens
        )
        success = CounterMetricFamily(
            "vllm:request_success", "Successfully processed requests.", labels=["model_name", "finished_reason"]
        )
        for reason, n in sorted(self.success_by_reason.items()):
            success.add_metric([self.model_name, reason], n)
        yield success
        lateness = e.lateness.summary()
        yield self._gauge(
            "twin:emission_lateness_p99_seconds",
            "p99 of how late token writes were against their scheduled time.",
            lateness.get("p99", 0.0),
        )
        yield self._counter(
            "twin:resyncs", "Times the twin fell behind schedule and moved its clock.", counters.resyncs
        )


class TwinMetrics:
    """The registry of one twin server and the per-request observations."""

    def __init__(self, engine: TwinEngine, model_name: str):
        self.registry = CollectorRegistry()
        self.model_name = model_name
        self.success_by_reason: dict[str, int] = {}
        self.registry.register(EngineCollector(engine, model_name, self.success_by_reason))
        self.ttft_s = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token in seconds.",
            ["model_name"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        ).labels(model_name=model_name)
        self.e2e_s = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency in seconds.",
            ["model_name"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        ).labels(model_name=model_name)

    def request_done(self, ttft_s: float, e2e_s: float, finished_reason: str) -> None:
        self.ttft_s.observe(ttft_s)
        self.e2e_s.observe(e2e_s)
        self.success_by_reason[finished_reason] = self.success_by_reason.get(finished_reason, 0) + 1

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
