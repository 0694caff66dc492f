"""Background tasks that belong to an owner (the app, an engine) and end with it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine


class Background:
    """Fire-and-forget work that is still cancelled and awaited when its owner stops."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel what is still running and wait for it to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
