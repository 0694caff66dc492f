"""An AgentSession's audio output for tests: keeps every frame, "plays" it when flushed."""

from __future__ import annotations

import asyncio
import time

from livekit import rtc
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
from livekit.agents.voice import io

RATE = 24000
"""What AgentSession plays, and what the plugin emits by default."""


class CaptureAudioOutput(io.AudioOutput):
    """An audio sink that keeps every frame and "plays" it the moment it is flushed."""

    def __init__(self) -> None:
        super().__init__(
            label="capture",
            capabilities=io.AudioOutputCapabilities(pause=False),
            sample_rate=RATE,
        )
        self.frames: list[rtc.AudioFrame] = []
        self.first_frame = asyncio.Event()
        self.first_words = asyncio.Event()
        self._pushed = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._pushed:
            self.on_playback_started(created_at=time.time())
        self._pushed += frame.duration
        self.frames.append(frame)
        self.first_frame.set()
        if frame.userdata.get(USERDATA_TIMED_TRANSCRIPT):
            self.first_words.set()

    def flush(self) -> None:
        super().flush()
        self._finish(interrupted=False)

    def clear_buffer(self) -> None:
        self._finish(interrupted=True)

    def _finish(self, *, interrupted: bool) -> None:
        if self._pushed:
            self.on_playback_finished(playback_position=self._pushed, interrupted=interrupted)
            self._pushed = 0.0

    def pcm(self) -> bytes:
        assert {(f.sample_rate, f.num_channels) for f in self.frames} == {(RATE, 1)}
        return b"".join(bytes(f.data) for f in self.frames)
