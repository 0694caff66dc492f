"""Word timings for a segment, estimated from its audio (S2 gives no alignment).

`word_times(text, pcm, rate)` gives every word a start and end, in seconds from the segment's
first sample; `WordClock` does it for a whole reply, from its stream's events. How: the speech
is the span between the first and the last 10 ms frame louder than 1/20 of the segment's
loudest frame (leading and trailing silence trimmed); that span is shared among the words by
weight: one unit per syllable (vowel groups, at least one per word, a digit two) plus 0.3 per
letter, and a comma or a sentence end adds the pause a voice makes there (3 and 5 units) after
its word. `bench/bench_word_timing.py` measures the estimate against PocketSphinx's forced
alignment of the preview voice (these weights were chosen there: mean boundary error 74 ms, p95
182 ms, against 98 and 274 for syllables alone).

A tag is not a word: it is kept, as written, on the word after it (at the end, the one before),
so the words joined give back the text; `WordTime.spoken` is the word without its tags.
Phoneme markup is one word, weighed and shown as the word it keeps (`s2_plugin.phonemes`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from s2_plugin import phonemes, tags
from s2_plugin.audio import samples
from s2_plugin.stream import AudioChunk, SegmentEnd, StreamEvent

__all__ = ["WordClock", "WordTime", "speech_span", "word_times"]

_FRAME_S = 0.01
_QUIET = 1 / 20
_VOWELS = re.compile(r"[aeiouy]+", re.I)
# A word: a run without spaces, phoneme markup (whose Arpabet holds spaces) taken whole.
_WORD_RE = re.compile(f"(?:{phonemes.MARKUP_RE.pattern}|\\S)+")
_PAUSE = {",": 3.0, ";": 3.0, ":": 3.0, ".": 5.0, "!": 5.0, "?": 5.0}


@dataclass(frozen=True, slots=True)
class WordTime:
    word: str
    """The word as written, with any tags that go with it."""
    start_s: float
    end_s: float

    @property
    def spoken(self) -> str:
        """The word without its tags: what a caption shows."""
        return tags.strip_tags(self.word)


def _weight(word: str) -> float:
    letters = sum(1 for c in word if c.isalpha())
    digits = sum(1 for c in word if c.isdigit())
    syllables = max(1.0 if letters or digits else 0.0, len(_VOWELS.findall(word)) + 2.0 * digits)
    return syllables + 0.3 * (letters + digits)


def speech_span(pcm: bytes, sample_rate: int) -> tuple[float, float]:
    """Start and end (s) of the audible part of `pcm`; (0, 0) for silence."""
    x = samples(pcm).astype(np.float32)
    n = max(1, int(sample_rate * _FRAME_S))
    frames = len(x) // n
    if frames == 0:
        return 0.0, len(x) / sample_rate
    rms = np.sqrt(np.mean(x[: frames * n].reshape(frames, n) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * _QUIET) if rms.max() > 0 else np.array([], int)
    if not len(loud):
        return 0.0, 0.0
    return float(loud[0] * n / sample_rate), float((loud[-1] + 1) * n / sample_rate)


def _words(text: str) -> list[str]:
    """`text` split at spaces, each tag-only piece joined to the word after it (or before)."""
    words: list[str] = []
    pending = ""
    for piece in (m.group() for m in _WORD_RE.finditer(text)):
        if tags.has_speech(piece):
            words.append(f"{pending} {piece}".lstrip())
            pending = ""
        else:
            pending = f"{pending} {piece}".lstrip()
    if pending and words:
        words[-1] += f" {pending}"
    return words


def word_times(text: str, pcm: bytes, sample_rate: int) -> list[WordTime]:
    """Each word of `text` (split at spaces, punctuation and tags kept) with its estimated span."""
    words = _words(text)
    if not words:
        return []
    start, end = speech_span(pcm, sample_rate)
    spoken = [tags.strip_tags(w) for w in words]
    weights = [_weight(w) for w in spoken]
    pauses = [_PAUSE.get(w[-1], 0.0) for w in spoken[:-1]] + [0.0]
    total = sum(weights) + sum(pauses) or 1.0
    unit = (end - start) / total
    out, t = [], start
    for word, weight, pause in zip(words, weights, pauses, strict=True):
        out.append(WordTime(word, t, t + weight * unit))
        t += (weight + pause) * unit
    return out


class WordClock:
    """A reply's words, timed from its first sample, as its `SpeechStream` plays.

    Both adapters feed it every event; a segment's words come back at its `SegmentEnd`, once
    its audio is complete, shifted by the audio of the segments before it.
    """

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._pcm = bytearray()
        self._played = 0

    def feed(self, event: StreamEvent) -> list[WordTime]:
        if isinstance(event, AudioChunk):
            self._pcm += event.pcm
            return []
        if not isinstance(event, SegmentEnd):
            return []
        offset = self._played / self._rate
        words = [
            WordTime(w.word, offset + w.start_s, offset + w.end_s)
            for w in word_times(event.text, bytes(self._pcm), self._rate)
        ]
        self._played += event.samples
        self._pcm.clear()
        return words
