import re

import pytest

from s2_plugin import tags
from s2_plugin.personas import PersonaError
from s2_plugin.prompt import EXAMPLE_TAGS, tag_guide
from s2_plugin.segment import Segmenter


def test_every_bracketed_example_in_the_guide_is_a_valid_tag() -> None:
    guide = tag_guide("warm", cast=["ava", "ben", "cy"])
    tags.validate(guide)
    found = {t.raw for t in tags.find_tags(guide)}
    assert set(EXAMPLE_TAGS) <= found
    assert "[warm]" in found
    assert {"<|speaker:0|>", "<|speaker:1|>", "<|speaker:2|>"} <= found
    assert "<|speaker:3|>" not in found


def test_the_cast_guide_names_each_speaker_and_never_opens_with_a_tag() -> None:
    guide = tag_guide(cast=["ava", "ben"])
    assert "<|speaker:0|> for ava" in guide and "<|speaker:1|> for ben" in guide
    # SGLang-Omni 0.1.9 already prefixes <|speaker:0|>: the LLM must not start with one.
    assert "never at the very start of a reply" in guide
    assert "starts in ava's voice" in guide


def test_a_cast_of_one_adds_nothing_and_a_bad_cast_is_refused() -> None:
    assert tag_guide(cast=["ava"]) == tag_guide()
    with pytest.raises(PersonaError, match="more than once"):
        tag_guide(cast=["ava", "ava"])


def test_example_lines_segment_and_strip_cleanly() -> None:
    # The guide's own examples are what the LLM will imitate: they must survive our pipeline.
    lines = re.findall(r"^- (.*)$", tag_guide(), flags=re.M)
    assert len(lines) == 3, tag_guide()  # the guide's three example lines, each checked below
    for line in lines:
        assert tags.find_tags(line), line
        segmenter = Segmenter()
        segments = segmenter.push(line) + segmenter.flush()
        assert segments, line
        assert all(tags.has_speech(s.text) for s in segments)
        assert "[" not in tags.strip_tags(line)


def test_style_and_speakers_are_optional() -> None:
    plain = tag_guide()
    assert "default speaking style" not in plain
    assert "<|speaker" not in plain
    assert "[calm]" in tag_guide("[calm]")


def test_a_style_that_is_no_valid_cue_is_refused() -> None:
    with pytest.raises(tags.TagError):
        tag_guide("x" * 100)
