import re

import pytest

from s2_plugin import tags
from s2_plugin.prompt import EXAMPLE_TAGS, tag_guide
from s2_plugin.segment import Segmenter


def test_every_bracketed_example_in_the_guide_is_a_valid_tag() -> None:
    guide = tag_guide("warm", speakers=True)
    tags.validate(guide)
    found = {t.raw for t in tags.find_tags(guide)}
    assert set(EXAMPLE_TAGS) <= found
    assert "[warm]" in found
    assert "<|speaker:1|>" in found


def test_example_lines_segment_and_strip_cleanly() -> None:
    # The guide's own examples are what the LLM will imitate: they must survive our pipeline.
    for line in re.findall(r"^- (.*)$", tag_guide(), flags=re.M):
        segmenter = Segmenter()
        segments = segmenter.push(line) + segmenter.flush()
        assert segments, line
        assert all(tags.has_speech(s) for s in segments)
        assert "[" not in tags.strip_tags(line)


def test_style_and_speakers_are_optional() -> None:
    plain = tag_guide()
    assert "default speaking style" not in plain
    assert "<|speaker" not in plain
    assert "[calm]" in tag_guide("[calm]")


def test_a_style_that_is_no_valid_cue_is_refused() -> None:
    with pytest.raises(tags.TagError):
        tag_guide("x" * 100)
