"""Pronunciation and text-transform cost per segment: what each request waits before it leaves.

The frameworks' text transforms and the pronunciation lexicon run on each segment just before
its request (`SpeechStream(transform=)`), so their time adds to every segment's first audio.
Measured on typical segments: the core's lexicon (30 entries), Pipecat's `VoiceFormatter`
with numbers on, and `S2TTSService`'s chain (tags masked, formatter, pronunciations); and the
IPA conversions of the 30 common pronunciations of `tests/support/pronunciations.py`.

Run: python bench/bench_pronunciation.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pipecat.utils.text.transforms.voice_formatter import VoiceFormatter
from pipecat_s2 import S2TTSService

from s2_plugin import phonemes
from s2_plugin.lexicon import Lexicon

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.pronunciations import COMMON

REPEATS = 2000
SEGMENTS = [
    "Your Metformin refill costs $12.50, and it is ready at 3 pm.",
    "<|speaker:1|> [whisper] Call us on 555-123-4567 or write to care@example.com.",
    "Take 2 tablets of Lisinopril with food, twice a day, for 14 days.",
]


def timed_us(run: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.mean(samples), samples[int(0.99 * len(samples))]


def sync(fn: Callable[[str], Awaitable[str]], text: str) -> Callable[[], object]:
    loop = asyncio.new_event_loop()
    return lambda: loop.run_until_complete(fn(text))


def main() -> None:
    converted = [w for w, ipa, _ in COMMON if phonemes.ipa_to_arpabet(ipa) is not None]
    print(f"IPA -> Arpabet: {len(converted)} of {len(COMMON)} common pronunciations convert")
    mean, p99 = timed_us(lambda: [phonemes.ipa_to_arpabet(ipa) for _, ipa, _ in COMMON])
    print(f"  all 30 converted in {mean:.0f} us (p99 {p99:.0f})")

    lexicon = Lexicon({w: ipa for w, ipa, a in COMMON if a is not None})
    formatter = VoiceFormatter(expand_numbers=True)
    pronounce = S2TTSService.pronunciation_transform_ipa({w: ipa for w, ipa, _ in COMMON})
    tts = S2TTSService(text_transforms=[("*", formatter), ("*", pronounce)])

    async def formatted(text: str) -> str:
        return await formatter(text, "sentence")

    print(f"per segment, mean and p99 in us ({REPEATS} runs):")
    print(f"  {'segment':<44} {'lexicon':>15} {'VoiceFormatter':>15} {'S2TTSService':>15}")
    for text in SEGMENTS:
        cells = [
            timed_us(lambda text=text: lexicon.apply(text)),
            timed_us(sync(formatted, text)),
            timed_us(sync(tts._transform, text)),
        ]
        row = " ".join(f"{m:>8.0f} ({p:>4.0f})" for m, p in cells)
        print(f"  {text[:42] + '..':<44} {row}")


if __name__ == "__main__":
    main()
