"""The pronunciation lexicon: whole words become markup that keeps them; bad entries refused."""

# ruff: noqa: RUF001  (IPA is written in IPA letters)

from __future__ import annotations

import pytest

from s2_plugin import tags
from s2_plugin.lexicon import Lexicon
from s2_plugin.phonemes import PhonemeError

MET = "<|phoneme_start|>metformin|M EH0 T F AO1 R M IH0 N<|phoneme_end|>"


def test_whole_words_any_case_become_markup_that_keeps_them() -> None:
    lexicon = Lexicon({"Metformin": "mɛtˈfɔɹmɪn"})
    out = lexicon.apply("Take metformin, not metformin-XR or metformins. [calm] Metformin!")
    assert out == (
        f"Take {MET}, not metformin-XR or metformins. [calm] "
        "<|phoneme_start|>Metformin|M EH0 T F AO1 R M IH0 N<|phoneme_end|>!"
    )
    tags.validate(out)
    assert tags.strip_tags(out) == "Take metformin, not metformin-XR or metformins. Metformin!"


def test_words_inside_tags_and_markup_are_left_alone() -> None:
    lexicon = Lexicon({"read": "R EH1 D", "whisper": "W IH1 S P ER0"})
    text = "[whisper] I <|phoneme_start|>read|R IY1 D<|phoneme_end|> it <|speaker:1|> read"
    assert lexicon.apply(text) == (
        "[whisper] I <|phoneme_start|>read|R IY1 D<|phoneme_end|> it <|speaker:1|> "
        "<|phoneme_start|>read|R EH1 D<|phoneme_end|>"
    )


def test_longer_entries_win_and_a_later_lexicon_overrides() -> None:
    base = Lexicon({"New York": "N UW1 Y AO1 R K", "York": "Y AO1 R K"})
    persona = Lexicon({"york": "Y AA1 R K"})
    merged = base | persona
    assert merged.entries == {"New York": ["N UW1 Y AO1 R K"], "york": ["Y AA1 R K"]}
    assert tags.strip_tags(merged.apply("New York or York")) == "New York or York"
    assert "Y AA1 R K" in merged.apply("York")
    assert not Lexicon() and merged


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"Bach": "bɑːx"}, "lexicon entry 'Bach': Arpabet has no phone for IPA 'x'"),
        ({"read": "R EH9 D"}, "lexicon entry 'read': 'EH9'"),
        ({"[x]": "R EH1 D"}, "is no word"),
        ({"read": 3}, "must be text"),
    ],
)
def test_a_bad_entry_is_refused_with_the_word(entries: dict[str, str], message: str) -> None:
    with pytest.raises(PhonemeError, match=None) as e:
        Lexicon(entries)
    assert message in str(e.value)


def test_an_ipa_entry_of_several_words_is_one_markup_per_word_keeping_the_phrase() -> None:
    out = Lexicon({"New York": "/nu ˈjɔɹk/"}).apply("New York!")
    assert out == (
        "<|phoneme_start|>New York|N UW1<|phoneme_end|> <|phoneme_start|>Y AO1 R K<|phoneme_end|>!"
    )
    assert tags.strip_tags(out) == "New York!"
