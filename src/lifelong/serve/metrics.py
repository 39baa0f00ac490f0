"""``GET /metrics``: the service in the Prometheus text format (prometheus_client, with a registry of its
own so two apps in one process — the tests — never share counters).

- ``lifelong_serve_requests_total{endpoint,method,status}``: requests answered, by route template
  (``/v1/models/{version}/promote``, not one series per version; unknown paths are ``other``).
- ``lifelong_serve_request_seconds{endpoint,method,status}``: a histogram of the time from the request's
  arrival to its response's last byte, as this process sees it.
- Read from ``Service.state()`` at each scrape: ``lifelong_serve_version`` (serving), ``…_feedback_backlog``
  (committed rows no candidate has trained on yet), ``…_feedback_rows``, ``…_tasks``, ``…_versions``,
  ``…_promoted``, ``…_rejected``, and ``lifelong_serve_learner_state{state}`` (1 for the learner's state,
  0 for the others), and ``lifelong_serve_store_up`` (0 when the store cannot be read).
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

LEARNER_STATES = ("idle", "training", "evaluating", "stopped", "failed")
# The state's counts and their metric names (state() key -> name, help).
COUNTS = {
    "backlog": ("feedback_backlog", "committed feedback rows the learner has not trained on yet"),
    "feedback": ("feedback_rows", "feedback rows in the store"),
    "tasks": ("tasks", "tasks opened"),
    "versions": ("versions", "model versions recorded"),
    "promoted": ("promoted", "versions the learner promoted"),
    "rejected": ("rejected", "candidates the promotion rule rejected"),
}
# Latency buckets in seconds: fine below 50 ms, where a batch-1 prediction should land.
BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceCollector:
    """Gauges read from the service at scrape time (so they are never stale)."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        try:
            state = self.service.state()
        except Exception:  # a scrape must not fail because the store is down: say so instead
            yield GaugeMetricFamily("lifelong_serve_store_up", "1 if the store could be read", value=0)
            return
        yield GaugeMetricFamily("lifelong_serve_store_up", "1 if the store could be read", value=1)
        version = state.get("version")
        yield GaugeMetricFamily(
            "lifelong_serve_version", "the model version answering predictions", value=version if version else 0
        )
        for key, (name, help_text) in COUNTS.items():
            value = state.get(key)
            if isinstance(value, int | float):
                yield GaugeMetricFamily(f"lifelong_serve_{name}", help_text, value=value)
        learner = str(state.get("learner", "")).split(":")[0].strip()
        family = GaugeMetricFamily("lifelong_serve_learner_state", "1 for the learner's state", labels=["state"])
        for name in LEARNER_STATES:
            family.add_metric([name], 1.0 if learner == name else 0.0)
        yield family


class Metrics:
    """The registry: request counters and latency histograms, and the service's gauges."""

    def __init__(self, service):
        disable_created_metrics()  # the *_created series: one per label set, of no use here
        self.registry = CollectorRegistry()
        labels = ["endpoint", "method", "status"]
        self.requests = Counter("lifelong_serve_requests", "HTTP requests answered", labels, registry=self.registry)
        self.latency = Histogram(
            "lifelong_serve_request_seconds", "HTTP request latency", labels, buckets=BUCKETS, registry=self.registry
        )
        self.registry.register(ServiceCollector(service))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Timer:
    """ASGI middleware: counts and times every request into ``metrics``."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client sees if the app fails before it answers

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            labels = (route, scope["method"], str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
