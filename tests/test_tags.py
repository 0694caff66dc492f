"""Inline tags: validation messages, stripping, speech detection, persona style, speakers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from s2_plugin.personas import Persona
from s2_plugin.prompt import tag_guide
from s2_plugin.protocol import SpeechRequest
from s2_plugin.tags import (
    MAX_TAG_CHARS,
    TagError,
    apply_style,
    find_tags,
    has_speech,
    mask,
    repair,
    speaker_of,
    speaker_tag,
    speakers,
    strip_speakers,
    strip_tags,
    style_cue,
    turns,
    unmask,
    validate,
)


@pytest.mark.parametrize(
    "text",
    [
        "Hello there.",
        "[whisper] Come closer. [laugh]",
        "<|speaker:0|> Hi. <|speaker:99|> Hello.",
        "[" + "x" * MAX_TAG_CHARS + "]",
        "[ professional broadcast tone ] Line one.\nLine two.\tTabbed.",
        "",
    ],
)
def test_valid_text_passes(text: str) -> None:
    validate(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[whisper Come closer.", r"tag opened at position 0 is never closed; add '\]'"),
        ("Come closer] now.", r"'\]' at position 11 closes no tag; remove it or add the '\['"),
        ("[soft [whisper]]", r"'\[' at position 6 opens a tag inside a tag; close the first"),
        ("[soft\nvoice] hi", r"tag opened at position 0 runs past a line end; close it"),
        ("Hi [] there", r"empty tag '\[\]' at position 3; write a cue like \[whisper\]"),
        ("Hi [   ]", r"empty tag '\[   \]' at position 3"),
        (
            "[" + "x" * (MAX_TAG_CHARS + 1) + "]",
            rf"is {MAX_TAG_CHARS + 1} characters; keep cues to {MAX_TAG_CHARS} characters or fewer",
        ),
        ("Hi\x00 there", r"control character '\\x00'; remove it"),
        ("Hi\x1b[0m there", r"control character '\\x1b'; remove it"),
        ("<|speaker:100|> Hi", r"malformed speaker tag; write it as <\|speaker:N\|> with N from 0"),
        ("<|speaker:a|> Hi", "malformed speaker tag"),
        ("<|speaker:1> Hi", "malformed speaker tag"),
        ("Hi speaker:1|>", "malformed speaker tag"),
    ],
)
def test_invalid_text_says_what_to_change(text: str, message: str) -> None:
    with pytest.raises(TagError, match=message):
        validate(text)


def test_tag_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate("[")


def test_find_tags_positions_and_kinds() -> None:
    text = "[calm] Hi <|speaker:1|> there [laugh]"
    found = find_tags(text)
    assert [(t.raw, t.start, t.end, t.is_speaker) for t in found] == [
        ("[calm]", 0, 6, False),
        ("<|speaker:1|>", 10, 23, True),
        ("[laugh]", 30, 37, False),
    ]
    assert all(text[t.start : t.end] == t.raw for t in found)


@pytest.mark.parametrize(
    ("text", "bare"),
    [
        ("[whisper] Come closer. [laugh]", "Come closer."),
        ("Hello [laugh], world <|speaker:1|>!", "Hello, world!"),
        ("<|speaker:0|>Hi<|speaker:1|>there", "Hi there"),
        ("  no   tags\nhere ", "no tags here"),
        ("[laugh]", ""),
    ],
)
def test_strip_tags(text: str, bare: str) -> None:
    assert strip_tags(text) == bare


@pytest.mark.parametrize(
    ("text", "speech"),
    [
        ("Hi", True),
        ("[laugh] 5", True),
        ("你好", True),
        ("[laugh] <|speaker:1|> ... !", False),
        ("   ", False),
        ("", False),
    ],
)
def test_has_speech(text: str, speech: bool) -> None:
    assert has_speech(text) is speech


def test_apply_style() -> None:
    assert apply_style("Hello.", "calm") == "[calm] Hello."
    assert apply_style("  Hello.", "[calm]") == "[calm] Hello."
    assert apply_style("Hello.", None) == "Hello."
    assert apply_style("Hello.", "") == "Hello."
    # the text's own cue wins
    assert apply_style("[whisper] Hello.", "calm") == "[whisper] Hello."
    assert apply_style("<|speaker:1|> Hello.", "calm") == "<|speaker:1|> Hello."


BAD_STYLES = ["[calm", "calm]", "[a] [b]", "<|speaker:1|>", "x" * (MAX_TAG_CHARS + 1), "a\x00b"]


@pytest.mark.parametrize("style", BAD_STYLES)
def test_apply_style_rejects_bad_style(style: str) -> None:
    with pytest.raises(TagError, match="write a cue like 'warm'"):
        apply_style("Hello.", style)


@pytest.mark.parametrize("style", BAD_STYLES)
def test_every_place_that_takes_a_style_refuses_the_same_ones(style: str) -> None:
    # A client's Persona, the wire model the sidecar validates with, and the LLM's tag guide
    # once disagreed: Persona(style="[warm") passed here, the sidecar refused it, the guide
    # repaired it. All three now ask tags.style_cue.
    with pytest.raises(TagError):
        Persona(name="ava", clip=b"RIFF", transcript="Hi.", style=style)
    with pytest.raises(ValidationError, match="style"):
        SpeechRequest(input="Hello.", style=style)
    with pytest.raises(TagError):
        tag_guide(style)


@pytest.mark.parametrize(("style", "cue"), [("warm", "[warm]"), (" [warm] ", "[warm]")])
def test_a_style_is_written_as_one_cue(style: str, cue: str) -> None:
    assert style_cue(style) == cue
    assert apply_style("Hello.", style) == f"{cue} Hello."
    assert f"style is {cue};" in tag_guide(style)


def test_speakers_in_order() -> None:
    assert speakers("<|speaker:1|> a <|speaker:0|> b <|speaker:12|> c") == [1, 0, 12]
    assert speakers("[laugh] no speakers") == []


@pytest.mark.parametrize(
    ("text", "repaired"),
    [
        ("Hi [whisper] there", "Hi [whisper] there"),
        ("a [ stray", "a  stray"),
        ("b ] c", "b  c"),
        ("[] empty", " empty"),
        ("[" + "x" * 80 + "] ok", "x" * 80 + " ok"),
        ("<|speaker:1|> hi <| bad", "<|speaker:1|> hi  bad"),
        ("ctl\x01 x", "ctl x"),
    ],
)
def test_repair_keeps_good_tags_and_drops_what_would_fail_validation(
    text: str, repaired: str
) -> None:
    assert repair(text) == repaired
    validate(repair(text))


def test_speaker_of_reads_exactly_one_speaker_tag() -> None:
    assert speaker_of("<|speaker:7|>") == 7
    assert speaker_of(speaker_tag(12)) == 12
    assert speaker_of("[laugh]") is None
    assert speaker_of("<|speaker:1|> hi") is None


def test_turns_cut_text_at_speaker_tags() -> None:
    text = "Hi [laugh] there. <|speaker:1|> Hello! <|speaker:2|><|speaker:0|> Bye."
    assert turns(text) == [(0, "Hi [laugh] there."), (1, "Hello!"), (0, "Bye.")]
    assert turns("<|speaker:3|> Only me.") == [(3, "Only me.")]
    assert turns("[laugh] <|speaker:1|>") == []


def test_strip_speakers_keeps_the_other_tags() -> None:
    assert strip_speakers("<|speaker:1|> [laugh] Hi <|speaker:0|>  there.") == "[laugh] Hi there."


def test_phoneme_markup_is_speech_shown_as_its_word() -> None:
    met = "<|phoneme_start|>Metformin|M EH0 T F AO1 R M IH0 N<|phoneme_end|>"
    text = f"[calm] Take {met}, twice."
    validate(text)
    assert strip_tags(text) == "Take Metformin, twice."
    assert has_speech(met) and has_speech("<|phoneme_start|>R EH1 D<|phoneme_end|>")
    assert [t.is_phonemes for t in find_tags(text)] == [False, True]
    assert apply_style(met, "calm") == f"[calm] {met}"


def test_repair_drops_unreadable_markup_and_keeps_its_word() -> None:
    bad = "a <|phoneme_start|>Read|r eh1 d<|phoneme_end|> b <|phoneme_start|>oops"
    assert repair(bad) == "a Read b oops"
    good = "a <|phoneme_start|>Read|R EH1 D<|phoneme_end|>."
    assert repair(good) == good


def test_masked_tags_survive_a_transform_and_come_back() -> None:
    text = "<|speaker:1|> Call 555 [whisper] now. <|phoneme_start|>R EH1 D<|phoneme_end|> 2"
    masked, found = mask(text)
    assert not find_tags(masked) and len(found) == 3 and "speaker" not in masked
    assert unmask(masked.replace("555", "five five five").replace("2", "two"), found) == (
        "<|speaker:1|> Call five five five [whisper] now. "
        "<|phoneme_start|>R EH1 D<|phoneme_end|> two"
    )
    assert unmask("\ue005 kept", found) == "\ue005 kept"  # not one of ours
