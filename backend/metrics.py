"""Prometheus metrics: requests, trainings, samples, predicted rows per runtime, served versions.

With several gunicorn workers the master sets ``PROMETHEUS_MULTIPROC_DIR``
before any worker exists, and each worker writes its values there; a scrape
of ``/metrics`` on any worker sums them. prometheus_client chooses that mode
when it is first imported, so it is imported here lazily, never at start-up
of the package.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator

# (model, version, live score, drift detected): one model's live state, read when /metrics is scraped
LiveSource = Callable[[], tuple[str, "str | None", "float | None", bool]]

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """One app's metrics; in multiprocess mode the values live in files shared by the workers."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # a private registry per app: tests build many apps in one process; multiprocess mode exports from files
        self._registry = CollectorRegistry()
        registry = None if self.multiprocess else self._registry
        self.requests = Counter("refit_http_requests_total", "HTTP requests answered",
                                ["model", "endpoint", "method", "status"], registry=registry)
        self.latency = Histogram("refit_http_request_duration_seconds", "Time to answer a request",
                                 ["model", "endpoint"], buckets=DURATION_BUCKETS, registry=registry)
        self.trainings = Counter("refit_trainings_total", "Training jobs by outcome", ["model", "outcome"],
                                 registry=registry)
        self.samples = Counter("refit_samples_ingested_total", "Samples accepted by POST /samples", ["model"],
                               registry=registry)
        self.predictions = Counter("refit_predictions_total", "Rows predicted, by the runtime that answered them",
                                   ["model", "runtime"], registry=registry)
        gauge: dict[str, Any] = {"multiprocess_mode": "liveall"} if self.multiprocess else {}
        self.served_version = Gauge("refit_served_version", "Version number each worker serves (0 = none)",
                                    ["model"], registry=registry, **gauge)
        # the live score and drift state live in each model's monitoring.json, shared by the workers, so they
        # are read from there at scrape time: right whichever worker answers, with no per-process gauge files
        self._live = _LiveCollector()
        if not self.multiprocess:
            self._registry.register(self._live)

    def watch_live(self, source: LiveSource) -> None:
        """Report one model's live score and drift state (``refit_live_score``, ``refit_drift_detected``)."""
        self._live.sources.append(source)

    def serving(self, model: str, version: str | None) -> None:
        self.served_version.labels(model=model).set(int(version[1:]) if version else 0)

    def exposition(self) -> tuple[bytes, str]:
        """The text a Prometheus scrape gets, with its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self._live)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self._registry), CONTENT_TYPE_LATEST


class _LiveCollector:
    """A collector of the gauges read from the models' monitoring state when scraped."""

    def __init__(self) -> None:
        self.sources: list[LiveSource] = []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        score = GaugeMetricFamily("refit_live_score", "The active version's live score over its newest minLabels labels",
                                  labels=["model", "version"])
        detected = GaugeMetricFamily("refit_drift_detected", "1 while a drift episode is open", labels=["model"])
        for source in self.sources:
            model, version, value, drifting = source()
            if version is not None and value is not None:
                score.add_metric([model, version], value)
            detected.add_metric([model], 1.0 if drifting else 0.0)
        yield score
        yield detected


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (gunicorn's child_exit hook)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
