"""LiveKit: `s2.TTS` streaming against `tts.StreamAdapter` around a non-streaming S2 TTS.

Both run on the same real sidecar (preview engine, started here). An LLM is simulated at 50
tokens/s (one word per token) writing a reply whose first sentence is long. For each run:
- first audio: from the first token pushed to the first frame out of the stream;
- gaps: a player starts with the first frame and plays in real time; a gap is time it waits
  for the next frame after the audio it had ran out (so: silence inside the reply).
The baseline, `HttpS2TTS`, is what wrapping a plain S2 HTTP TTS gives: one request per
sentence, its audio streamed back as it is generated; `StreamAdapter` cuts the sentences
(blingfire) and synthesizes them one after another.

Run: .venv/bin/python bench/bench_livekit.py
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

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts, utils  # noqa: E402
from livekit.plugins import s2  # noqa: E402
from support.sidecar import PERSONAS_TOML, TEST_PERSONA, SidecarProcess  # noqa: E402

from s2_plugin.audio import StreamResampler  # noqa: E402
from s2_plugin.client import S2Client  # noqa: E402
from s2_plugin.protocol import SAMPLE_RATE  # noqa: E402

RATE = 24000
TOKENS_PER_S = 50.0
RUNS = 5
REPLY = (
    "Thanks for calling the clinic, I have found your booking for next Tuesday afternoon with "
    "doctor Patel at the downtown office, and everything about it looks in order to me. "
    "Would you like a reminder by text message the day before? "
    "I can also send you the directions and the parking details by email."
)


class HttpS2TTS(tts.TTS):
    """A non-streaming S2 TTS: one sidecar request per `synthesize()` call."""

    def __init__(self, client: S2Client) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=RATE, num_channels=1
        )
        self.client = client

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _OneRequest(tts=self, input_text=text, conn_options=conn_options)


class _OneRequest(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        assert isinstance(self._tts, HttpS2TTS)
        output_emitter.initialize(
            request_id=utils.shortuuid(), sample_rate=RATE, num_channels=1, mime_type="audio/pcm"
        )
        resampler = StreamResampler(SAMPLE_RATE, RATE)
        async for pcm in self._tts.client.speech(self.input_text, voice=TEST_PERSONA):
            output_emitter.push(resampler.process(pcm))
        output_emitter.push(resampler.flush())


async def one_reply(voice: tts.TTS) -> tuple[float, list[float]]:
    """First-audio latency and the gaps a real-time player would hear, in seconds."""
    stream = voice.stream()
    words = REPLY.split(" ")
    first_token = time.perf_counter()

    async def llm() -> None:
        for i, word in enumerate(words):
            stream.push_text(word if i == 0 else f" {word}")
            await asyncio.sleep(1 / TOKENS_PER_S)
        stream.end_input()

    feeder = asyncio.create_task(llm())
    first_audio: float | None = None
    played_until = 0.0
    gaps: list[float] = []
    async for ev in stream:
        now = time.perf_counter()
        if first_audio is None:
            first_audio = played_until = now
        elif now > played_until:
            gaps.append(now - played_until)
            played_until = now
        played_until += ev.frame.duration
    await feeder
    await stream.aclose()
    assert first_audio is not None
    return first_audio - first_token, gaps


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sidecar = SidecarProcess(Path(tmp) / "store", personas=PERSONAS_TOML)
        with sidecar:
            async with (
                S2Client(sidecar.url) as client,
                s2.TTS(persona=TEST_PERSONA, base_url=sidecar.url, sample_rate=RATE) as ours,
            ):
                adapter = tts.StreamAdapter(tts=HttpS2TTS(client))
                results: dict[str, list[tuple[float, list[float]]]] = {"s2": [], "adapter": []}
                await one_reply(ours)  # warm both paths: connections, the engine
                await one_reply(adapter)
                for _ in range(RUNS):
                    results["s2"].append(await one_reply(ours))
                    results["adapter"].append(await one_reply(adapter))
                await adapter.aclose()

    print(f"reply of {len(REPLY.split())} words at {TOKENS_PER_S:.0f} tokens/s, {RUNS} runs each,")
    print(f"preview engine, frames at {RATE} Hz")
    first: dict[str, float] = {}
    for name, label in (("s2", "s2.TTS (streaming)"), ("adapter", "StreamAdapter(HttpS2TTS)")):
        runs = results[name]
        first[name] = statistics.median(f for f, _ in runs)
        gaps = [g for _, run_gaps in runs for g in run_gaps]
        print(
            f"{label:<26} first audio median {first[name] * 1000:7.1f} ms "
            f"(min {min(f for f, _ in runs) * 1000:.1f}, max {max(f for f, _ in runs) * 1000:.1f})"
            f"   gaps > 5 ms: {sum(g > 0.005 for g in gaps):2d}"
            f"   longest gap {max(gaps, default=0.0) * 1000:6.1f} ms"
        )
    print(f"first-audio ratio s2 / adapter: {first['s2'] / first['adapter']:.2f} (target <= 0.5)")


if __name__ == "__main__":
    asyncio.run(main())
