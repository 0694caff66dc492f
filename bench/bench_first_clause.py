"""The first clause: what cutting a reply's first segment between words (`Segmenter`'s
`first_max_words`) saves in waiting and costs in speech.

1. Waiting: for 400 replies of the call load (`s2_sidecar.calls.reply_text`), the time from the
   LLM's first token to the first request (the segmenter's wait for its cut), at 50 tokens/s
   and 1.3 tokens a word, p50/p95, for each setting. Pure text arithmetic.
2. Cost, on the preview voice (Piper, through a real sidecar): sentences whose first clause is
   long, spoken whole and as the segments each setting cuts (one request each, audio joined as
   a player joins them). Word error rate by PocketSphinx against the text, and the pause at the
   cut (the longest run under -40 dBFS within 0.5 s of the join) against the longest pause in
   the whole sentence. S2's prosody across a cut (each request is its own utterance, so the
   first part ends with a falling tone) cannot be measured on the preview; the pause is its
   audible part there.

Run: .venv/bin/python bench/bench_first_clause.py
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from s2_sidecar.calls import TOKENS_PER_WORD, reply_text  # noqa: E402
from support.sidecar import SidecarProcess  # noqa: E402
from support.speech import transcribe, wer  # noqa: E402

from s2_plugin.client import S2Client  # noqa: E402
from s2_plugin.segment import Segmenter  # noqa: E402

SETTINGS = (0, 6, 8, 10, 12)
TOKENS_PER_S = 50.0
SENTENCES = [
    "Your order shipped this morning from our warehouse in Ohio and should arrive on Friday.",
    "I checked the tracking number you gave me and the parcel is now at the local depot.",
    "The refund for the damaged lamp goes back to the card you used within five days.",
    "We can send a replacement at no cost to you if the parcel does not arrive by Monday.",
    "Your appointment with doctor Miller is booked for next Tuesday at ten in the morning.",
    "The new plan gives you unlimited calls and twenty gigabytes of data every month.",
]
SILENCE = 10 ** (-40 / 20) * 32768


def first_cut(text: str, max_words: int) -> list[str]:
    segmenter = Segmenter(first_max_words=max_words)
    out = []
    for n, word in enumerate(text.split(" ")):
        out += segmenter.push(word if n == 0 else " " + word)
    return [s.text for s in out + segmenter.flush()]


def wait_s(text: str, max_words: int) -> float:
    """First token to first request: the words pushed until the first segment is out."""
    segmenter = Segmenter(first_max_words=max_words)
    words = text.split(" ")
    for n, word in enumerate(words):
        if segmenter.push(word if n == 0 else " " + word):
            return n * TOKENS_PER_WORD / TOKENS_PER_S
    return len(words) * TOKENS_PER_WORD / TOKENS_PER_S


def waiting() -> None:
    rng = random.Random(7)
    replies = [reply_text(rng, rng.randint(1, 6)) for _ in range(400)]
    print("1. first token -> first request, 400 call-load replies (ms)")
    print("   first_max_words   p50    p95   replies cut between words")
    for setting in SETTINGS:
        waits = [wait_s(r, setting) * 1000 for r in replies]
        cut = sum(first_cut(r, setting)[0] != first_cut(r, 0)[0] for r in replies)
        label = "off" if setting == 0 else str(setting)
        p50, p95 = np.percentile(waits, 50), np.percentile(waits, 95)
        print(f"   {label:>15s}  {p50:5.0f}  {p95:5.0f}   {cut / len(replies):5.0%}")


def longest_pause(pcm: np.ndarray, rate: int, lo: int = 0, hi: int | None = None) -> float:
    quiet = np.abs(pcm[lo:hi].astype(np.int32)) < SILENCE
    best = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        best = max(best, run)
    return best / rate


async def cost(url: str) -> None:
    print("\n2. cost on the preview voice, 6 sentences with a long first clause")
    print("   first_max_words   WER   pause at cut ms   longest pause, whole ms")
    async with S2Client(url) as client:
        whole = {s: await client.synthesize(s) for s in SENTENCES}
        for setting in SETTINGS:
            errors, cuts, natural = [], [], []
            for sentence in SENTENCES:
                parts = first_cut(sentence, setting)
                audio = [await client.synthesize(p) for p in parts]
                joined = np.frombuffer(b"".join(audio), "<i2")
                errors.append(wer(sentence, transcribe(joined.tobytes(), 44100)))
                ref = np.frombuffer(whole[sentence], "<i2")
                natural.append(longest_pause(ref[4410:-4410], 44100))
                if len(parts) > 1:
                    join = len(audio[0]) // 2
                    cuts.append(longest_pause(joined, 44100, join - 22050, join + 22050))
            label = "off" if setting == 0 else str(setting)
            cut = f"{np.mean(cuts) * 1000:15.0f}" if cuts else f"{'-':>15s}"
            pause = np.mean(natural) * 1000
            print(f"   {label:>15s}  {np.mean(errors):4.0%}  {cut}   {pause:10.0f}")


def main() -> None:
    waiting()
    with tempfile.TemporaryDirectory() as tmp, SidecarProcess(Path(tmp) / "store") as sidecar:
        sidecar.wait_ready()
        asyncio.run(cost(sidecar.url))


if __name__ == "__main__":
    main()
