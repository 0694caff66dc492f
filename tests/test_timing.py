import itertools

import numpy as np
import pytest

from s2_plugin.audio import float_to_pcm16
from s2_plugin.stream import AudioChunk, SegmentEnd, SegmentStart
from s2_plugin.timing import Pace, WordClock, WordTime, speech_span, word_times

RATE = 16000


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return 0.5 * np.sin(2 * np.pi * 220 * t)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE))


def test_leading_and_trailing_silence_are_trimmed() -> None:
    pcm = float_to_pcm16(np.concatenate([silence(0.3), tone(1.0), silence(0.5)]))
    start, end = speech_span(pcm, RATE)
    assert start == pytest.approx(0.3, abs=0.011) and end == pytest.approx(1.3, abs=0.011)
    assert speech_span(float_to_pcm16(silence(1.0)), RATE) == (0.0, 0.0)


def test_words_are_in_order_within_the_speech_and_longer_words_take_longer() -> None:
    pcm = float_to_pcm16(np.concatenate([silence(0.2), tone(2.0), silence(0.2)]))
    times = word_times("Hello, wonderful world.", pcm, RATE)
    assert [t.word for t in times] == ["Hello,", "wonderful", "world."]
    assert times[0].start_s == pytest.approx(0.2, abs=0.011)
    assert times[-1].end_s == pytest.approx(2.2, abs=0.011)
    assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(times))
    assert all(t.start_s < t.end_s for t in times)
    # "wonderful" (3 syllables) outlasts "world" (1); the comma leaves a pause after "Hello,".
    assert times[1].end_s - times[1].start_s > 2 * (times[2].end_s - times[2].start_s)
    assert times[1].start_s > times[0].end_s


def test_no_words_no_times() -> None:
    assert word_times("  ", float_to_pcm16(tone(1.0)), RATE) == []


def test_a_tag_goes_with_the_word_after_it_or_at_the_end_the_one_before() -> None:
    pcm = float_to_pcm16(tone(2.0))
    times = word_times("[whisper] Hello <|speaker:1|> [laugh] there, friend [sigh].", pcm, RATE)
    assert [t.word for t in times] == [
        "[whisper] Hello",
        "<|speaker:1|> [laugh] there,",
        "friend [sigh].",
    ]
    assert [t.spoken for t in times] == ["Hello", "there,", "friend."]
    # Timed as the words alone: the tags take no time.
    plain = word_times("Hello there, friend.", pcm, RATE)
    assert [(t.start_s, t.end_s) for t in times] == [(t.start_s, t.end_s) for t in plain]


def test_the_clock_times_each_segment_from_the_replys_first_sample() -> None:
    clock = WordClock(RATE)
    first, second = float_to_pcm16(tone(1.0)), float_to_pcm16(tone(0.5))
    assert clock.feed(SegmentStart(0, "One two.", "One two.")) == []
    # A segment whose audio is all in (the chunk is its last) is timed from that audio whole.
    words = clock.feed(AudioChunk(0, first, last=True))
    assert [w.word for w in words] == ["One", "two."] and words[0].start_s < 0.011
    assert clock.feed(SegmentEnd(0, "One two.", "One two.", len(first) // 2, 0.1)) == []
    clock.feed(SegmentStart(1, "Three.", "Three."))
    words = clock.feed(AudioChunk(1, second, last=True))
    assert [(w.word, w.start_s, w.end_s) for w in words] == [
        ("Three.", pytest.approx(1.0, abs=0.011), pytest.approx(1.5, abs=0.011))
    ]


def test_phoneme_markup_is_one_word_shown_as_the_word_it_keeps() -> None:
    met = "<|phoneme_start|>Metformin|M EH0 T F AO1 R M IH0 N<|phoneme_end|>"
    pcm = float_to_pcm16(tone(1.0))
    words = word_times(f"Take {met}, twice.", pcm, RATE)
    assert [w.spoken for w in words] == ["Take", "Metformin,", "twice."]
    assert words[1].word == f"{met},"


def test_a_word_is_reported_before_the_audio_that_speaks_it() -> None:
    text = "one two three four five six seven eight nine ten"
    pcm = float_to_pcm16(np.concatenate([silence(0.3), tone(3.0)]))
    chunk = 2 * RATE // 10  # 100 ms
    clock = WordClock(RATE, Pace())
    clock.feed(SegmentStart(0, text, text))
    reported: list[tuple[WordTime, float]] = []
    for at in range(0, len(pcm), chunk):
        # Words first, then the chunk goes out: `heard` is the audio out before the word.
        heard = at / 2 / RATE
        for word in clock.feed(AudioChunk(0, pcm[at : at + chunk])):
            reported.append((word, heard))
    reported += [(w, len(pcm) / 2 / RATE) for w in clock.feed(SegmentEnd(0, text, text, 0, 0))]
    assert [w.word for w, _ in reported] == text.split()
    assert not clock.feed(SegmentStart(1, "x", "x"))  # nothing left over
    # Nothing is reported while only silence has come; every word before its own audio ends
    # the chunk it starts in; times in order, from the speech onset on.
    assert all(heard <= w.start_s for w, heard in reported[:-1]), reported
    assert reported[0][0].start_s == pytest.approx(0.3, abs=0.011)
    assert all(a.start_s < b.start_s for (a, _), (b, _) in itertools.pairwise(reported))


def test_the_pace_learned_from_a_segment_times_the_next_one_ahead() -> None:
    pace = Pace()
    text = "alpha beta gamma delta"
    slow = float_to_pcm16(tone(4.0))  # far slower than the prior pace
    clock = WordClock(RATE, pace)
    clock.feed(SegmentStart(0, text, text))
    clock.feed(AudioChunk(0, slow, last=True))
    clock.feed(SegmentEnd(0, text, text, len(slow) // 2, 0))
    assert pace.per_unit > 2 * Pace().per_unit
    # Streamed in pieces, the next segment's words come out nearer their places than the
    # prior pace alone puts them.
    whole = word_times(text, slow, RATE)

    def first_half(pace: Pace) -> list[WordTime]:
        clock = WordClock(RATE, pace)
        clock.feed(SegmentStart(0, text, text))
        return clock.feed(AudioChunk(0, slow[: len(slow) // 2]))

    learned, prior = first_half(pace), first_half(Pace())
    assert len(learned) >= 2 and [w.word for w in learned] == text.split()[: len(learned)]
    error = [abs(a.start_s - b.start_s) for a, b in zip(learned, whole, strict=False)]
    prior_error = [abs(a.start_s - b.start_s) for a, b in zip(prior, whole, strict=False)]
    assert sum(error) / len(error) < sum(prior_error) / len(prior_error) / 2
