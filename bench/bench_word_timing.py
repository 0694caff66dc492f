"""Word timing estimate (`s2_plugin.timing`) against a forced alignment of the preview voice.

Each sentence is spoken by the preview engine through a real sidecar (one request, as one
segment would be); PocketSphinx aligns the known words to the audio (`set_align_text`), and
the estimate's start and end of every word are compared with the alignment's.

Run: .venv/bin/python bench/bench_word_timing.py
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from pocketsphinx import Decoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.sidecar import SidecarProcess  # noqa: E402

from s2_plugin.audio import SAMPLE_RATE, resample  # noqa: E402
from s2_plugin.client import S2Client  # noqa: E402
from s2_plugin.timing import word_times  # noqa: E402

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


async def main() -> None:
    errors: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, SidecarProcess(Path(tmp) / "store") as sidecar:
        async with S2Client(sidecar.url) as client:
            for sentence in SENTENCES:
                pcm = await client.synthesize(sentence)
                words = [re.sub(r"[^a-z']", "", w.lower()) for w in sentence.split()]
                aligned = align(resample(pcm, SAMPLE_RATE, _RATE), words)
                if [w for w, _, _ in aligned] != words:
                    print(f"  alignment failed, skipped: {sentence!r}")
                    continue
                estimate = word_times(sentence, pcm, SAMPLE_RATE)
                for est, (_, start, end) in zip(estimate, aligned, strict=True):
                    errors += [abs(est.start_s - start) * 1000, abs(est.end_s - end) * 1000]
    n = len(errors) // 2
    print(f"word timing estimate vs PocketSphinx forced alignment, preview voice, {n} words")
    print(f"  boundary error ms  mean {np.mean(errors):6.1f}  p95 {np.percentile(errors, 95):6.1f}")


if __name__ == "__main__":
    asyncio.run(main())
