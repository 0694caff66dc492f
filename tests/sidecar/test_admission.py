"""Admission (s2_sidecar/admission.py): deadline order within the budget, look-ahead held until
nearly due, hang-ups free their place, refusals at once. Order and counts, no timings: each test
waits for the state it needs."""

from __future__ import annotations

import asyncio

import pytest
from s2_sidecar.admission import Admission
from s2_sidecar.errors import Unavailable
from s2_sidecar.metrics import Metrics
from support.waiting import until


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class Holder:
    """A request that takes a slot and keeps it until released."""

    def __init__(self, admission: Admission, name: str, got: list[str], due_in: float = 0) -> None:
        self.release = asyncio.Event()
        self.task = asyncio.create_task(self.run(admission, name, got, due_in))

    async def run(self, admission: Admission, name: str, got: list[str], due_in: float) -> None:
        async with admission.slot(due_in):
            got.append(name)
            await self.release.wait()


async def test_the_earliest_due_goes_first_when_a_slot_frees() -> None:
    admission = Admission(1, 4, 60, Metrics(), lead_s=100)
    got: list[str] = []
    first = Holder(admission, "first", got)
    await settle()
    later, sooner = Holder(admission, "later", got, 50), Holder(admission, "sooner", got, 5)
    await settle()
    assert got == ["first"]
    first.release.set()
    await settle()
    assert got == ["first", "sooner"]
    for h in (later, sooner):
        h.release.set()
    await asyncio.gather(first.task, later.task, sooner.task)
    assert got == ["first", "sooner", "later"]


async def test_arrival_order_ignores_the_due_time() -> None:
    admission = Admission(1, 4, 60, Metrics(), scheduling="arrival")
    got: list[str] = []
    first = Holder(admission, "first", got)
    await settle()
    later = Holder(admission, "later", got, 50)
    await settle()
    sooner = Holder(admission, "sooner", got, 5)
    await settle()
    for h in (first, later, sooner):
        h.release.set()
    await asyncio.gather(first.task, later.task, sooner.task)
    assert got == ["first", "later", "sooner"]


async def test_a_look_ahead_is_held_until_nearly_due_while_urgent_audio_goes_at_once() -> None:
    admission = Admission(2, 4, 60, Metrics(), lead_s=1)
    got: list[str] = []
    ahead = Holder(admission, "ahead", got, 3600)
    await settle()
    now = Holder(admission, "now", got)
    await settle()
    assert got == ["now"]  # a slot is free, yet the look-ahead is not due for an hour
    ahead.task.cancel()
    now.release.set()
    await now.task
    with pytest.raises(asyncio.CancelledError):
        await ahead.task


async def test_a_held_look_ahead_goes_once_its_time_comes() -> None:
    admission = Admission(1, 4, 60, Metrics(), lead_s=0)
    got: list[str] = []
    ahead = Holder(admission, "ahead", got, 0.05)
    await until(lambda: bool(got), "the admission's own timer lets it in")
    ahead.release.set()
    await ahead.task


async def test_a_hang_up_frees_its_slot_for_the_next() -> None:
    admission = Admission(1, 4, 60, Metrics())
    got: list[str] = []
    first = Holder(admission, "first", got)
    await settle()
    waiting = Holder(admission, "waiting", got)
    await settle()
    first.task.cancel()
    await settle()
    assert got == ["first", "waiting"]
    waiting.release.set()
    await waiting.task


async def test_a_reply_over_capacity_is_refused_at_once_but_a_look_ahead_may_wait() -> None:
    metrics = Metrics()
    admission = Admission(1, 0, 60, metrics, lead_s=0)
    got: list[str] = []
    first = Holder(admission, "first", got)
    await settle()
    with pytest.raises(Unavailable):
        async with admission.slot():
            pass
    assert metrics.rejected.labels("queue_full")._value.get() == 1
    ahead = Holder(admission, "ahead", got, 0.01)  # held, then waits for the slot
    await settle()
    first.release.set()
    await until(lambda: len(got) == 2, "the held look-ahead gets the freed slot")
    ahead.release.set()
    await asyncio.gather(first.task, ahead.task)
    assert got == ["first", "ahead"]
