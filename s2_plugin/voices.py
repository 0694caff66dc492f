"""The personas one TTS speaks with, registered once and reported alike by both adapters.

`Voices.ensure()` is what every reply awaits before its first request: each `Persona` is
registered once (concurrent replies share one attempt; a failed one is retried by the next
reply), the clip warnings the sidecar returns are reported once, and so is a sidecar that runs
the CPU preview voice instead of S2. A persona given by name needs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from s2_plugin.client import S2Client, S2Error
from s2_plugin.personas import Persona

__all__ = ["Voices"]


class Voices:
    def __init__(self, personas: Iterable[str | Persona], warn: Callable[[str], None]) -> None:
        """`personas`: the voice and its cast; `warn` reports in the framework's own log."""
        self._personas = [p for p in personas if isinstance(p, Persona)]
        self._warn = warn
        self._task: asyncio.Task[None] | None = None
        self._engine_checked = False
        self.failed: str | None = None
        """The persona whose registration failed last, for the error message."""
        self.model: str | None = None
        """The model the sidecar serves, once it was asked (`Health.model`)."""

    async def ensure(self, client: S2Client) -> None:
        """Register what is not registered yet; raises the `S2Error` of a failed upload."""
        task = self._task
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            task = self._task = asyncio.create_task(self._register(client))
        await asyncio.shield(task)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _register(self, client: S2Client) -> None:
        await self._check_engine(client)
        for persona in self._personas:
            self.failed = persona.name
            info = await client.ensure_persona(persona)
            for warning in info.warnings:
                self._warn(f"persona {persona.name!r}: {warning}")
        self.failed = None

    async def _check_engine(self, client: S2Client) -> None:
        if self._engine_checked:
            return
        try:
            health = await client.health()
        except S2Error:
            return  # the speech request itself reports an unreachable sidecar
        self._engine_checked = True
        self.model = health.model
        if health.preview:
            self._warn(
                f"the sidecar speaks with the preview engine ({health.model}), not S2: "
                "personas are not cloned and tags are dropped"
            )
