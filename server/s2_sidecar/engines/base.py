"""What the API needs from an engine: text and a persona in, 44.1 kHz PCM16 chunks out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Literal, Protocol

from s2_plugin.protocol import SpeechRequest
from s2_sidecar.store import StoredPersona

Status = Literal["starting", "ready", "unhealthy"]


class Engine(Protocol):
    name: str
    model: str
    preview: bool
    """True when the voice is not S2 (the CPU preview); shown in /health and the logs."""
    on_ready: Callable[[], None] | None
    """Called each time the engine becomes ready (at start, after a restart) to warm personas."""
    max_concurrency: int
    """Generations it serves at once in good time; the API queues briefly, then refuses (503)."""
    max_text_chars: int
    """Longest text handed to one `generate`; the API cuts longer input at clause ends first."""

    def health(self) -> tuple[Status, str | None]:
        """The engine's state and, when not ready, why."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def generate(
        self, text: str, persona: StoredPersona | None, request: SpeechRequest
    ) -> AsyncGenerator[bytes, None]:
        """Stream int16 mono PCM at 44.1 kHz for `text` (tags included) in `persona`'s voice.

        For a cast, `persona` is its combined reference (`s2_sidecar.cast`): `persona.cast`
        lists the members and `<|speaker:N|>` in `text` hands over to the Nth.
        Closing the iterator, or cancelling the task awaiting it, stops the work at once.
        Raises `SidecarError` for requests the engine refuses.
        """
        ...


WARMUP = SpeechRequest(input="Hello.", max_new_tokens=32)
"""The request that warms a persona: short text and few tokens; its reference is the point."""
