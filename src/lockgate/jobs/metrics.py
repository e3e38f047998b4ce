"""The jobs' metrics, read from the job tables when ``/metrics`` is scraped.

``jobs_total{type,outcome}``, ``job_duration_seconds{type}`` (a histogram)
and ``jobs_queue_depth{queue,status}`` (queued and running) are computed from
the database, where every worker of every replica records its jobs: any web
process's ``/metrics`` gives the whole fleet's figures, which no worker's own
counters could (a worker killed with SIGKILL takes its counters with it).
Each scrape costs three grouped queries over the jobs table.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..runtime.metrics import COLLECTED
from .store import JobStore

__all__ = ["BUCKETS", "watch"]

log = logging.getLogger("lockgate.jobs")

#: ``job_duration_seconds`` buckets, in seconds: jobs run from a blink to minutes.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

#: The stores of this process, by service: an app made again replaces its own.
_stores: dict[str, JobStore] = {}
_lock = threading.Lock()
_registered = False


class _JobsCollector:
    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily("jobs", "Jobs finished, by outcome", labels=["type", "outcome"])
        durations = HistogramMetricFamily(
            "job_duration_seconds", "Time a job ran, start to finish", labels=["type"]
        )
        depth = GaugeMetricFamily(
            "jobs_queue_depth", "Jobs waiting (queued) and running", labels=["queue", "status"]
        )
        for store in list(_stores.values()):
            try:
                for kind, outcome, count in store.outcome_counts():
                    total.add_metric([kind, outcome], count)
                for kind, cumulative, seconds, count in store.durations(BUCKETS):
                    buckets = [(str(b), n) for b, n in zip(BUCKETS, cumulative, strict=True)]
                    durations.add_metric([kind], [*buckets, ("+Inf", count)], seconds)
                for queue, status, count in store.depth():
                    depth.add_metric([queue, status], count)
            except Exception:  # a scrape must answer even with a database away
                log.warning("cannot read the jobs of %s", store.service, exc_info=True)
        yield total
        yield durations
        yield depth

    def describe(self) -> Iterator[Metric]:
        return iter(())


def watch(store: JobStore) -> None:
    """Count ``store``'s jobs in this process's ``/metrics``."""
    global _registered
    with _lock:
        _stores[store.service] = store
        if not _registered:
            COLLECTED.register(_JobsCollector())
            _registered = True
