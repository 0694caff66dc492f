"""S2 inline tags: `[whisper]`-style cues, `<|speaker:N|>` speaker tags and phoneme markup.

Tags reach S2 verbatim; they are validated here, stripped from transcripts, and a persona's
default style is applied as a leading tag. Phoneme markup (`s2_plugin.phonemes`) is a tag
that says a word: a transcript shows the word it keeps, and it counts as speech.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from s2_plugin import phonemes

MAX_TAG_CHARS = 64
"""Longest cue inside `[...]`; S2 reads free-form cues, but a long one is almost always a bug."""

_SPEAKER_RE = re.compile(r"<\|speaker:(\d{1,2})\|>")
_SPEAKER_SPACED_RE = re.compile(r"\s*<\|speaker:\d{1,2}\|>\s*")
_TAG_RE = re.compile(phonemes.MARKUP_RE.pattern + r"|\[[^\[\]\n]*\]|<\|speaker:\d{1,2}\|>")
_SPACES_RE = re.compile(r"\s+")
_STRAY_RE = re.compile(r"<\|phoneme_(?:start|end)\|>|<\||\|>|[\[\]]|[\x00-\x08\x0b-\x1f\x7f]")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,.;:!?])")


class TagError(ValueError):
    """Text whose tags S2 cannot read; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Tag:
    """One tag found in a text: its raw form and where it sits."""

    raw: str
    start: int
    end: int

    @property
    def is_speaker(self) -> bool:
        return self.raw.startswith("<|speaker")

    @property
    def is_phonemes(self) -> bool:
        return self.raw.startswith(phonemes.START)


def find_tags(text: str) -> list[Tag]:
    """Return every complete tag in `text`, in order."""
    return [Tag(m.group(), m.start(), m.end()) for m in _TAG_RE.finditer(text)]


def validate(text: str) -> None:
    """Raise `TagError` unless every tag in `text` is complete, short and printable."""
    for ch in text:
        if ch not in "\n\t" and unicodedata.category(ch) == "Cc":
            raise TagError(f"text contains the control character {ch!r}; remove it")
    try:
        phonemes.validate(text)
    except phonemes.PhonemeError as e:
        raise TagError(str(e)) from None
    problem = _unbalanced(text)
    if problem:
        raise TagError(problem)
    for tag in find_tags(text):
        if tag.is_speaker or tag.is_phonemes:
            continue
        inner = tag.raw[1:-1].strip()
        if not inner:
            raise TagError(
                f"empty tag {tag.raw!r} at position {tag.start}; write a cue like [whisper]"
            )
        if "<|" in inner or "|>" in inner:
            raise TagError(
                f"tag {tag.raw[:20]!r} at position {tag.start} holds S2 markup; a cue is plain "
                "words such as [whisper], and <|speaker:N|> stands outside brackets"
            )
        if len(inner) > MAX_TAG_CHARS:
            raise TagError(
                f"tag {tag.raw[:20]!r}... at position {tag.start} is {len(inner)} characters; "
                f"keep cues to {MAX_TAG_CHARS} characters or fewer"
            )
    leftover = _TAG_RE.sub("", text)
    if "<|" in leftover or "|>" in leftover:
        raise TagError("malformed speaker tag; write it as <|speaker:N|> with N from 0 to 99")


def repair(text: str) -> str:
    """Make LLM output speakable: good tags kept, stray brackets and control characters dropped.

    An LLM sometimes writes a lone '[' or an overlong bracketed aside; S2 would read those as
    broken cues, and refusing them would silence the reply.
    """
    out: list[str] = []
    last = 0
    for m in _TAG_RE.finditer(text):
        out.append(_STRAY_RE.sub("", text[last : m.start()]))
        inner = m.group()[1:-1].strip()
        if m.group().startswith(phonemes.START):
            out.append(m.group() if _readable(m.group()) else phonemes.show(m.group()))
        elif m.group().startswith("<|") or 0 < len(inner) <= MAX_TAG_CHARS:
            out.append(m.group())
        else:
            out.append(inner)
        last = m.end()
    out.append(_STRAY_RE.sub("", text[last:]))
    return "".join(out)


def _readable(markup: str) -> bool:
    try:
        phonemes.validate(markup)
    except phonemes.PhonemeError:
        return False
    return True


