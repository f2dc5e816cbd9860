"""Prometheus metrics (GET /metrics): the families one process exports, in its own registry.

Counters count what this process did; the gauges read shared state (the ledger's queue, the
provider pause every replica sees) when scraped, so they are right across replicas.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

P = ParamSpec("P")
R = TypeVar("R")

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
        self.budget_usd = Gauge(
            "imagedrop_budget_spend_usd", "Spend counted today (UTC) against each budget: a "
            "folder's (scope folder:<bucket>/<manifest>) or the service's (from the ledger, "
            "every replica's, when scraped).", ["scope"], registry=r)
        self.budget_edits = Gauge(
            "imagedrop_budget_edits", "Provider edits counted today (UTC) against each budget.",
            ["scope"], registry=r)
        self.stage_cpu = Counter(
            "imagedrop_stage_cpu_seconds", "CPU time of the synchronous stages of a job, from "
            "the running thread's CPU clock: receive (JSON), decode (base64), check (image "
            "header and integrity), result (result encoding), callback (payload and signature).",
            ["stage"], registry=r)
        self._stages: dict[str, Counter] = {}
        r.register(ThreadCPU())

    @contextmanager
    def cpu(self, stage: str) -> Iterator[None]:
        """Count the CPU this thread spends in the block as `stage` (blocks must not await)."""
        start = time.thread_time()
        try:
            yield
        finally:
            self.add_cpu(stage, time.thread_time() - start)

    def add_cpu(self, stage: str, seconds: float) -> None:
        """Count `seconds` of CPU as `stage` (for a block whose stage is known only after)."""
        counter = self._stages.get(stage)
        if counter is None:  # labels() takes a lock and a lookup: once per stage, not per call
            counter = self._stages[stage] = self.stage_cpu.labels(stage)
        counter.inc(seconds)

    def timed(self, stage: str, fn: Callable[P, R]) -> Callable[P, R]:
        """`fn`, counting its CPU as `stage` in whichever thread it runs."""
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.cpu(stage):
                return fn(*args, **kwargs)
        return run

    def render(self) -> bytes:
        """The Prometheus text exposition of every family."""
        return generate_latest(self.registry)


class ThreadCPU(Collector):
    """`imagedrop_thread_cpu_seconds{thread}`: CPU used by each of the process's threads, by
    name (numbered pool threads summed): the event loop, the ledger's thread, the provider's loop
    and the CPU pool. Read from each thread's CPU clock when scraped."""

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "imagedrop_thread_cpu_seconds", "CPU seconds used by each thread (pools summed).",
            labels=["thread"])
        totals: dict[str, float] = {}
        for thread in threading.enumerate():
            if thread.ident is None:
                continue
            try:
                seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (OSError, AttributeError):  # ended meanwhile, or a platform without it
                continue
            name = _POOL_SUFFIX.sub("", thread.name)
            totals[name] = totals.get(name, 0.0) + seconds
        for name, seconds in sorted(totals.items()):
            family.add_metric([name], seconds)
        yield family


_POOL_SUFFIX = re.compile(r"_\d+$")
