"""Pipecat: `S2TTSService` against Pipecat's own HTTP TTS pattern, on the same real sidecar.

The sidecar runs the preview engine (started here). A simulated LLM writes a reply whose first
sentence is long at 50 tokens/s (one word per token, `run_test` sleeping between them) into a
pipeline `[tap in, TTS, tap out]`; the taps stamp every frame. For each run:
- first audio: from the first token entering the TTS to the first `TTSAudioRawFrame` leaving it;
- gaps: a player starts with the first audio frame and plays in real time; a gap is the time it
  waits for the next frame after the audio it had ran out, taken at each sentence's first frame
  (between sentences) and anywhere else (inside sentences);
- service overhead (S2TTSService only): from the first PCM chunk leaving `S2Client.speech()`
  to the first `TTSAudioRawFrame` leaving the service (resampling, ordering, Pipecat's audio
  context and its playback task).
The baseline, `PipecatHttpTTS`, is how Pipecat's HTTP services work (Piper, Deepgram): sentence
aggregation, then one request per sentence, in turn, its audio streamed back through
`_stream_audio_frames_from_iterator`.

Run: .venv/bin/python bench/bench_pipecat.py
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import aiohttp  # noqa: E402
from loguru import logger  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.services.settings import TTSSettings  # noqa: E402
from pipecat.services.tts_service import TTSService  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402
from pipecat_s2 import S2TTSService  # noqa: E402
from support.sidecar import PERSONAS_TOML, TEST_PERSONA, SidecarProcess  # noqa: E402

from s2_plugin.protocol import SAMPLE_RATE, SPEECH_PATH  # noqa: E402

RATES = (24000, 8000)
TOKENS_PER_S = 50.0
RUNS = 5
REPLY = (
    "Thank you for waiting, I have checked your account and the order you placed last Tuesday, "
    "and I can see that the parcel left our warehouse this morning and should reach you by "
    "Friday afternoon at the latest. Is there anything else I can help you with today? "
    "I can also send you a text message when the driver is close."
)


class PipecatHttpTTS(TTSService):
    """Pipecat's HTTP pattern on the sidecar: a request per sentence, one after another."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        settings = TTSSettings(model=None, voice=TEST_PERSONA, language=None)
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=settings)
        self._url = base_url + SPEECH_PATH
        self._session = session

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        body = {"input": text, "voice": TEST_PERSONA, "stream": True, "response_format": "pcm"}
        async with self._session.post(self._url, json=body) as response:
            await self.start_tts_usage_metrics(text)
            async for frame in self._stream_audio_frames_from_iterator(
                response.content.iter_chunked(self.chunk_size),
                in_sample_rate=SAMPLE_RATE,
                context_id=context_id,
            ):
                await self.stop_ttfb_metrics()
                yield frame


@dataclass
class Tap(FrameProcessor):
    """Passes frames on, stamping each downstream frame with the time it passed."""

    seen: list[tuple[float, Frame]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.seen.append((time.perf_counter(), frame))
        await self.push_frame(frame, direction)


@dataclass
class Run:
    first_audio_s: float
    between_gaps_s: list[float]
    inside_gaps_s: list[float]
    overhead_s: float | None = None
    requests: list[tuple[str, float]] = field(default_factory=list)
    """S2TTSService only: each request's text and time to its first PCM chunk."""


def llm_frames() -> list[Frame]:
    frames: list[Frame] = [LLMFullResponseStartFrame()]
    for token in re.findall(r"\s*\S+", REPLY):
        frames += [LLMTextFrame(token), SleepFrame(1 / TOKENS_PER_S)]
    return [*frames, LLMFullResponseEndFrame()]


def measure(tap_in: Tap, tap_out: Tap, rate: int) -> Run:
    first_token = next(t for t, f in tap_in.seen if isinstance(f, LLMTextFrame))
    between: list[float] = []
    inside: list[float] = []
    played_until: float | None = None
    new_sentence = False
    first_audio = None
    for t, frame in tap_out.seen:
        if isinstance(frame, TTSTextFrame):
            new_sentence = True
        if not isinstance(frame, TTSAudioRawFrame):
            continue
        if played_until is None:
            first_audio = played_until = t
            new_sentence = False
        gap = max(0.0, t - played_until)
        (between if new_sentence else inside).append(gap)
        new_sentence = False
        played_until = max(played_until, t) + len(frame.audio) / 2 / rate
    assert first_audio is not None, "no audio"
    return Run(first_audio - first_token, between, inside)


async def one_run(make_tts: Callable[[], TTSService], rate: int) -> Run:
    tts = make_tts()
    requests: list[tuple[str, float, float]] = []  # text, sent, first PCM chunk
    if isinstance(tts, S2TTSService):
        speech = tts._client.speech

        async def timed_speech(text: str, **kwargs: Any) -> AsyncIterator[bytes]:
            sent, first = time.perf_counter(), True
            async for pcm in speech(text, **kwargs):
                if first:
                    requests.append((text, sent, time.perf_counter()))
                    first = False
                yield pcm

        tts._client.speech = timed_speech  # type: ignore[method-assign]
    tap_in, tap_out = Tap(), Tap()
    await run_test(
        Pipeline([tap_in, tts, tap_out]),
        frames_to_send=llm_frames(),
        pipeline_params=PipelineParams(audio_out_sample_rate=rate),
    )
    run = measure(tap_in, tap_out, rate)
    if requests:
        first_out = next(t for t, f in tap_out.seen if isinstance(f, TTSAudioRawFrame))
        run.overhead_s = first_out - min(first for _, _, first in requests)
        run.requests = [(text, first - sent) for text, sent, first in requests]
    return run


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms (min {min(values) * 1000:.1f})"


async def main(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        contenders: dict[str, Callable[[], TTSService]] = {
            "S2TTSService": lambda: S2TTSService(base_url=url, persona=TEST_PERSONA),
            "Pipecat HTTP pattern": lambda: PipecatHttpTTS(url, session),
        }
        for make in contenders.values():  # warm up both paths and the engine
            await one_run(make, RATES[0])
        for rate in RATES:
            runs = {
                name: [await one_run(make, rate) for _ in range(RUNS)]
                for name, make in contenders.items()
            }
            print(f"\n== {rate} Hz output, {RUNS} runs, LLM at {TOKENS_PER_S:.0f} tokens/s")
            for name, results in runs.items():
                between = [g for r in results for g in r.between_gaps_s]
                inside = [g for r in results for g in r.inside_gaps_s]
                first = ms([r.first_audio_s for r in results])
                print(f"{name}\n  first token -> first audio frame  {first}")
                print(f"  gap between sentences, max        {max(between) * 1000:7.1f} ms")
                print(f"  gap inside sentences, max         {max(inside) * 1000:7.1f} ms")
                overheads = [r.overhead_s for r in results if r.overhead_s is not None]
                if overheads:
                    print(f"  service overhead to first audio   {ms(overheads)}")
                for text, ttfa in results[-1].requests:
                    ttfa_ms = ttfa * 1000
                    print(f"    request TTFA {ttfa_ms:6.0f} ms  {len(text):4d} chars  {text!r:.50}")
            ours, theirs = (
                statistics.median(r.first_audio_s for r in results) for results in runs.values()
            )
            print(f"first audio ratio S2TTSService / Pipecat HTTP pattern: {ours / theirs:.2f}")


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    with (
        tempfile.TemporaryDirectory() as tmp,
        SidecarProcess(Path(tmp) / "store", personas=PERSONAS_TOML) as sidecar,
    ):
        asyncio.run(main(sidecar.url))
