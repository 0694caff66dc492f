"""Word timing estimate (`s2_plugin.timing`) against a forced alignment of the preview voice.

Each sentence is spoken by the preview engine through a real sidecar (one request, as one
segment would be); PocketSphinx aligns the known words to the audio (`set_align_text`), and
the estimate's start and end of every word are compared with the alignment's, two ways:
- whole segment: `word_times` on the segment's complete audio (the estimate at its best);
- as shipped: `WordClock` fed the `SpeechStream`'s events as they arrive, one `Pace` for all
  sentences (as a TTS keeps it), each word taken when the clock reports it; once with the
  audio as the preview engine sends it (a segment at once), once paced by a proxy as S2
  streams it while generating (`PACED_RTF`). Also: how much
  audio had been passed on when each word was reported, against when the alignment says it
  starts ("late" = the word came after the audio that speaks it had started to go out).
The pace each sentence was spoken at (speech span per weight unit) is printed too: the mean
is `timing._PRIOR_S_PER_UNIT`.

Run: .venv/bin/python bench/bench_word_timing.py
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pocketsphinx import Decoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.proxy import FaultProxy  # noqa: E402
from support.sidecar import SidecarProcess  # noqa: E402

from s2_plugin.audio import SAMPLE_RATE, resample  # noqa: E402
from s2_plugin.client import S2Client  # noqa: E402
from s2_plugin.stream import AudioChunk, SpeechOptions, SpeechStream  # noqa: E402
from s2_plugin.timing import Pace, WordClock, WordTime, speech_span, word_times  # noqa: E402
from s2_plugin.timing import _layout as layout  # noqa: E402

SENTENCES = [
    "Well, that is a very good question, and I have thought about it a lot.",
    "Your order left the warehouse this morning, and it should arrive tomorrow.",
    "Please hold the line while I look up your account.",
    "The sun will shine all morning and it will rain at night.",
    "Good morning, and welcome to the clinic.",
    "I am sorry, but the shop is closed on Sundays.",
    "We open the shop at nine in the morning and close at five.",
    "Thank you for calling, have a wonderful day.",
]
_RATE = 16000
PACED_RTF = 0.5


def align(pcm16k: bytes, words: list[str]) -> list[tuple[str, float, float]]:
    decoder = Decoder(samprate=_RATE, loglevel="FATAL")
    decoder.set_align_text(" ".join(words))
    decoder.start_utt()
    decoder.process_raw(pcm16k, full_utt=True)
    decoder.end_utt()
    frame_s = 1 / 100  # PocketSphinx's 10 ms frames
    return [
        (re.sub(r"\(\d+\)$", "", s.word), s.start_frame * frame_s, (s.end_frame + 1) * frame_s)
        for s in decoder.seg()
        if not s.word.startswith(("<", "["))  # <s>, </s>, <sil>, [NOISE]: not words
    ]


async def streamed(client: S2Client, sentence: str, pace: Pace) -> tuple[bytes, list[Any]]:
    """The sentence's audio, and each word as the clock reported it with the audio out by then."""
    clock = WordClock(SAMPLE_RATE, pace)
    stream = SpeechStream(client, SpeechOptions())
    stream.push_text(sentence)
    stream.end_input()
    pcm = b""
    reported: list[tuple[WordTime, float]] = []
    async for event in stream:
        for word in clock.feed(event):
            reported.append((word, len(pcm) / 2 / SAMPLE_RATE))
        if isinstance(event, AudioChunk):
            pcm += event.pcm
    return pcm, reported


async def measure(url: str, label: str) -> None:
    whole: list[float] = []
    shipped: list[float] = []
    lateness: list[float] = []
    paces: list[float] = []
    pace = Pace()
    async with S2Client(url) as client:
        for sentence in SENTENCES:
            pcm, reported = await streamed(client, sentence, pace)
            words = [re.sub(r"[^a-z']", "", w.lower()) for w in sentence.split()]
            aligned = align(resample(pcm, SAMPLE_RATE, _RATE), words)
            if [w for w, _, _ in aligned] != words:
                print(f"  alignment failed, skipped: {sentence!r}")
                continue
            start, end = speech_span(pcm, SAMPLE_RATE)
            paces.append((end - start) / layout(sentence).units)
            estimate = word_times(sentence, pcm, SAMPLE_RATE)
            for est, (_, a_start, a_end) in zip(estimate, aligned, strict=True):
                whole += [abs(est.start_s - a_start) * 1000, abs(est.end_s - a_end) * 1000]
            for (word, out_s), (_, a_start, a_end) in zip(reported, aligned, strict=True):
                shipped += [abs(word.start_s - a_start) * 1000, abs(word.end_s - a_end) * 1000]
                lateness.append(max(0.0, out_s - a_start) * 1000)
    n = len(whole) // 2
    print(f"{label}: {n} words")
    for name, errors in (("whole sentence", whole), ("as shipped (streaming)", shipped)):
        print(
            f"  {name:24s} boundary error ms  mean {np.mean(errors):6.1f}"
            f"  p95 {np.percentile(errors, 95):6.1f}"
        )
    late = [x for x in lateness if x > 0]
    print(
        f"  reported after its audio started going out: {len(late)}/{len(lateness)} words"
        f" (by at most {max(late, default=0.0):.0f} ms)"
    )
    print(f"  pace s/unit  mean {np.mean(paces):.4f}  min {min(paces):.4f}  max {max(paces):.4f}")


async def main() -> None:
    print("word timing estimate vs PocketSphinx forced alignment, preview voice")
    with tempfile.TemporaryDirectory() as tmp, SidecarProcess(Path(tmp) / "store") as sidecar:
        await measure(sidecar.url, "audio as the preview engine sends it (a segment at once)")
        async with FaultProxy(sidecar.url).running() as paced:
            paced.bytes_per_s = SAMPLE_RATE * 2 / PACED_RTF
            await measure(paced.url, f"audio paced as S2 streams it (RTF {PACED_RTF})")


if __name__ == "__main__":
    asyncio.run(main())
