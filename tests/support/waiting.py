"""Waiting for what a test needs, never for a length of time.

A limit here is a guard against a hang, not a timing: it is generous so that a loaded machine
passes, and a failure names what never happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

LIMIT_S = 60.0


def wait_for(check: Callable[[], bool], what: str, limit_s: float = LIMIT_S) -> None:
    """Poll `check` until it holds; fail the test, naming `what`, past `limit_s`."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {limit_s:g} s: {what}")
        time.sleep(0.02)


async def until(
    check: Callable[[], bool | Awaitable[bool]], what: str, limit_s: float = LIMIT_S
) -> None:
    """`wait_for` inside a running event loop: `check` may be sync or async, and the loop runs
    between polls (a sync `time.sleep` would stall whatever the test has in flight)."""
    deadline = time.monotonic() + limit_s
    while not await _holds(check):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {limit_s:g} s: {what}")
        await asyncio.sleep(0.02)


async def _holds(check: Callable[[], bool | Awaitable[bool]]) -> bool:
    held = check()
    return bool(await held) if isinstance(held, Awaitable) else bool(held)
