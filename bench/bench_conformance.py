"""How fast a caller hears of a black-holed sidecar, and how late captions are, in both frameworks.

A preview-engine sidecar runs behind `FaultProxy` (tests/support/proxy.py) set to black-hole:
connections are accepted and nothing ever comes back. Measured, from the first request:
- LiveKit: to the caller's `APITimeoutError` (`max_retry=0`, the timeout given), and to the
  first audio of a `FallbackAdapter([s2 black-holed, s2 alive])` with its defaults
  (`max_retry_per_tts=2`: three attempts of the timeout each, LiveKit's 0.1 s and 2 s
  waits between them) and with `max_retry_per_tts=0`;
- Pipecat: to the `ErrorFrame` of a `TTSSpeakFrame` (`read_timeout`), and to the first audio of
  a `ServiceSwitcher(failover)` over [s2 black-holed, s2 alive] when reply after reply is sent
  (a black-holed sidecar answers nothing, so each reply fails as a timeout, recoverable;
  Pipecat writes the service off after `max_consecutive_zero_audio_contexts` silent replies).
"default" is the framework's default timeout: LiveKit's 10 s, `S2TTSService`'s 10 s.

Caption lag (Pipecat): a three-sentence LLM reply through `S2TTSService`; for each word, its
`TTSTextFrame`'s leaving the service (pipeline clock) minus the frame's PTS, the moment its
audio starts playing when playback starts with the first audio. Positive: the caption is
late. The preview voice makes a segment's audio at once; S2 streams it as it generates, so
the proxy paces the audio to twice real time (`--rtf`, S2-Pro's real-time factor on a GPU
is well under 1). Run it on an older checkout to compare (same script, PYTHONPATH there).

Run: .venv/bin/python bench/bench_conformance.py [--lag-only] [--rtf 0.5]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from livekit.agents import APIConnectOptions, APITimeoutError, tts  # noqa: E402
from livekit.plugins import s2  # noqa: E402
from loguru import logger  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.service_switcher import (  # noqa: E402
    ServiceSwitcher,
    ServiceSwitcherStrategyFailover,
)
from pipecat.pipeline.worker import PipelineParams  # noqa: E402
from pipecat_s2 import S2TTSService  # noqa: E402
from support.pipeline import ScriptRun  # noqa: E402
from support.proxy import Fault, FaultProxy  # noqa: E402
from support.sidecar import PERSONAS_TOML, TEST_PERSONA, SidecarProcess  # noqa: E402

from s2_plugin.protocol import SAMPLE_RATE  # noqa: E402

TEXT = "Hello there, how can I help you today?"
REPLY = (
    "Well, that is a very good question, and I have thought about it a lot. "
    "The answer is simple, and it comes in two parts. "
    "We open the shop at nine in the morning and close at five in the evening."
)
TIMEOUTS = {"default": 10.0, "1 s": 1.0}
PARAMS = PipelineParams(audio_out_sample_rate=24000)


async def livekit_error(url: str, timeout: float) -> float:
    async with s2.TTS(persona=TEST_PERSONA, base_url=url) as voice:
        started = time.perf_counter()
        try:
            options = APIConnectOptions(max_retry=0, timeout=timeout)
            await voice.synthesize(TEXT, conn_options=options).collect()
        except APITimeoutError:
            return time.perf_counter() - started
    raise AssertionError("the black-holed sidecar spoke")


async def livekit_fallback(dead: str, alive: str, timeout: float, retries: int) -> float:
    voices = [s2.TTS(persona=TEST_PERSONA, base_url=url) for url in (dead, alive)]
    fallback = tts.FallbackAdapter(voices, max_retry_per_tts=retries)
    try:
        started = time.perf_counter()
        options = APIConnectOptions(max_retry=0, timeout=timeout)
        async with fallback.synthesize(TEXT, conn_options=options) as stream:
            async for _ in stream:
                return time.perf_counter() - started
    finally:
        await fallback.aclose()
        for voice in voices:
            await voice.aclose()
    raise AssertionError("no audio")


async def pipecat_error(url: str, timeout: float) -> float:
    service = S2TTSService(base_url=url, persona=TEST_PERSONA, read_timeout=timeout)
    run = ScriptRun(service, PARAMS)
    took: list[float] = []

    async def timed() -> None:
        started = time.perf_counter()
        await run.queue(TTSSpeakFrame(TEXT))
        await run.seen(ErrorFrame, upstream=True)
        took.append(time.perf_counter() - started)

    await run.script([timed])
    return took[0]


async def pipecat_failover(dead: str, alive: str, timeout: float) -> tuple[float, int]:
    """Seconds to the backup's first audio, and the replies it took, one reply at a time."""
    services = [
        S2TTSService(base_url=dead, persona=TEST_PERSONA, read_timeout=timeout),
        S2TTSService(base_url=alive, persona=TEST_PERSONA),
    ]
    switcher = ServiceSwitcher(services, strategy_type=ServiceSwitcherStrategyFailover)
    run = ScriptRun(switcher, PARAMS)
    took: list[tuple[float, int]] = []

    def stopped() -> int:
        return sum(isinstance(f, TTSStoppedFrame) for f in run.down)

    async def timed() -> None:
        started = time.perf_counter()
        for reply in range(1, 10):
            await run.queue(TTSSpeakFrame(TEXT))
            await run.until(
                lambda n=reply: (
                    stopped() >= n or any(isinstance(f, TTSAudioRawFrame) for f in run.down)
                ),
                timeout=timeout * 3 + 30,
            )
            if any(isinstance(f, TTSAudioRawFrame) for f in run.down):
                took.append((time.perf_counter() - started, reply))
                return

    await run.script([timed])
    return took[0]


