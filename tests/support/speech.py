"""Offline speech recognition for tests: did the words survive the trip?

PocketSphinx's US English model ships inside its wheel, so this runs in CI with no download.
It is a crude recogniser; compare word error rates against a bound, never exact transcripts.
"""

from __future__ import annotations

import re

from pocketsphinx import Decoder

from s2_plugin.audio import resample

_RATE = 16000
_WORD_RE = re.compile(r"[a-z0-9']+")


def transcribe(pcm: bytes, rate: int) -> str:
    """The words PocketSphinx hears in int16 mono PCM at `rate` Hz, lower case."""
    decoder = Decoder(samprate=_RATE, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(resample(pcm, rate, _RATE), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference's word count."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        raise ValueError("the reference has no words")
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)
