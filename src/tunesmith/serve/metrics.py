"""`GET /metrics` in Prometheus' text format (prometheus_client, one registry per app): requests by route and
status, prompt and generated tokens, request latency and time to first token, requests active and waiting."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServeMetrics:
    def __init__(self, queue_depth: Callable[[], float], active: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tunesmith_requests", "Requests by route and status", ["route", "status"], registry=r)
        self.prompt_tokens = Counter("tunesmith_prompt_tokens", "Prompt tokens of admitted requests", registry=r)
        self.completion_tokens = Counter("tunesmith_completion_tokens", "Tokens generated", registry=r)
        self.latency = Histogram(
            "tunesmith_request_seconds", "Request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.first_token = Histogram(
            "tunesmith_time_to_first_token_seconds", "Streamed time to first token", buckets=LATENCY_BUCKETS, registry=r
        )
        Gauge("tunesmith_queue_depth", "Requests waiting for a batch slot", registry=r).set_function(queue_depth)
        Gauge("tunesmith_active_requests", "Requests being decoded", registry=r).set_function(active)

    def text(self) -> bytes:
        return generate_latest(self.registry)
