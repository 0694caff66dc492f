"""Prometheus metrics, one registry per app so that several sidecars can share a process."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# `*_created` timestamps double the output and nothing here reads them.
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Time to first audio spans ~10 ms (stand-in) to seconds (a cold GPU); finer at the low end.
_TTFA_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    """The sidecar's counters; `render()` gives the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "s2_requests", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.errors = Counter("s2_errors", "Error responses by error code.", ["code"], registry=r)
        self.ttfa = Histogram(
            "s2_ttfa_seconds",
            "Time from a speech request to its first audio byte leaving the sidecar.",
            buckets=_TTFA_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge(
            "s2_active_streams", "Speech responses being generated now.", registry=r
        )
        self.streams_cancelled = Counter(
            "s2_streams_cancelled",
            "Speech streams stopped because the client went away.",
            registry=r,
        )
        self.streams_aborted = Counter(
            "s2_streams_aborted",
            "Speech streams cut after their headers went out (engine failure, stalled reader, "
            "shutdown), by reason.",
            ["reason"],
            registry=r,
        )
        for reason in ("engine_error", "write_timeout", "shutdown"):
            self.streams_aborted.labels(reason)
        self.admission_limit = Gauge(
            "s2_admission_limit", "Generations admitted at once.", registry=r
        )
        self.queue_depth = Gauge(
            "s2_queue_depth", "Speech requests waiting for a generation slot.", registry=r
        )
        self.rejected = Counter(
            "s2_rejected",
            "Speech requests refused with a 503 at admission, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in ("queue_full", "queue_timeout", "draining"):
            self.rejected.labels(reason)
        self.engine_busy = Gauge(
            "s2_engine_busy", "Generations the engine is working on now.", registry=r
        )
        self.warmups = Counter(
            "s2_warmups", "Persona warm-up generations by outcome.", ["outcome"], registry=r
        )
        for outcome in ("ok", "error"):
            self.warmups.labels(outcome)
        self.engine_restarts = Counter(
            "s2_engine_restarts", "Times the engine process was restarted.", registry=r
        )
        self.truncated = Counter(
            "s2_truncated",
            "Generations the engine stopped at max_new_tokens, so their audio ends early.",
            registry=r,
        )
        self.audio_seconds = Counter(
            "s2_audio_seconds", "Seconds of audio sent to clients.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