async def caption_lag(url: str) -> list[float]:
    service = S2TTSService(base_url=url, persona=TEST_PERSONA)
    lags: list[float] = []

    @service.event_handler("on_after_push_frame")
    async def _pushed(_: object, frame: Frame) -> None:
        if isinstance(frame, TTSTextFrame) and frame.pts is not None:
            lags.append((service.get_clock().get_time() - frame.pts) / 1e9)

    words = REPLY.split(" ")
    tokens: list[Frame] = [LLMTextFrame(w if i == 0 else f" {w}") for i, w in enumerate(words)]
    run = ScriptRun(service, PARAMS)
    await run.script(
        [
            LLMFullResponseStartFrame(),
            *tokens,
            LLMFullResponseEndFrame(),
            lambda: run.seen(TTSStoppedFrame),
        ]
    )
    assert len(lags) == len(words), (len(lags), len(words))
    return lags


def _row(name: str, seconds: float) -> None:
    print(f"  {name:58s} {seconds:6.2f} s")


async def main(lag_only: bool, rtf: float) -> None:
    logger.remove()
    with (
        tempfile.TemporaryDirectory() as tmp,
        SidecarProcess(Path(tmp) / "store", personas=PERSONAS_TOML) as sidecar,
    ):
        async with FaultProxy(sidecar.url).running() as paced:
            paced.bytes_per_s = SAMPLE_RATE * 2 / rtf
            runs = [await caption_lag(paced.url) for _ in range(3)]
        lags = [x for run in runs for x in run]
        late = [x for x in lags if x > 0]
        print(f"caption lag per word, Pipecat, {len(lags)} words (3 replies), audio at RTF {rtf}")
        print(
            f"  mean {statistics.mean(lags) * 1000:7.0f} ms   max {max(lags) * 1000:7.0f} ms"
            f"   late (> 0): {len(late)} words, mean {statistics.mean(late or [0]) * 1000:.0f} ms"
        )
        if lag_only:
            return
        async with FaultProxy(sidecar.url).running(Fault.BLACKHOLE) as proxy:
            print("black-holed sidecar, from the first request")
            for label, timeout in TIMEOUTS.items():
                _row(
                    f"LiveKit, caller's error ({label} timeout)",
                    await livekit_error(proxy.url, timeout),
                )
                for retries in (2, 0):
                    took = await livekit_fallback(proxy.url, sidecar.url, timeout, retries)
                    _row(f"LiveKit, FallbackAdapter first audio, {retries} retries ({label})", took)
                _row(
                    f"Pipecat, ErrorFrame ({label} read_timeout)",
                    await pipecat_error(proxy.url, timeout),
                )
                took, replies = await pipecat_failover(proxy.url, sidecar.url, timeout)
                _row(f"Pipecat, ServiceSwitcher first audio, reply {replies} ({label})", took)


if __name__ == "__main__":
    rtf = float(sys.argv[sys.argv.index("--rtf") + 1]) if "--rtf" in sys.argv else 0.5
    asyncio.run(main("--lag-only" in sys.argv, rtf))
