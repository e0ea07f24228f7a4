"""The gateway's Prometheus metrics, in a registry of its own (one per app, so tests can run several)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class TierGauges(Collector):
    """Live state of every tier, read when /metrics is scraped."""

    def __init__(self, gateway) -> None:  # noqa: ANN001 - the Gateway (app.py) that owns it
        self.gateway = gateway

    def collect(self) -> Iterator[GaugeMetricFamily]:
        inflight = GaugeMetricFamily("tokenomy_gateway_inflight", "Requests in flight per tier.", labels=["tier"])
        ttft = GaugeMetricFamily(
            "tokenomy_gateway_predicted_ttft_seconds", "Last predicted TTFT per self-hosted tier.", labels=["tier"]
        )
        spilling = GaugeMetricFamily("tokenomy_gateway_spilling", "1 while a tier spills.", labels=["tier"])
        breaker = GaugeMetricFamily(
            "tokenomy_gateway_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.", labels=["tier"]
        )
        for tier in self.gateway.tiers:
            inflight.add_metric([tier.name], tier.upstream.load.in_flight)
            if tier.last_predicted_ttft_s is not None:
                ttft.add_metric([tier.name], tier.last_predicted_ttft_s)
            spilling.add_metric([tier.name], 1.0 if tier.spilling else 0.0)
            breaker.add_metric([tier.name], BREAKER_STATES[tier.upstream.breaker.state])
        pending = GaugeMetricFamily("tokenomy_gateway_ledger_pending_rows", "Ledger rows not yet written.")
        pending.add_metric([], self.gateway.ledger.pending())
        yield from (inflight, ttft, spilling, breaker, pending)


class GatewayMetrics:
    def __init__(self, gateway) -> None:  # noqa: ANN001
        self.children: dict[tuple, Any] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tokenomy_gateway_requests",
            "Requests answered, by tier, class and status.",
            ["tier", "cls", "status"],
            registry=r,
        )
        self.attempts = Counter("tokenomy_gateway_attempts", "Upstream attempts.", ["tier", "status"], registry=r)
        self.spills = Counter(
            "tokenomy_gateway_spills", "Requests that skipped a tier over its SLO.", ["tier"], registry=r
        )
        self.failovers = Counter("tokenomy_gateway_failovers", "Attempts that failed over.", ["tier"], registry=r)
        self.rejected = Counter("tokenomy_gateway_rejected", "Requests refused before routing.", ["reason"], registry=r)
        self.over_reservation = Counter(
            "tokenomy_gateway_over_reservation",
            "Attempts that used more tokens or $ than their reservation (the ledger row's reason says by how much).",
            ["tier"],
            registry=r,
        )
        self.cost = Counter("tokenomy_gateway_cost_usd", "Cost of answered requests.", ["tier"], registry=r)
        self.tokens = Counter("tokenomy_gateway_tokens", "Tokens, by tier and kind.", ["tier", "kind"], registry=r)
        self.ttft = Histogram(
            "tokenomy_gateway_ttft_seconds", "Time to first token.", ["tier"], buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.admission = Histogram(
            "tokenomy_gateway_admission_seconds",
            "Time from request received to upstream request sent (the gateway's own work).",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        r.register(TierGauges(gateway))

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once per label set (label sets are few: tiers, classes, statuses)."""
        key = (id(metric), labels)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = metric.labels(*labels)
        return child
