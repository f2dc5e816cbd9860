"""Prometheus metrics (GET /metrics): the families one process exports, in its own registry.

Counters count what this process did; the gauges read shared state (the ledger's queue, the
provider pause every replica sees) when scraped, so they are right across replicas.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Provider edits take seconds to minutes (gpt-image) or milliseconds (local, fakes).
_PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300)


class Metrics:
    """Every metric family, registered in one registry per process (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        self.jobs = Counter(
            "imagedrop_jobs", "Job runs by kind (b64, cos, batch, drop) and outcome (completed, "
            "failed, retry, deferred, lost).", ["kind", "outcome"], registry=r)
        self.jobs_queued = Gauge(
            "imagedrop_jobs_queued", "Jobs waiting to run, across every replica (from the "
            "ledger, when scraped).", registry=r)
        self.provider_seconds = Histogram(
            "imagedrop_provider_request_seconds", "Provider edit calls by provider (openai, "
            "local) and outcome (ok, transient, permanent, billing, quota).",
            ["provider", "outcome"], buckets=_PROVIDER_BUCKETS, registry=r)
        self.deliveries = Counter(
            "imagedrop_deliveries", "Callback attempts by kind (callback, webhook, ops) and "
            "outcome (delivered, retry, failed, disabled, exhausted).", ["kind", "outcome"],
            registry=r)
        self.notifications = Counter(
            "imagedrop_notifications", "Objects announced to POST /events by producer and "
            "result (recorded, duplicate, ignored), and refused notifications (result refused "
            "or invalid, source unknown).", ["source", "result"], registry=r)
        self.provider_paused = Gauge(
            "imagedrop_provider_paused", "1 while a billing or quota stop pauses the provider "
            "for every replica.", registry=r)
        self.provider_cost = Counter(
            "imagedrop_provider_cost_usd", "Estimated provider spend in US dollars by model, "
            "from each edit's reported usage and the price table.", ["model"], registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition of every family."""
        return generate_latest(self.registry)
