"""Waiting on events, not sleeps: something changes now and then; wait until a test holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from support.waiting import LIMIT_S


class Changes:
    """Whoever changes the state calls `changed()`; `until(ready)` rechecks on each change."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def changed(self) -> None:
        self._event.set()

    async def until(self, ready: Callable[[], bool], timeout: float = LIMIT_S) -> None:
        """Wait until `ready()` holds; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                self._event.clear()
                if ready():
                    return
                await self._event.wait()
