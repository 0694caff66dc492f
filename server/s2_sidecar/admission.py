"""Admission: which speech request the engine generates next, within a budget of generations.

S2's decode step slows with every stream running at once (about 10% per stream on SGLang-Omni
0.1.9), and SGLang-Omni serves in arrival order with no priority (`CreateSpeechRequest` has no
such field; `models/fishaudio_s2_pro/engine_builder.py` lets 64 run at once). So the sidecar
keeps at most `limit` generations in the engine, a budget that keeps the step time, and so each
stream's pace, bounded, and decides itself which request goes next:

- Deadline order (the default): each request says when its audio is due (`X-Audio-Due-In`,
  seconds; absent means now, as for any OpenAI client). A reply's first request is due now; a
  look-ahead segment when the audio before it runs out. Requests go to the engine earliest due
  first, and a look-ahead is held until `lead_s` before its due time, so that it does not slow
  the streams that are playing now; the budget is then spent on what must play soonest.
- Arrival order: first come, first served (what SGLang-Omni itself does).

A hang-up frees its place at once (waiting or generating). Over capacity, a request that is due
now and finds `queue` such requests already waiting is refused at once, and one that waits
longer than `wait_s` past its time is refused then: a 503 with `Retry-After` within
milliseconds, so that a framework's fallback (LiveKit's `FallbackAdapter`, Pipecat's service
switcher) moves the reply to another TTS instead of every call degrading.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from s2_sidecar.errors import Unavailable
from s2_sidecar.metrics import Metrics

RETRY_AFTER_S = 1
"""What a refused client is told to wait: a generation slot frees up within about a second."""
LEAD_S = 0.75
"""How long before its due time a look-ahead request goes to the engine: its first chunk (the
prefill and `stream_stride` frames) and the wait for its second (`stream_followup_stride`
frames) must fit, at the budget's step time. Measured on the H200 model by
bench/bench_capacity.py."""
SCHEDULING = ("deadline", "arrival")


@dataclass(order=True)
class _Waiter:
    due: float
    seq: int
    ready_at: float = field(compare=False)
    """When it may go to the engine: its due time less the lead."""
    urgent: bool = field(compare=False)
    """Due now when it came: a reply's first request, which may be refused."""
    granted: asyncio.Future[None] = field(compare=False)


class Admission:
    """At most `limit` generations at once, handed out in deadline (or arrival) order."""

    def __init__(
        self,
        limit: int,
        queue: int,
        wait_s: float,
        metrics: Metrics,
        *,
        scheduling: str = "deadline",
        lead_s: float = LEAD_S,
    ) -> None:
        if limit < 1 or queue < 0 or wait_s < 0 or lead_s < 0:
            raise ValueError("admission needs limit >= 1, queue >= 0, wait_s >= 0, lead_s >= 0")
        if scheduling not in SCHEDULING:
            raise ValueError(f"scheduling must be one of {SCHEDULING}, got {scheduling!r}")
        self.limit = limit
        self.queue = queue
        self.wait_s = wait_s
        self.deadlines = scheduling == "deadline"
        self.lead_s = lead_s
        self._running = 0
        self._waiting: list[_Waiter] = []
        self._urgent = 0
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._metrics = metrics
        metrics.admission_limit.set(limit)

    @contextlib.asynccontextmanager
    async def slot(self, due_in: float = 0.0) -> AsyncIterator[None]:
        """Hold a generation slot for the block, given when the audio is due (seconds from
        now); raises `Unavailable` (503) when none comes in time."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = now + max(0.0, due_in) if self.deadlines else now
        ready_at = due - self.lead_s
        if ready_at <= now and self._running < self.limit:
            self._running += 1  # nothing ready waits, or it would hold this slot already
        else:
            await self._wait(
                _Waiter(due, next(self._seq), ready_at, ready_at <= now, loop.create_future())
            )
        try:
            yield
        finally:
            self._running -= 1
            self._dispatch()

    async def _wait(self, waiter: _Waiter) -> None:
        if waiter.urgent and self._urgent >= self.queue:
            self._refuse("queue_full")
        heapq.heappush(self._waiting, waiter)
        self._urgent += waiter.urgent
        self._metrics.queue_depth.set(len(self._waiting))
        self._dispatch()
        held = max(0.0, waiter.ready_at - asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout(held + self.wait_s):
                await asyncio.shield(waiter.granted)
        except (TimeoutError, asyncio.CancelledError) as e:
            if waiter.granted.done():  # granted as it timed out or hung up: give it back
                self._running -= 1
            waiter.granted.cancel()
            self._forget(waiter)
            self._dispatch()
            if isinstance(e, TimeoutError):
                self._refuse("queue_timeout")
            raise

    def _dispatch(self) -> None:
        """Grant free slots to the waiters that are ready, earliest due first; wake up again
        when the next held one becomes ready."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._waiting and self._running < self.limit:
            first = self._waiting[0]
            if first.granted.done():
                self._forget(first)
            elif first.ready_at <= now:
                self._forget(first)
                first.granted.set_result(None)
                self._running += 1
            else:
                break
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if self._waiting and self._running < self.limit:
            self._timer = loop.call_at(self._waiting[0].ready_at, self._dispatch)

    def _forget(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(waiter)
            heapq.heapify(self._waiting)
            self._urgent -= waiter.urgent
        self._metrics.queue_depth.set(len(self._waiting))

    def _refuse(self, reason: str) -> None:
        self._metrics.rejected.labels(reason).inc()
        raise Unavailable(
            f"the sidecar is at capacity ({self.limit} generations at once, {self.queue} "
            f"waiting); retry in {RETRY_AFTER_S} s or use another voice service",
            "overloaded",
            retry_after=RETRY_AFTER_S,
        )
