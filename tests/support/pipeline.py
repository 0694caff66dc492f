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

from pipecat.frames.frames import EndFrame, Frame, StartFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

Step = Frame | Callable[[], Awaitable[object]]


class _Capture(FrameProcessor):
    """Keeps the frames passing in one direction and wakes whoever waits on them."""

    def __init__(self, direction: FrameDirection, changed: asyncio.Event) -> None:
        super().__init__(enable_direct_mode=True)
        self.frames: list[Frame] = []
        self._direction = direction
        self._changed = changed

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == self._direction and not isinstance(frame, StartFrame | EndFrame):
            self.frames.append(frame)
            self._changed.set()
        await self.push_frame(frame, direction)


class ScriptRun:
    """One pipeline `[source, processor, sink]`; `down` and `up` fill as frames arrive."""

    def __init__(self, processor: FrameProcessor, params: PipelineParams) -> None:
        self._changed = asyncio.Event()
        self._source = _Capture(FrameDirection.UPSTREAM, self._changed)
        self._sink = _Capture(FrameDirection.DOWNSTREAM, self._changed)
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
        """Wait until `ready()` holds; it is checked whenever a frame arrives at either end."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                if ready():
                    return
                await self._changed.wait()

    async def seen(self, kind: type[Frame], count: int = 1, *, upstream: bool = False) -> None:
        """Wait until `count` frames of `kind` have arrived (downstream unless `upstream`)."""
        frames = self.up if upstream else self.down
        await self.until(lambda: sum(isinstance(f, kind) for f in frames) >= count)

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
