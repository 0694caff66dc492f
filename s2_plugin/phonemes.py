"""S2's phoneme markup: one word said as CMU Arpabet, `<|phoneme_start|>R EH1 D<|phoneme_end|>`.

S2-Pro's tokenizer holds the two markers as special tokens (SGLang-Omni 0.1.9,
`models/fishaudio_s2_pro/fish_speech/tokenizer.py`: PHONEME_START_TOKEN, PHONEME_END_TOKEN),
which reach the model from the request's text as they are (`models/fishaudio_s2_pro/
tokenizer.py`, `InferencePromptEncoder.append_text`: the HF tokenizer reads added special tokens
in text, as it reads `<|speaker:N|>`),
and Fish documents English phoneme control as CMU Arpabet between them: uppercase symbols
split by spaces, a vowel's stress as a digit (0 none, 1 primary, 2 secondary); IPA is not read.

Inside this package the markup may also keep the word it stands for, before a `|`:
`<|phoneme_start|>Metformin|M EH0 T F AO1 R M IH0 N<|phoneme_end|>`. Transcripts, word timings
and captions then show "Metformin" (`tags.strip_tags`), never its phonemes; `to_s2` drops the
word before the text reaches S2. Markup written without a word shows as nothing.

IPA comes in from the frameworks (Pipecat's `format_pronunciation(word, ipa)`, LiveKit's
`pronunciations=`) and from lexicons. The conversion is defined once, here, over phones as
Pipecat's `pipecat.utils.text.phonemes.ipa_phones` writes them (a phone per item, length marks
and diacritics on it, stress marks as items of their own); the Pipecat adapter splits with
Pipecat's own parser, and `ipa_phones` here is a small splitter with the same output for the
paths that have no Pipecat (LiveKit, the sidecar). A phone that Arpabet cannot write (a
glottal stop, a French nasal vowel, a German ach-sound) makes the conversion None: the word is
then better said as written than said wrong.
"""

# ruff: noqa: RUF001, RUF002  (IPA is written in IPA letters)

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

START = "<|phoneme_start|>"
END = "<|phoneme_end|>"
MAX_PHONES = 40
"""Symbols in one markup: a long word has about 15; more is almost always a missing END."""

# CMUdict's cmudict.symbols: 15 vowels, 24 consonants.
VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW"})
VOWELS |= {"OY", "UH", "UW"}
CONSONANTS = frozenset({"B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG"})
CONSONANTS |= {"P", "R", "S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH"}

MARKUP_RE = re.compile(re.escape(START) + r"(.*?)" + re.escape(END), re.S)
_ARPABET_RE = re.compile(r"[A-Za-z0-9\s]+")

PRIMARY, SECONDARY = "ˈ", "ˌ"

# IPA phone (length marks and diacritics removed) -> Arpabet. American and British dictionary
# notation both; the flap is T, as CMUdict writes "water".
_IPA = {
    "ɑ": "AA", "a": "AA", "ɒ": "AA", "æ": "AE", "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ɔ": "AO",
    "aʊ": "AW", "aɪ": "AY", "ɛ": "EH", "e": "EH", "ɝ": "ER", "ɚ": "ER", "ɜ": "ER", "eɪ": "EY",
    "ɪ": "IH", "ᵻ": "IH", "ɨ": "IH", "i": "IY", "oʊ": "OW", "o": "OW", "ɔɪ": "OY", "ʊ": "UH",
    "u": "UW", "ʉ": "UW",
    "b": "B", "tʃ": "CH", "d": "D", "ð": "DH", "f": "F", "ɡ": "G", "h": "HH", "dʒ": "JH",
    "k": "K", "l": "L", "ɫ": "L", "m": "M", "n": "N", "ŋ": "NG", "p": "P", "ɹ": "R", "r": "R",
    "ɾ": "T", "s": "S", "ʃ": "SH", "t": "T", "θ": "TH", "v": "V", "w": "W", "ʍ": "W", "j": "Y",
    "z": "Z", "ʒ": "ZH", "ts": "T S", "dz": "D Z",
}  # fmt: skip
# Two phones Pipecat's parser leaves apart that Arpabet writes as one: British "go" (əʊ).
_PAIRS = {("ə", "ʊ"): "OW"}
# Marks that change no English phoneme: length, aspiration, labialisation, palatalisation.
_IGNORED = frozenset("ːˑʰʷʲ\u0325\u031a\u032a\u0361")  # voiceless, unreleased, dental, tie
_SYLLABIC = frozenset("\u0329\u030d")  # n̩: the consonant is a syllable (AH0 N; ɹ̩ is ER)
# Notation only (as Pipecat's normalize_ipa): ligatures and ASCII look-alikes, syllable breaks.
_NOTATION = [
    ("\u035c", "\u0361"), ("ʧ", "tʃ"), ("ʤ", "dʒ"), ("t\u0361ʃ", "tʃ"), ("d\u0361ʒ", "dʒ"),
    ("ʦ", "t\u0361s"), ("ʣ", "d\u0361z"), ("g", "ɡ"), ("'", PRIMARY), (":", "ː"), (".", ""),
]  # fmt: skip
_MULTI = ("tʃ", "dʒ", "aɪ", "aʊ", "ɔɪ", "oʊ", "eɪ")


