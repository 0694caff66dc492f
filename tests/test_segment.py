"""The streaming segmenter: boundaries, tags, abbreviations, CJK, max_chars, flush and reset."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2_plugin import tags
from s2_plugin.segment import Segment, Segmenter
from s2_plugin.tags import MAX_TAG_CHARS

# Tags as the segmenter knows them: bounded, on one line.
_TAG_RE = re.compile(rf"\[[^\[\]\n]{{0,{MAX_TAG_CHARS}}}\]|<\|[^\n]{{0,{MAX_TAG_CHARS}}}?\|>")
EAGER: dict[str, int] = {"first_min_words": 1, "min_words": 1}


def segments(text: str, pieces: list[str] | None = None, /, **kwargs: int) -> list[Segment]:
    """Push `pieces` (default: the text in one piece), then flush."""
    seg = Segmenter(**kwargs)
    out: list[Segment] = []
    for piece in pieces if pieces is not None else [text]:
        out += seg.push(piece)
    return out + seg.flush()


def run(text: str, pieces: list[str] | None = None, /, **kwargs: int) -> list[str]:
    return [s.text for s in segments(text, pieces, **kwargs)]


def chars(text: str, **kwargs: int) -> list[str]:
    return run(text, list(text), **kwargs)


def texts_of(segmenter_output: list[Segment]) -> list[str]:
    return [s.text for s in segmenter_output]


def squash(text: str) -> str:
    return "".join(text.split())


# --- the first segment


def test_first_segment_leaves_at_first_clause_with_enough_words() -> None:
    seg = Segmenter(first_min_words=4)
    assert seg.push("Well, I think,") == []  # 1 and then 3 words: too few
    assert seg.push(" all things considered, ") == []  # undecided until the next word
    assert texts_of(seg.push("we")) == ["Well, I think, all things considered,"]
    assert seg.push(" should go, then come back.") == []  # later ones wait for a sentence end
    assert seg.push(" ") == []  # undecided: " okay" would continue the sentence
    assert texts_of(seg.push("Okay then.")) == ["we should go, then come back."]
    assert texts_of(seg.flush()) == ["Okay then."]


LONG_FIRST = "Your order shipped this morning and should arrive on Friday. Then it is yours."


def test_a_long_first_clause_is_cut_between_words_when_asked() -> None:
    first = "Your order shipped this morning and should arrive on Friday."
    assert run(LONG_FIRST, first_max_words=0) == [first, "Then it is yours."]  # clause ends only
    assert run(LONG_FIRST, first_max_words=8) == [
        "Your order shipped this morning and should arrive",
        "on Friday. Then it is yours.",
    ]
    # Never after a word that leads into the rest: before it.
    cut = ["Your order shipped this morning", "and should arrive on Friday.", "Then it is yours."]
    assert run(LONG_FIRST, first_max_words=6) == cut
    # Only the first segment; the same cut however the text arrives.
    twice = chars(LONG_FIRST + " " + LONG_FIRST, first_max_words=6)
    assert twice == [*cut, first, "Then it is yours."]
    # Never shorter than first_min_words.
    assert run("Sure, your order shipped.", first_max_words=2) == ["Sure, your order shipped."]


@pytest.mark.parametrize("mark", [",", ";", ":", " —", "—", "."])
def test_every_clause_mark_can_end_the_first_segment(mark: str) -> None:
    assert run(f"One two three four{mark} Five six seven.") == [
        f"One two three four{mark}",
        "Five six seven.",
    ]


def test_short_first_sentence_joins_the_next_clause() -> None:
    assert run("Hi! I'm Anna, your assistant for today, how can I help?") == [
        "Hi! I'm Anna, your assistant for today,",
        "how can I help?",
    ]


def test_later_segments_merge_short_sentences() -> None:
    text = "One two three four five. Sure. Let me check that. Done."
    assert run(text) == ["One two three four five.", "Sure. Let me check that.", "Done."]
    assert run(text, min_words=1) == [
        "One two three four five.",
        "Sure.",
        "Let me check that.",
        "Done.",
    ]


def test_boundary_is_decided_by_the_next_word() -> None:
    seg = Segmenter(**EAGER)
    assert seg.push("Hello.") == []
    assert seg.push(" ") == []
    assert texts_of(seg.push("W")) == ["Hello."]
    assert texts_of(seg.flush()) == ["W"]
    seg = Segmenter(**EAGER)
    assert texts_of(seg.push("Hello. W")) == ["Hello."]


def test_boundary_after_closing_quote() -> None:
    assert run('He said "Stop." Then he left.', **EAGER) == ['He said "Stop."', "Then he left."]
    assert run("(Really?) Yes.", **EAGER) == ["(Really?)", "Yes."]


def test_lowercase_word_continues_the_sentence() -> None:
    assert run('"Why not?" she asked. Fine.', **EAGER) == ['"Why not?" she asked.', "Fine."]
    assert run("Wait... what is it? Nothing.", **EAGER) == ["Wait... what is it?", "Nothing."]
    assert run("Wait... What is it?", **EAGER) == ["Wait...", "What is it?"]


# --- abbreviations and numbers


@pytest.mark.parametrize(
    "text",
    [
        "Ask Dr. Smith today.",
        "Ask Mr. Jones and Mrs. Jones.",
        "Bring fruit e.g. Apples.",
        "Bring one i.e. The red one.",
        "It is 3.14 exactly.",
        "Pay $29.99 now.",
        "We met in the U.S. Last year.",
        "Come at 9 a.m. Tomorrow.",
        "Read J. R. R. Tolkien today.",
        "See No. 5 there.",
        "Grab 1,000 coins.",
        "Meet at 10:30 sharp.",
        "Visit example.com today.",
        "It is big vs. Small.",
        "Ask Prof. Xavier now.",
    ],
)
def test_no_split_inside_abbreviations_and_numbers(text: str) -> None:
    assert run(text, **EAGER) == [text]
    assert chars(text, **EAGER) == [text]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I paid $5. Then I left.", ["I paid $5.", "Then I left."]),
        ("Say no. No means no.", ["Say no.", "No means no."]),
        ("So do I. Then we go.", ["So do I.", "Then we go."]),
        ("Go to example.com. Then log in.", ["Go to example.com.", "Then log in."]),
        ("Is it? Yes!! Great!?", ["Is it?", "Yes!!", "Great!?"]),
        ("Well… Maybe.", ["Well…", "Maybe."]),
    ],
)
def test_sentence_ends_that_look_like_abbreviations(text: str, expected: list[str]) -> None:
    assert run(text, **EAGER) == expected
    assert chars(text, **EAGER) == expected


def test_numbered_list_splits_at_lines_not_after_numbers() -> None:
    text = "Here are three options:\n1. Pasta with sauce\n2. Pizza with cheese\n3. A salad"
    assert run(text) == [
        "Here are three options:",
        "1. Pasta with sauce",
        "2. Pizza with cheese",
        "3. A salad",
    ]


# --- CJK


def test_cjk_sentence_marks_split_without_spaces() -> None:
    text = "你好。今天天气很好！我们去公园吧？好的。"  # noqa: RUF001
    assert run(text, **EAGER) == ["你好。", "今天天气很好！", "我们去公园吧？", "好的。"]  # noqa: RUF001
    assert chars(text, **EAGER) == run(text, **EAGER)


def test_cjk_words_count_per_character_for_the_first_segment() -> None:
    # Two characters before the first comma are fewer than four words: wait for the next mark.
    text = "你好，我是你的助手，很高兴见到你。"  # noqa: RUF001
    assert run(text) == ["你好，我是你的助手，", "很高兴见到你。"]  # noqa: RUF001


def test_cjk_min_words_counts_the_first_character_after_a_cut() -> None:
    text = "一二三四。五六七。八。"
    assert run(text, min_words=3) == ["一二三四。", "五六七。", "八。"]
    assert run(text, min_words=4) == ["一二三四。", "五六七。八。"]


def test_cjk_closing_bracket_stays_with_its_sentence() -> None:
    assert run("他说「走吧。」然后走了。", **EAGER) == ["他说「走吧。」", "然后走了。"]


# --- tags


def test_tag_after_sentence_end_belongs_to_next_sentence() -> None:
    text = "Hi there. [whisper] Come closer."
    assert run(text, **EAGER) == ["Hi there.", "[whisper] Come closer."]
    assert chars(text, **EAGER) == ["Hi there.", "[whisper] Come closer."]


def test_tag_open_across_fragments_holds_the_boundary() -> None:
    seg = Segmenter(**EAGER)
    assert seg.push("Hi there. [whis") == []
    assert seg.push("per, softly. ") == []  # marks inside a tag are no boundaries
    assert texts_of(seg.push("] Come")) == ["Hi there."]
    assert texts_of(seg.flush()) == ["[whisper, softly. ] Come"]


def test_marks_inside_tags_never_split() -> None:
    text = "One two three four [sigh. deeply, slowly] five six. Seven eight nine."
    assert run(text) == ["One two three four [sigh. deeply, slowly] five six.", "Seven eight nine."]


@pytest.mark.parametrize(
    "tail", [" [laugh]", " [laugh] [sigh]", "[laugh]", " <|speaker:1|>", " ..."]
)
def test_tag_only_tail_joins_the_last_segment(tail: str) -> None:
    text = f"One two three four five. That is all for today.{tail}"
    expected = ["One two three four five.", f"That is all for today.{tail}"]
    assert run(text) == expected
    assert chars(text) == expected


def test_speaker_tags_are_atomic() -> None:
    text = "<|speaker:0|> Hello there, my friend. <|speaker:1|> Hi, how are you doing?"
    assert chars(text) == [
        "<|speaker:0|> Hello there, my friend.",
        "<|speaker:1|> Hi, how are you doing?",
    ]
    seg = Segmenter(**EAGER)
    assert seg.push("Hello there. <|spea") == []
    assert seg.push("ker:1|") == []
    assert seg.push("> Hi") == [Segment("Hello there.", 0)]


def test_a_segment_cut_mid_turn_keeps_its_speaker() -> None:
    # The issue's own example: the second clause was spoken by speaker 0.
    text = "<|speaker:1|> Hello there my friend, how are you doing today? Fine, I hope."
    assert segments(text) == [
        Segment("<|speaker:1|> Hello there my friend,", 1),
        Segment("how are you doing today?", 1),
        Segment("Fine, I hope.", 1),
    ]


def test_a_speaker_switch_mid_sentence_ends_the_segment() -> None:
    text = (
        "Let me hand you over to <|speaker:1|> me, Ben. I handle refunds. "
        "I can help with that today. <|speaker:0|> thanks Ben!"
    )
    expected = [
        Segment("Let me hand you over to", 0),
        Segment("<|speaker:1|> me, Ben. I handle refunds.", 1),  # "me, Ben." is too short
        Segment("I can help with that today.", 1),
        Segment("<|speaker:0|> thanks Ben!", 0),
    ]
    assert segments(text) == expected
    assert segments(text, list(text)) == expected


def test_one_word_before_a_switch_is_a_segment() -> None:
    assert segments("Yes <|speaker:1|> No way, not today.") == [
        Segment("Yes", 0),
        Segment("<|speaker:1|> No way, not today.", 1),
    ]


def test_each_reply_starts_with_speaker_zero() -> None:
    seg = Segmenter()
    assert seg.push("<|speaker:1|> One two three four. ") == []
    assert seg.flush() == [Segment("<|speaker:1|> One two three four.", 1)]
    assert seg.push("Five six seven eight.") == []
    assert seg.flush() == [Segment("Five six seven eight.", 0)]


def test_stray_bracket_does_not_hold_text_forever() -> None:
    seg = Segmenter(**EAGER)
    out = texts_of(seg.push("Look [here. " + "Word " * 20 + "end. Next"))
    assert out == ["Look [here.", "Word " * 19 + "Word end."]


def test_less_than_sign_is_text() -> None:
    assert run("Is 3 <5? Yes it is.", **EAGER) == ["Is 3 <5?", "Yes it is."]


def test_reply_without_words_yields_nothing() -> None:
    for text in ["[laugh]", "  ", "...", "[laugh] <|speaker:1|> !"]:
        assert run(text) == []


def test_segment_never_holds_only_tags_or_punctuation() -> None:
    text = "[laugh] ... One two three four. [sigh] — ! Five six seven eight."
    out = chars(text, **EAGER)
    assert out == ["[laugh] ... One two three four.", "[sigh] — ! Five six seven eight."]


# --- max_chars


def test_max_chars_cuts_at_last_clause_boundary() -> None:
    text = ("word " * 10).strip() + ", " + ("more " * 30).strip() + "."
    out = run(text, max_chars=100)
    assert out[0] == ("word " * 10).strip() + ","
    assert all(len(s) <= 100 for s in out)
    assert squash(" ".join(out)) == squash(text)


def test_max_chars_cuts_at_last_space_when_clause_is_too_early() -> None:
    text = "Hi, " + " ".join(f"w{i}" for i in range(60)) + "."
    out = run(text, first_min_words=1, max_chars=100)
    assert out[0] == "Hi,"  # the first segment leaves at its clause as usual
    rest = run(text[4:], max_chars=100)
    assert [len(s) <= 100 for s in rest] == [True] * len(rest)
    words = set(text[4:].rstrip(".").split())
    assert all(w in words for s in rest for w in s.rstrip(".").split())  # no word cut in two
    assert len(rest) == 3
    assert squash(" ".join(rest)) == squash(text[4:])


def test_max_chars_never_cuts_a_tag_or_a_word() -> None:
    text = "a " * 30 + "[professional broadcast tone, very calm] " + "b " * 30
    out = chars(text, max_chars=80)
    assert all(len(s) <= 80 for s in out)
    joined = " | ".join(out)
    assert "[professional broadcast tone, very calm]" in joined
    assert squash("".join(out)) == squash(text)


def test_overlong_word_is_kept_whole() -> None:
    word = "x" * 150
    out = run(f"{word} and then more words. Done here now.", max_chars=80)
    assert out == [word, "and then more words.", "Done here now."]


# --- flush and reset


def test_early_in_a_reply_clause_ends_still_end_segments() -> None:
    text = (
        "Thank you for waiting, I have looked into your order carefully, and it is fine, "
        "it is moving again now, so it should arrive tomorrow, before noon, at your door."
    )
    segments = run(text)
    assert segments[:4] == [
        "Thank you for waiting,",
        "I have looked into your order carefully,",
        "and it is fine,",
        "it is moving again now,",
    ]
    # Past eager_chars (100) of the reply, only sentence ends cut.
    assert segments[4:] == ["so it should arrive tomorrow, before noon, at your door."]
    assert run(text, eager_chars=0) == [
        "Thank you for waiting,",
        "I have looked into your order carefully, and it is fine, it is moving again now, "
        "so it should arrive tomorrow, before noon, at your door.",
    ]


def test_flush_returns_rest_and_starts_a_new_reply() -> None:
    seg = Segmenter()
    assert texts_of(seg.push("One two three four, five six seven,")) == ["One two three four,"]
    assert texts_of(seg.flush()) == ["five six seven,"]
    assert seg.flush() == []
    assert seg.push("[laugh] One two three four.") == []
    assert texts_of(seg.flush()) == ["[laugh] One two three four."]
    # a new reply: the first segment is eager again
    assert texts_of(seg.push("Seven eight nine ten, eleven")) == ["Seven eight nine ten,"]


def test_reset_drops_pending_text() -> None:
    seg = Segmenter()
    assert texts_of(seg.push("One two three four, five six")) == ["One two three four,"]
    seg.reset()
    assert texts_of(seg.push("Again one two three, go")) == ["Again one two three,"]
    assert texts_of(seg.flush()) == ["go"]


def test_empty_push_is_a_no_op() -> None:
    seg = Segmenter()
    assert seg.push("") == []
    assert seg.flush() == []


# --- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"first_min_words": 0}, "first_min_words"),
        ({"first_max_words": -1}, "first_max_words"),
        ({"min_words": -1}, "min_words"),
        ({"max_chars": 10}, "max_chars"),
        ({"max_chars": 100.0}, "max_chars"),
        ({"min_words": True}, "min_words"),
    ],
)
def test_bad_arguments_say_what_to_change(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be an integer of at least \d+"):
        Segmenter(**kwargs)  # type: ignore[arg-type]


def test_push_rejects_non_text() -> None:
    with pytest.raises(ValueError, match="push takes text"):
        Segmenter().push(b"bytes")  # type: ignore[arg-type]


# --- properties: any split of the same text gives the same segments


_words = st.sampled_from(
    [
        "hello",
        "World",
        "Dr.",
        "Mr.",
        "e.g.",
        "i.e.",
        "3.14",
        "U.S.",
        "a.m.",
        "J.",
        "No.",
        "5",
        "1,000",
        "10:30",
        "你好",
        "世界",
        "don't",
        "It's",
        "x" * 30,
        "<",
        "[",
        "]",
    ]
)
_marks = st.sampled_from(["", "", "", ",", ".", "!", "?", "…", ";", ":", "—", "...", '."', "?)"])
_marks_cjk = st.sampled_from(["。", "，", "！"])  # noqa: RUF001
_tags = st.sampled_from(
    [
        "[laugh]",
        "[whisper]",
        "[professional broadcast tone]",
        "<|speaker:0|>",
        "<|speaker:12|>",
        "[sigh. deeply, slowly]",
        "[" + "t" * MAX_TAG_CHARS + "]",
        "<|x. y|>",
    ]
)
_seps = st.sampled_from([" ", " ", " ", " ", "\n", "  ", ""])
_items = st.one_of(
    st.tuples(_words, _marks).map("".join),
    st.tuples(_words, _marks_cjk).map("".join),
    _tags,
)


@st.composite
def texts(draw: st.DrawFn) -> str:
    items = draw(st.lists(st.tuples(_items, _seps), max_size=60))
    return "".join(item + sep for item, sep in items)


@st.composite
def splits(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=len(text))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _cut_points(text: str, segments: list[str]) -> list[int]:
    """Where, in `text`, each segment but the last ends (segments are whitespace-trimmed)."""
    points, pos = [], 0
    for s in segments:
        pos = text.index(s, pos) + len(s)
        points.append(pos)
    return points[:-1]


_configs = st.sampled_from(
    [{}, EAGER, {"max_chars": 80}, {"first_min_words": 2, "min_words": 5, "max_chars": 120}]
)


@settings(max_examples=300, deadline=None)
@given(text=texts(), config=_configs, data=st.data())
def test_any_split_gives_the_same_segments(
    text: str, config: dict[str, int], data: st.DataObject
) -> None:
    cut = segments(text, **config)
    whole = texts_of(cut)
    pieces = data.draw(splits(text))
    assert segments(text, pieces, **config) == cut

    speech = any(ch.isalnum() for ch in _TAG_RE.sub("", text))
    if not speech:
        assert whole == []
        return
    assert squash(" ".join(whole)) == squash(text)
    for s in whole:
        assert s == s.strip() and any(ch.isalnum() for ch in _TAG_RE.sub("", s)), s
    cuts = _cut_points(text, whole)
    for tag in _TAG_RE.finditer(text):
        assert not any(tag.start() < c < tag.end() for c in cuts), (tag.group(), whole)
    # Every segment is spoken by the last speaker tag before its first word, and holds no
    # other speaker's words (a speaker tag after its words only in a tag-only tail).
    for start, segment in zip([0, *cuts], cut, strict=True):
        in_tags = {i for t in _TAG_RE.finditer(text) for i in range(t.start(), t.end())}
        first_word = next(
            i for i in range(start, len(text)) if text[i].isalnum() and i not in in_tags
        )
        spoken = [tags.speaker_of(t.group()) for t in _TAG_RE.finditer(text[:first_word])]
        named = [n for n in spoken if n is not None]
        assert segment.speaker == (named[-1] if named else 0), (segment, cut)
        for t in _TAG_RE.finditer(segment.text):
            if tags.speaker_of(t.group()) is not None:
                before, after = segment.text[: t.start()], segment.text[t.end() :]
                assert not (_speech(before) and _speech(after)), segment


def _speech(text: str) -> bool:
    return any(ch.isalnum() for ch in _TAG_RE.sub("", text))


_plain_words = st.sampled_from(["a", "word", "longer", "sentence", "12", "[laugh]", "你好"])


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.tuples(_plain_words, _marks), min_size=1, max_size=120),
    max_chars=st.integers(80, 200),
)
def test_segments_stay_within_max_chars(words: list[tuple[str, str]], max_chars: int) -> None:
    text = " ".join(w + m for w, m in words)
    out = chars(text, max_chars=max_chars)
    assert all(len(s) <= max_chars for s in out), out
    if any(w.isalnum() for w, _ in words):
        assert squash(" ".join(out)) == squash(text)


def test_a_speaker_tag_after_another_tag_still_opens_the_segment() -> None:
    # The segmenter's own notion of a tag decides, not only tags.find_tags'.
    assert segments("One two three four。 <|x. y|> <|speaker:12|> hello") == [
        Segment("One two three four。", 0),
        Segment("<|x. y|> <|speaker:12|> hello", 12),
    ]


MARKUP = "<|phoneme_start|>Metformin|M EH0 T F AO1 R M IH0 N<|phoneme_end|>"


@pytest.mark.parametrize("max_chars", [80, 120, 300])
def test_phoneme_markup_is_one_word_never_cut(max_chars: int) -> None:
    text = f"Take {MARKUP} twice a day. {MARKUP} helps, and then {MARKUP}. " * 3
    for out in (run(text, max_chars=max_chars, **EAGER), chars(text, max_chars=max_chars)):
        assert "".join(out).replace(" ", "") == text.replace(" ", "")
        for segment in out:
            tags.validate(segment)  # every markup closed in its own segment


def test_markup_after_a_sentence_end_starts_the_next_segment() -> None:
    text = f"That is all for now. {MARKUP} is next."
    assert chars(text, **EAGER) == ["That is all for now.", f"{MARKUP} is next."]
