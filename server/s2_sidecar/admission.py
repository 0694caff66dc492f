"""Admission control: serve what the engine can serve in time, refuse the rest at once.

A refusal is a 503 with `Retry-After`, sent within milliseconds, so that a framework's fallback
(LiveKit's `FallbackAdapter`, Pipecat's service switcher) moves the call to another TTS instead
of waiting out its timeout on a queue that will not move.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from s2_sidecar.errors import Unavailable
from s2_sidecar.metrics import Metrics

RETRY_AFTER_S = 1
"""What a refused client is told to wait: a generation slot frees up within about a second."""


class Admission:
    """At most `limit` holders at once; up to `queue` more wait `wait_s`; others are refused."""

    def __init__(self, limit: int, queue: int, wait_s: float, metrics: Metrics) -> None:
        if limit < 1 or queue < 0 or wait_s < 0:
            raise ValueError("admission needs limit >= 1, queue >= 0 and wait_s >= 0")
        self.limit = limit
        self.queue = queue
        self.wait_s = wait_s
        self._slots = asyncio.Semaphore(limit)
        self._waiting = 0
        self._metrics = metrics
        metrics.admission_limit.set(limit)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a generation slot for the block; raises `Unavailable` (503) when none comes."""
        if self._slots.locked():
            if self._waiting >= self.queue:
                self._refuse("queue_full")
            self._waiting += 1
            self._metrics.queue_depth.set(self._waiting)
            try:
                async with asyncio.timeout(self.wait_s):
                    await self._slots.acquire()
            except TimeoutError:
                self._refuse("queue_timeout")
            finally:
                self._waiting -= 1
                self._metrics.queue_depth.set(self._waiting)
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    def _refuse(self, reason: str) -> None:
        self._metrics.rejected.labels(reason).inc()
        raise Unavailable(
            f"the sidecar is at capacity ({self.limit} generations at once, {self.queue} "
            f"waiting); retry in {RETRY_AFTER_S} s or use another voice service",
            "overloaded",
            retry_after=RETRY_AFTER_S,
        )