class PhonemeError(ValueError):
    """Phoneme markup or a pronunciation S2 cannot read; the message says what to change."""


def markup(arpabet: str, word: str | None = None) -> str:
    """`arpabet` as S2 markup, keeping `word` for transcripts when given."""
    inner = check_arpabet(arpabet)
    return f"{START}{word}|{inner}{END}" if word else f"{START}{inner}{END}"


def check_arpabet(arpabet: str) -> str:
    """`arpabet` with its spacing tidied; `PhonemeError` saying which symbol is wrong."""
    symbols = arpabet.split()
    if not symbols:
        raise PhonemeError("empty phoneme markup; write CMU Arpabet such as 'R EH1 D'")
    if len(symbols) > MAX_PHONES:
        raise PhonemeError(
            f"phoneme markup holds {len(symbols)} symbols; it is one word (at most {MAX_PHONES})"
            f", so close it with {END}"
        )
    for s in symbols:
        base, digit = (s[:-1], s[-1]) if s[-1:].isdigit() else (s, "")
        if base in VOWELS and digit in ("", "0", "1", "2"):
            continue
        if base in CONSONANTS and not digit:
            continue
        if base.upper() in VOWELS | CONSONANTS and base != base.upper():
            hint = f"write it in capitals, {s.upper()!r}"
        elif base in CONSONANTS:
            hint = "only vowels take a stress digit"
        elif base in VOWELS:
            hint = "stress digits are 0, 1 and 2"
        else:
            hint = "IPA is not read: write Arpabet, such as 'M EH0 T F AO1 R M IH0 N'"
        raise PhonemeError(f"{s!r} is not a CMU Arpabet symbol; {hint}")
    return " ".join(symbols)


def validate(text: str) -> None:
    """Raise `PhonemeError` unless every phoneme markup in `text` is closed and reads as Arpabet."""
    i = 0
    while (start := text.find(START, i)) >= 0 or text.find(END, i) >= 0:
        end_at = text.find(END, i)
        if start < 0 or (0 <= end_at < start):
            raise PhonemeError(f"{END} at position {end_at} closes no {START}; remove it")
        end = text.find(END, start)
        if end < 0:
            raise PhonemeError(f"{START} at position {start} is never closed; add {END}")
        inner = text[start + len(START) : end]
        if START in inner:
            raise PhonemeError(
                f"{START} at position {start} opens markup inside markup; close the first "
                f"with {END}"
            )
        _parse_inner(inner, start)
        i = end + len(END)


def _parse_inner(inner: str, at: int) -> tuple[str | None, str]:
    word, _, arpabet = inner.rpartition("|")
    if "\n" in inner:
        raise PhonemeError(f"phoneme markup at position {at} runs past a line end; close it")
    if word and (not any(c.isalnum() for c in word) or any(c in "[]<>|" for c in word)):
        raise PhonemeError(f"phoneme markup at position {at} keeps {word!r}, which is no word")
    try:
        return word.strip() or None, check_arpabet(arpabet)
    except PhonemeError as e:
        raise PhonemeError(f"phoneme markup at position {at}: {e}") from None


def to_s2(text: str) -> str:
    """`text` as S2 reads it: every markup's kept word dropped, its Arpabet tidied."""
    return MARKUP_RE.sub(lambda m: f"{START}{_parse_inner(m.group(1), m.start())[1]}{END}", text)


def show(text: str) -> str:
    """`text` with every markup replaced by the word it keeps (nothing when it keeps none)."""
    return MARKUP_RE.sub(lambda m: m.group(1).rpartition("|")[0].strip(), text)