def _unbalanced(text: str) -> str | None:
    opened: int | None = None
    for i, ch in enumerate(text):
        if ch == "[":
            if opened is not None:
                return f"'[' at position {i} opens a tag inside a tag; close the first with ']'"
            opened = i
        elif ch == "]":
            if opened is None:
                return f"']' at position {i} closes no tag; remove it or add the '['"
            opened = None
        elif ch == "\n" and opened is not None:
            return f"tag opened at position {opened} runs past a line end; close it with ']'"
    if opened is not None:
        return f"tag opened at position {opened} is never closed; add ']'"
    return None


_MASK = 0xE000  # Unicode's private use area: no text transform reads or writes it
_MASK_RE = re.compile("[\ue000-\uf8ff]")


def mask(text: str) -> tuple[str, list[str]]:
    """`text` with each tag (cue, speaker tag, phoneme markup) as one private-use character,
    and the tags, for `unmask`: a text transform between the two (numbers to words,
    acronyms spelt out) cannot touch them ("<|speaker:1|>" is no "<|speaker:one|>")."""
    found: list[str] = []

    def hide(m: re.Match[str]) -> str:
        found.append(m.group())
        return chr(_MASK + len(found) - 1)

    return _TAG_RE.sub(hide, text), found


def unmask(text: str, found: list[str]) -> str:
    """`text` with the tags `mask` hid put back (one a transform dropped stays dropped)."""

    def show(m: re.Match[str]) -> str:
        i = ord(m.group()) - _MASK
        return found[i] if i < len(found) else m.group()

    return _MASK_RE.sub(show, text)


def strip_tags(text: str) -> str:
    """The words alone, for transcripts and the LLM context: tags removed, spacing tidied."""
    bare = _TAG_RE.sub(" ", phonemes.show(text))
    bare = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", bare)
    return _SPACES_RE.sub(" ", bare).strip()


def has_speech(text: str) -> bool:
    """True when `text` holds something to say besides tags, spaces and punctuation."""
    return phonemes.MARKUP_RE.search(text) is not None or any(
        ch.isalnum() for ch in _TAG_RE.sub("", text)
    )


def style_cue(style: str) -> str:
    """The one tag a style becomes: `warm` and `[warm]` are both `[warm]`.

    The single rule for styles, wherever one is given (a persona, a request, a prompt guide);
    raises `TagError` saying what to write instead.
    """
    text = style.strip()
    cue = text if text.startswith("[") else f"[{text}]"
    try:
        validate(cue)
    except TagError as e:
        raise TagError(f"the style {style!r}: {e}; write a cue like 'warm' or '[warm]'") from None
    found = find_tags(cue)
    if len(found) != 1 or found[0].raw != cue or found[0].is_speaker:
        raise TagError(f"the style {style!r} is not one cue; write a cue like 'warm' or '[warm]'")
    return cue


def apply_style(text: str, style: str | None) -> str:
    """Prefix the persona's default style as a tag, unless the text already opens with a cue."""
    if not style:
        return text
    cue = style_cue(style)
    stripped = text.lstrip()
    if stripped.startswith("[") or _SPEAKER_RE.match(stripped):
        return text
    return f"{cue} {stripped}"


def speakers(text: str) -> list[int]:
    """Speaker numbers named by `<|speaker:N|>` tags, in order of appearance."""
    return [int(m.group(1)) for m in _SPEAKER_RE.finditer(text)]


def turns(text: str) -> list[tuple[int, str]]:
    """`text` cut at its speaker tags: (speaker, words) in order, speaker 0 until the first tag.

    Turns without words are dropped; the words keep their other tags.
    """
    out: list[tuple[int, str]] = []
    speaker, start = 0, 0
    for m in _SPEAKER_RE.finditer(text):
        out.append((speaker, text[start : m.start()]))
        speaker, start = int(m.group(1)), m.end()
    out.append((speaker, text[start:]))
    return [(n, words.strip()) for n, words in out if has_speech(words)]


def speaker_of(tag: str) -> int | None:
    """N when `tag` is exactly `<|speaker:N|>`, else None."""
    m = _SPEAKER_RE.fullmatch(tag)
    return int(m.group(1)) if m else None


def strip_speakers(text: str) -> str:
    """`text` without its speaker tags (other tags kept), for a request in one voice."""
    return _SPEAKER_SPACED_RE.sub(" ", text).strip()


def speaker_tag(speaker: int) -> str:
    return f"<|speaker:{speaker}|>"
