"""The personas one TTS speaks with, registered once and reported alike by both adapters.

`Registrar.ensure()` is what every reply awaits before its first request: each `Persona` is
registered once per content (the client uploads under a lock, so concurrent replies share one
upload, and a failed one is tried again by the next reply), within the reply's own timeout;
the clip warnings the sidecar returns are reported once. A persona given by name needs
nothing. Which engine the sidecar runs is asked on the side, never in a reply's way, and a
sidecar that speaks with the CPU preview voice instead of S2 is reported once.

Nothing here outlives the reply that awaits it: a reply that is cancelled or times out takes
its requests with it. The one background task, the engine check, belongs to the registrar
and ends with `aclose()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from s2_plugin.client import S2Client, S2Error
from s2_plugin.personas import Persona

__all__ = ["ENGINE_CHECK_TASK", "Registrar", "voice_name"]

ENGINE_CHECK_TASK = "s2-engine-check"
"""The name of the registrar's one background task (for tests that count what is left)."""


def voice_name(voice: str | Persona) -> str:
    """The name requests use for a voice given by name or as a `Persona`."""
    return voice if isinstance(voice, str) else voice.name


class Registrar:
    def __init__(self, voices: Iterable[str | Persona], warn: Callable[[str], None]) -> None:
        """`voices`: the voice and its cast; `warn` reports in the framework's own log."""
        self._personas: list[Persona] = []
        self.set_voices(voices)
        self._warn = warn
        self._warned: set[str] = set()
        self._engine_check: asyncio.Task[None] | None = None
        self._engine_checked = False
        self.failed: str | None = None
        """The persona whose registration failed last, for the error message."""
        self.model: str | None = None
        """The model the sidecar serves, once it was asked (`Health.model`)."""

    def set_voices(self, voices: Iterable[str | Persona]) -> None:
        """Speak with other voices from the next `ensure()` on."""
        self._personas = [v for v in voices if isinstance(v, Persona)]

    async def ensure(self, client: S2Client, *, timeout: float | None = None) -> None:
        """Register what is not registered yet; raises the `S2Error` of a failed upload.

        `timeout` bounds each request (connect and read), as it does the reply's speech.
        """
        self._check_engine(client, timeout)
        for persona in list(self._personas):
            try:
                info = await client.ensure_persona(persona, timeout=timeout)
            except S2Error:
                self.failed = persona.name
                raise
            if info.sha256 not in self._warned:
                self._warned.add(info.sha256)
                for warning in info.warnings:
                    self._warn(f"persona {persona.name!r}: {warning}")
        self.failed = None

    async def aclose(self) -> None:
        if self._engine_check is not None:
            self._engine_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._engine_check
            self._engine_check = None

    def _check_engine(self, client: S2Client, timeout: float | None) -> None:
        """Ask the sidecar, once it answers, which engine it runs; in the background."""
        if self._engine_checked or (self._engine_check and not self._engine_check.done()):
            return
        self._engine_check = asyncio.create_task(
            self._ask_engine(client, timeout), name=ENGINE_CHECK_TASK
        )

    async def _ask_engine(self, client: S2Client, timeout: float | None) -> None:
        try:
            health = await client.health(timeout=timeout)
        except S2Error:
            return  # the speech request itself reports an unreachable sidecar; asked again later
        self._engine_checked = True
        self.model = health.model
        if health.preview:
            self._warn(
                f"the sidecar speaks with the preview engine ({health.model}), not S2: "
                "personas are not cloned and tags are dropped"
            )
