"""A pronunciation lexicon: words and how to say them, applied to text as S2 phoneme markup.

Entries are Arpabet ("M EH0 T F AO1 R M IH0 N") or IPA ("mɛtˈfɔɹmɪn"); a bad one is refused
when the lexicon is made, with the word and what is wrong. The sidecar keeps one for all
voices and one per persona (so every client, the OpenAI SDK's included, says the same words
right); LiveKit's `s2.TTS(pronunciations=...)` is one too.
"""

# ruff: noqa: RUF002  (IPA is written in IPA letters)

from __future__ import annotations

import re
from collections.abc import Mapping

from s2_plugin import phonemes, tags
from s2_plugin.phonemes import PhonemeError


class Lexicon:
    """Each whole word (any case) in a text becomes phoneme markup that keeps the word.

    Words match as Pipecat's pronunciation transform matches them: whole, longest first,
    never part of a longer or hyphenated word. Words inside tags and markup are left alone.
    """

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        checked: dict[str, list[str]] = {}
        for word, pronunciation in (entries or {}).items():
            if not isinstance(word, str) or not isinstance(pronunciation, str):
                raise PhonemeError(
                    f"lexicon entry {word!r}: word and pronunciation must be text (Arpabet or IPA)"
                )
            word = word.strip()
            if not any(c.isalnum() for c in word) or any(c in "[]<>|\n" for c in word):
                raise PhonemeError(f"lexicon word {word!r} is no word; write it as it is spelled")
            checked[word] = phonemes.arpabet_words(pronunciation, f"lexicon entry {word!r}")
        self._set(checked)

    @classmethod
    def usable(cls, entries: Mapping[str, str]) -> tuple[Lexicon, list[str]]:
        """The entries that can be said, and the words of those that cannot (a phone Arpabet
        has no symbol for): as Pipecat does, those are reported and said as written."""
        good: dict[str, str] = {}
        bad: list[str] = []
        for word, pronunciation in entries.items():
            try:
                cls({word: pronunciation})
            except PhonemeError:
                bad.append(word)
            else:
                good[word] = pronunciation
        return cls(good), bad

    def _set(self, checked: dict[str, list[str]]) -> None:
        self.entries = checked
        """Word as written -> checked Arpabet, one item per word said."""
        self._by_lower = {w.lower(): a for w, a in checked.items()}
        words = sorted(self._by_lower, key=len, reverse=True)
        self._pattern = (
            re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, words)) + r")(?![\w-])", re.I)
            if words
            else None
        )

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __or__(self, other: Lexicon) -> Lexicon:
        """This lexicon with `other`'s entries added; `other` wins on a word both hold."""
        merged = Lexicon()
        kept = {w: a for w, a in self.entries.items() if w.lower() not in other._by_lower}
        merged._set({**kept, **other.entries})
        return merged

    def apply(self, text: str) -> str:
        """`text` with every lexicon word replaced by markup that keeps the word."""
        if self._pattern is None:
            return text
        out: list[str] = []
        last = 0
        for tag in tags.find_tags(text):
            out += [self._sub(text[last : tag.start]), tag.raw]
            last = tag.end
        out.append(self._sub(text[last:]))
        return "".join(out)

    def _sub(self, text: str) -> str:
        assert self._pattern is not None
        by_lower = self._by_lower
        return self._pattern.sub(
            lambda m: phonemes.markups(m.group(), by_lower[m.group().lower()]), text
        )
