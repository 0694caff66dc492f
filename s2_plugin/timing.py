"""Word timings for a reply, estimated from its audio as it arrives (S2 gives no alignment).

`word_times(text, pcm, rate)` gives every word of a whole segment a start and end, in seconds
from the segment's first sample. How: the speech is the span between the first and the last
10 ms frame louder than 1/20 of the segment's loudest frame (leading and trailing silence
trimmed); that span is shared among the words by weight: one unit per syllable (vowel groups,
at least one per word, a digit two) plus 0.3 per letter, and a comma or a sentence end adds
the pause a voice makes there (3 and 5 units) after its word. `bench/bench_word_timing.py`
measures the estimate against PocketSphinx's forced alignment of the preview voice (these
weights were chosen there: mean boundary error 74 ms, p95 182 ms, against 98 and 274 for
syllables alone).

`WordClock` times a reply's words while its audio streams in, so each word is reported no
later than the audio that speaks it (as the frameworks' word-timestamp services do): a word
is due once the audio received reaches its estimated start, the speech onset plus its weight
position times the voice's `Pace` (seconds per unit, learned from every segment heard); the
words still due at a segment's end take their places from that segment's whole audio, and
the segment's measured pace corrects the estimate for the next.

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
from s2_plugin.stream import AudioChunk, SegmentEnd, SegmentStart, StreamEvent

__all__ = ["Pace", "WordClock", "WordTime", "speech_span", "word_times"]

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


def _onset(pcm: bytes, sample_rate: int) -> float | None:
    """When the first loud 10 ms frame of `pcm` starts (s), or None while all is quiet."""
    x = samples(pcm).astype(np.float32)
    n = max(1, int(sample_rate * _FRAME_S))
    frames = len(x) // n
    if frames == 0:
        return None
    rms = np.sqrt(np.mean(x[: frames * n].reshape(frames, n) ** 2, axis=1))
    loud = np.flatnonzero(rms > _ONSET_RMS)
    return float(loud[0] * n / sample_rate) if len(loud) else None


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


_ONSET_RMS = 200.0
"""A 10 ms frame this loud (int16 RMS, about -44 dBFS) starts the speech of a segment still
streaming in; the segment's loudest frame, which `speech_span` measures against, is not known
yet."""

_LOOKAHEAD_S = 0.2
"""Words due this soon after the audio received go out with it: a pace estimated slow
would otherwise report a word after its audio (by up to 111 ms in `bench_word_timing.py`'s
paced run without it)."""

_PRIOR_S_PER_UNIT = 0.084
"""The preview voice's pace (speech span per weight unit), measured with
`bench/bench_word_timing.py`; only the first segment a clock hears goes by it alone."""


@dataclass
class Pace:
    """Seconds of speech per unit of word weight: a prior, then what the voice was heard doing.

    Kept by a TTS for all its replies, so each reply's first words start from the voice's pace.
    """

    seconds: float = _PRIOR_S_PER_UNIT * 5
    units: float = 5.0
    """The prior counts as five units of speech (about two words): the first segment heard
    outweighs it."""

    @property
    def per_unit(self) -> float:
        return self.seconds / self.units

    def learn(self, seconds: float, units: float) -> None:
        self.seconds += seconds
        self.units += units


@dataclass
class _Segment:
    """The words of the segment now playing, and how many of them are out."""

    words: list[str]
    positions: list[float]
    """Each word's start, in weight units from the speech onset."""
    weights: list[float]
    units: float
    """The whole segment's weight, pauses included."""
    out: int = 0
    onset_s: float | None = None


def _layout(text: str) -> _Segment:
    words = _words(text)
    spoken = [tags.strip_tags(w) for w in words]
    weights = [_weight(w) for w in spoken]
    pauses = [_PAUSE.get(w[-1], 0.0) for w in spoken[:-1]] + [0.0]
    positions, at = [], 0.0
    for weight, pause in zip(weights, pauses, strict=True):
        positions.append(at)
        at += weight + pause
    return _Segment(words, positions, weights, at)


class WordClock:
    """A reply's words, timed from its first sample, each out before the audio that speaks it.

    Both adapters feed it every event of the reply's `SpeechStream`, in order, and report
    the words `feed` returns before passing the event's audio on.
    """

    def __init__(self, sample_rate: int, pace: Pace | None = None) -> None:
        self._rate = sample_rate
        self._pace = pace or Pace()
        self._pcm = bytearray()
        self._played = 0
        self._segment = _Segment([], [], [], 0.0)
        self._last_s = 0.0

    def feed(self, event: StreamEvent) -> list[WordTime]:
        """The words due before `event`'s audio plays (or, at a segment's end, the rest)."""
        if isinstance(event, SegmentStart):
            self._segment = _layout(event.text)
            self._pcm.clear()
            return []
        if isinstance(event, AudioChunk):
            return self._due(event.pcm, event.last)
        return self._end(event)

    def _due(self, pcm: bytes, last: bool) -> list[WordTime]:
        segment = self._segment
        self._pcm += pcm
        if last:  # the whole audio is known: the rest of the words from it
            return self._rest(segment)
        if segment.onset_s is None:
            segment.onset_s = _onset(bytes(self._pcm), self._rate)
            if segment.onset_s is None:
                return []  # silence so far: no word starts in it
        # Words out with this chunk: those whose estimated start falls before its end, or
        # only just after it (an estimate that runs late still comes before the word).
        until_s = len(self._pcm) // 2 / self._rate + _LOOKAHEAD_S
        unit = self._pace.per_unit
        due = []
        while segment.out < len(segment.words):
            i = segment.out
            start_s = segment.onset_s + segment.positions[i] * unit
            if start_s >= until_s:
                break
            due.append((segment.words[i], start_s, start_s + segment.weights[i] * unit))
            segment.out += 1
        return self._timed(due)

    def _rest(self, segment: _Segment) -> list[WordTime]:
        """The words not yet out, timed from the segment's whole audio, which is all in."""
        if segment.out == len(segment.words):
            return []
        pcm = bytes(self._pcm)
        whole = word_times(" ".join(segment.words), pcm, self._rate)
        rest = [(w.word, w.start_s, w.end_s) for w in whole[segment.out :]]
        segment.out = len(segment.words)
        start, end = speech_span(pcm, self._rate)
        if end > start and segment.units:
            self._pace.learn(end - start, segment.units)
        return self._timed(rest)

    def _end(self, event: SegmentEnd) -> list[WordTime]:
        words = self._rest(self._segment)
        self._played += event.samples
        self._pcm.clear()
        self._segment = _Segment([], [], [], 0.0)
        return words

    def _timed(self, words: list[tuple[str, float, float]]) -> list[WordTime]:
        """Reply times, in order (a word never starts before the one reported before it)."""
        offset = self._played / self._rate
        out = []
        for word, start_s, end_s in words:
            start = max(self._last_s, offset + start_s)
            self._last_s = max(start + 0.001, offset + end_s)
            out.append(WordTime(word, start, self._last_s))
        return out