def ipa_phones(ipa: str) -> list[str]:
    """One IPA word split into phones and stress marks, as Pipecat's `ipa_phones` splits it."""
    ipa = unicodedata.normalize("NFC", ipa.strip())
    if len(ipa) >= 2 and (ipa[0], ipa[-1]) in (("/", "/"), ("[", "]")):
        ipa = ipa[1:-1]
    for old, new in _NOTATION:
        ipa = ipa.replace(old, new)
    ipa = "".join(ipa.split())
    phones: list[str] = []
    i = 0
    while i < len(ipa):
        if ipa.startswith("\u0361", i + 1) and i + 2 < len(ipa):
            phone, i = ipa[i] + ipa[i + 2], i + 3
        else:
            phone = next((m for m in _MULTI if ipa.startswith(m, i)), ipa[i])
            i += len(phone)
        while i < len(ipa) and (ipa[i] in "ːˑ" or unicodedata.category(ipa[i]) == "Mn"):
            phone += ipa[i]
            i += 1
        phones.append(phone)
    return phones


def arpabet_from_phones(phones: Sequence[str]) -> str | None:
    """Split IPA phones (as `ipa_phones` gives them) as Arpabet with stress; None if unwritable."""
    try:
        return _convert(phones)
    except PhonemeError:
        return None


def ipa_to_arpabet(ipa: str) -> str | None:
    """One word's IPA as Arpabet with stress; None when a phone has no Arpabet symbol."""
    return arpabet_from_phones(ipa_phones(ipa))


def _convert(phones: Sequence[str]) -> str:
    """The conversion; `PhonemeError` names the phone Arpabet cannot write."""
    out: list[str] = []  # Arpabet symbols; vowels carry a stress slot filled below
    stress: list[str | None] = []  # per vowel in `out`: the mark written before it
    marked = False
    pending: str | None = None
    items = list(phones)
    k = 0
    while k < len(items):
        phone = items[k]
        k += 1
        if phone in (PRIMARY, SECONDARY):
            pending, marked = phone, True
            continue
        base = "".join(c for c in phone if c not in _IGNORED and c not in _SYLLABIC)
        if not base:
            continue  # a lone modifier (ʰ) changes no English phoneme
        if k < len(items) and (base, items[k].rstrip("ː")) in _PAIRS:
            base = _PAIRS[(base, items[k].rstrip("ː"))]
            k += 1
            symbols = [base]
        elif any(c in _SYLLABIC for c in phone) and base in _IPA:
            consonant = _IPA[base]
            symbols = ["ER"] if consonant == "R" else ["AH", consonant]
        elif base in _IPA and all(unicodedata.category(c) != "Mn" for c in base):
            symbols = _IPA[base].split()
        else:
            raise PhonemeError(f"Arpabet has no phone for IPA {phone!r}")
        for symbol in symbols:
            if symbol == "R" and out and out[-1] == "ER":
                continue  # "ɜːɹ": the vowel is already r-coloured
            out.append(symbol)
            if symbol in VOWELS:
                stress.append(pending)
                pending = None
    if not out:
        raise PhonemeError("the pronunciation holds no phones")
    vowels = iter(stress)
    digits = {PRIMARY: "1", SECONDARY: "2", None: "0"}
    if not marked:  # unmarked: a one-vowel word is stressed, a longer one's stress is unknown
        digits[None] = "1" if len(stress) == 1 else ""
    return " ".join(s + digits[next(vowels)] if s in VOWELS else s for s in out)


def is_arpabet(pronunciation: str) -> bool:
    """True when `pronunciation` is meant as Arpabet: ASCII with a capital or a digit (IPA
    has neither), so that a slip in it is reported as an Arpabet slip."""
    return _ARPABET_RE.fullmatch(pronunciation.strip()) is not None and any(
        c.isupper() or c.isdigit() for c in pronunciation
    )


def arpabet_words(pronunciation: str, what: str) -> list[str]:
    """A pronunciation written as Arpabet (one markup) or IPA (one per IPA word, as in
    "nu ˈjɔɹk"), as checked Arpabet; `PhonemeError` says what is wrong with `what`."""
    try:
        if is_arpabet(pronunciation):
            return [check_arpabet(pronunciation)]
        ipa = pronunciation.strip()
        if len(ipa) >= 2 and (ipa[0], ipa[-1]) in (("/", "/"), ("[", "]")):
            ipa = ipa[1:-1]
        words = [_convert(ipa_phones(word)) for word in ipa.split()]
        if not words:
            raise PhonemeError("the pronunciation is empty")
        return words
    except PhonemeError as e:
        raise PhonemeError(f"{what}: {e}") from None


def markups(word: str, arpabet: Sequence[str]) -> str:
    """`word` said as the Arpabet words: one markup each, the first keeping `word`."""
    return " ".join(markup(a, word if i == 0 else None) for i, a in enumerate(arpabet))
