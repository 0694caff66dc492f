"""Run a Pipecat processor through a script of frames and waits.

Pipecat's `run_test` paces a script with `SleepFrame`s, which pass or fail with the machine's
speed. Here a step is either a frame to queue or an async callable to await, typically a wait
for something the pipeline did, so a test says "interrupt once the first segment has played"
and means exactly that:

    run = ScriptRun(tts, params)
    down, up = await run.script([*frames, lambda: run.seen(TTSTextFrame), InterruptionFrame()])
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    OutputAudioRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner

from s2_plugin.tags import strip_tags
from support.changes import Changes

Step = Frame | Callable[[], Awaitable[object]]


class _Capture(FrameProcessor):
    """Keeps the frames passing in one direction and wakes whoever waits on them."""

    def __init__(self, direction: FrameDirection, changes: Changes) -> None:
        super().__init__(enable_direct_mode=True)
        self.frames: list[Frame] = []
        self._direction = direction
        self._changes = changes

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == self._direction and not isinstance(frame, StartFrame | EndFrame):
            self.frames.append(frame)
            self._changes.changed()
        await self.push_frame(frame, direction)


class ScriptRun:
    """One pipeline `[source, processor, sink]`; `down` and `up` fill as frames arrive.

    `changes` wakes the waits: frames reaching either end call it, and so may the test's own
    processors (a `Speaker`).
    """

    def __init__(
        self, processor: FrameProcessor, params: PipelineParams, changes: Changes | None = None
    ) -> None:
        self.changes = changes or Changes()
        self._source = _Capture(FrameDirection.UPSTREAM, self.changes)
        self._sink = _Capture(FrameDirection.DOWNSTREAM, self.changes)
        self._worker = PipelineWorker(
            Pipeline([self._source, processor, self._sink]),
            params=params,
            cancel_on_idle_timeout=False,
        )

    @property
    def down(self) -> list[Frame]:
        return self._sink.frames

    @property
    def up(self) -> list[Frame]:
        return self._source.frames

    async def until(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until `ready()` holds; it is checked on every change."""
        await self.changes.until(ready, timeout)

    async def seen(self, kind: type[Frame], count: int = 1, *, upstream: bool = False) -> None:
        """Wait until `count` frames of `kind` have arrived (downstream unless `upstream`)."""
        frames = self.up if upstream else self.down
        await self.until(lambda: sum(isinstance(f, kind) for f in frames) >= count)

    async def queue(self, frame: Frame) -> None:
        """Queue a frame from inside a step (a step that times what follows it)."""
        await self._worker.queue_frame(frame)

    async def script(self, steps: Sequence[Step]) -> tuple[list[Frame], list[Frame]]:
        """Queue the frames and await the waits in order, then end the pipeline."""
        started = asyncio.Event()

        @self._worker.event_handler("on_pipeline_started")
        async def _started(*_: object) -> None:
            started.set()

        async def play() -> None:
            try:
                await asyncio.wait_for(started.wait(), 10)
                for step in steps:
                    if isinstance(step, Frame):
                        await self._worker.queue_frame(step)
                    else:
                        await step()
            except BaseException:
                await self._worker.cancel(reason="the test script failed")
                raise
            await self._worker.queue_frame(EndFrame())

        runner = WorkerRunner()
        await runner.add_workers(self._worker)
        await asyncio.gather(runner.run(), play())
        return self.down, self.up


def spoken_segments(
    frames: Sequence[Frame], segments: Sequence[str]
) -> list[tuple[list[TTSTextFrame], bytes]]:
    """Each of `segments` (the texts the segmenter cut) with its word frames and its audio.

    S2TTSService reports each word before the audio that speaks it, so a segment's audio is
    what comes between its first word and the next segment's first word (the first segment
    also takes any audio before its first word).
    """
    sizes = [len(strip_tags(text).split()) for text in segments]
    out: list[tuple[list[TTSTextFrame], bytes]] = [([], b"") for _ in segments]
    current, seen = 0, 0
    for frame in frames:
        if isinstance(frame, TTSTextFrame):
            if seen == sum(sizes[: current + 1]) and current + 1 < len(segments):
                current += 1
            out[current][0].append(frame)
            seen += 1
        elif isinstance(frame, TTSAudioRawFrame):
            words, pcm = out[current]
            out[current] = (words, pcm + frame.audio)
    return out


class Speaker(BaseOutputTransport):
    """An output device that plays audio in real time, as a sound card or a call does.

    Pipecat's output transport releases each word's `TTSTextFrame` at its PTS against this
    clock, so what reaches an assistant aggregator after it is what was heard.
    """

    def __init__(self, changes: Changes) -> None:
        super().__init__(TransportParams(audio_out_enabled=True))
        self.played_s = 0.0
        self._changes = changes

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        seconds = len(frame.audio) / 2 / frame.sample_rate
        await asyncio.sleep(seconds)
        self.played_s += seconds
        self._changes.changed()
        return True
