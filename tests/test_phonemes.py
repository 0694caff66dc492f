"""S2 phoneme markup: checking it, IPA to Arpabet, and what transcripts show."""

# ruff: noqa: RUF001  (IPA is written in IPA letters)

from __future__ import annotations

import pytest
from support.pronunciations import COMMON

from s2_plugin import phonemes
from s2_plugin.phonemes import PhonemeError

MET = "<|phoneme_start|>Metformin|M EH0 T F AO1 R M IH0 N<|phoneme_end|>"


@pytest.mark.parametrize(("word", "ipa", "arpabet"), COMMON, ids=[w for w, _, _ in COMMON])
def test_common_pronunciations_convert_or_say_they_cannot(
    word: str, ipa: str, arpabet: str | None
) -> None:
    assert phonemes.ipa_to_arpabet(ipa) == arpabet


def test_26_of_the_30_common_pronunciations_convert() -> None:
    converted = [w for w, ipa, _ in COMMON if phonemes.ipa_to_arpabet(ipa) is not None]
    assert (len(COMMON), len(converted)) == (30, 26)


@pytest.mark.parametrize(
    ("ipa", "arpabet"),
    [
        ("/ˈtʃɪ.kən/", "CH IH1 K AH0 N"),  # slashes, syllable break
        ("ʧiz", "CH IY1 Z"),  # ligature; one vowel, no mark: stressed
        ("'pizza", None),  # ASCII z and i are IPA too, but "zz" is fine: see below
        ("ˈpiːt͡sə", "P IY1 T S AH0"),  # tied affricate
        ("ˈbʌtn̩", "B AH1 T AH0 N"),  # syllabic n
        ("ˈbɝːd", "B ER1 D"),
        ("bɜːɹd", "B ER1 D"),  # r-coloured twice over
        ("ɡəʊ", "G OW1"),  # British diphthong
        ("ˈwɔɾɚ", "W AO1 T ER0"),  # flap, as CMUdict
        ("ˈtʰeɪbəl", "T EY1 B AH0 L"),  # aspiration changes nothing
        ("ˈbʌʔn̩", None),  # glottal stop
        ("ˈbanana", "B AA1 N AA0 N AA0"),
        ("kəˈnædə", "K AH0 N AE1 D AH0"),
        ("ˈsɪti", "S IH1 T IY0"),
        ("ɛˈnoʊ", "EH0 N OW1"),
        ("", None),
    ],
)
def test_ipa_notation(ipa: str, arpabet: str | None) -> None:
    if ipa == "'pizza":
        arpabet = "P IY1 Z Z AA0"  # letters read as IPA, as Pipecat reads them
    assert phonemes.ipa_to_arpabet(ipa) == arpabet


def test_unknown_stress_is_left_out_not_guessed() -> None:
    assert phonemes.ipa_to_arpabet("bəˈnænə") == "B AH0 N AE1 N AH0"
    assert phonemes.ipa_to_arpabet("bənænə") == "B AH N AE N AH"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a <|phoneme_start|>R EH1 D", "never closed; add <|phoneme_end|>"),
        ("a <|phoneme_end|>", "closes no <|phoneme_start|>"),
        ("<|phoneme_start|>r eh1 d<|phoneme_end|>", "write it in capitals, 'R'"),
        ("<|phoneme_start|>ɹɛd<|phoneme_end|>", "IPA is not read"),
        ("<|phoneme_start|>R EH3 D<|phoneme_end|>", "stress digits are 0, 1 and 2"),
        ("<|phoneme_start|>R1 EH D<|phoneme_end|>", "only vowels take a stress digit"),
        ("<|phoneme_start|>Q EH D<|phoneme_end|>", "'Q' is not a CMU Arpabet symbol"),
        ("<|phoneme_start|><|phoneme_end|>", "empty phoneme markup"),
        ("<|phoneme_start|>R <|phoneme_start|>EH1 D<|phoneme_end|>", "markup inside markup"),
        ("<|phoneme_start|>R\nEH1 D<|phoneme_end|>", "runs past a line end"),
        ("<|phoneme_start|>.|R EH1 D<|phoneme_end|>", "which is no word"),
        ("<|phoneme_start|>" + "AH0 " * 41 + "<|phoneme_end|>", "one word"),
    ],
)
def test_bad_markup_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PhonemeError, match=None) as e:
        phonemes.validate(text)
    assert message in str(e.value)


def test_good_markup_passes_and_reaches_s2_without_its_word() -> None:
    text = f"Take {MET}, and <|phoneme_start|>R  EH1 D<|phoneme_end|> it."
    phonemes.validate(text)
    assert phonemes.to_s2(text) == (
        "Take <|phoneme_start|>M EH0 T F AO1 R M IH0 N<|phoneme_end|>, and "
        "<|phoneme_start|>R EH1 D<|phoneme_end|> it."
    )
    assert phonemes.show(text) == "Take Metformin, and  it."


def test_markup_keeps_the_word_and_checks_the_arpabet() -> None:
    assert phonemes.markup("M EH0 T F AO1 R M IH0 N", "Metformin") == MET
    with pytest.raises(PhonemeError):
        phonemes.markup("m eh0")


@pytest.mark.parametrize(
    ("entry", "arpabet"),
    [
        ("R EH1 D", ["R EH1 D"]),
        ("ɹɛd", ["R EH1 D"]),
        (" R   IY1 D ", ["R IY1 D"]),
        ("/nu ˈjɔɹk/", ["N UW1", "Y AO1 R K"]),
    ],
)
def test_a_pronunciation_is_arpabet_or_ipa(entry: str, arpabet: list[str]) -> None:
    assert phonemes.arpabet_words(entry, "read") == arpabet


def test_an_unwritable_pronunciation_names_the_phone() -> None:
    with pytest.raises(PhonemeError, match="Bach: Arpabet has no phone for IPA 'x'"):
        phonemes.arpabet_words("bɑːx", "Bach")
