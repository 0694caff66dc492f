"""Streaming, tag-aware segmenter: LLM text fragments in, one S2 request text per segment out.

`push` each fragment as it arrives, `flush` at the end of a reply, `reset` on interruption.
The first segment of a reply leaves at the first clause boundary with enough words, so audio
starts early; so do the next ones until `eager_chars` of the reply have left, so the queued audio
outgrows the time to synthesize what follows; after that segments leave at sentence ends,
bounded in length. Tags are never cut, and a segment always has words to say.

A boundary is decided at the first word after it, not at the whitespace before that word
(as Pipecat's aggregator does): only then is it known whether a tag after the boundary opens
the next sentence or is a tag-only tail that must stay with this one, and whether a lowercase
word ("he said. and") continues the sentence. LLM tokenizers attach the space to the next
word (" World"), so this rarely costs a fragment.

Phoneme markup (`<|phoneme_start|>...<|phoneme_end|>`) is one word: never cut inside, and a
segment may start or end with it.

Speakers: a `<|speaker:N|>` tag after words ends the segment before it, so every segment has
one speaker, and every segment carries it, also one cut in the middle of a turn (a sentence
of speaker 1 after `<|speaker:1|> Hello there,`). A reply starts with speaker 0.

The decisions depend on the text alone, never on how it was cut into fragments: pushing a
reply token by token gives the same segments as pushing it in one piece.
"""

from __future__ import annotations

from dataclasses import dataclass

from s2_plugin import phonemes, tags
from s2_plugin.tags import MAX_TAG_CHARS

_SENTENCE_MARKS = frozenset(".!?…。！？")  # noqa: RUF001
_CJK_SENTENCE_MARKS = frozenset("。！？")  # noqa: RUF001
_CLAUSE_MARKS = frozenset(",;:—–，；：")  # noqa: RUF001
# Closing quotes and brackets stay with the mark before them: 'He said "Go."'
_CLOSERS = frozenset("\"'”’)»」』）】")  # noqa: RUF001
_RUN = _SENTENCE_MARKS | _CLAUSE_MARKS | _CLOSERS
# These end a clause by themselves. After the others only whitespace or a tag proves a boundary,
# because "3.14", "1,000", "10:30" and "example.com" run straight on.
_SPACELESS_MARKS = frozenset("。！？，；：—")  # noqa: RUF001
# Never followed by a sentence end: titles and Latin abbreviations ("Dr. Smith", "vs. Jones").
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "rev", "hon", "gen", "col"}
    | {"lt", "capt", "sgt", "gov", "sen", "rep", "pres", "fr", "vs", "cf", "al", "approx", "ca"}
)
# Followed by a number they are no sentence end ("No. 5"); followed by a word they may be.
_NUMBER_ABBREVIATIONS = frozenset(
    {"no", "nos", "vol", "vols", "fig", "figs", "pp", "ch", "sec", "art", "op", "pt", "nr"}
)
FIRST_MAX_WORDS = 10
"""Default words after which a reply's first segment is cut between words (0: only at a
clause end). At 50 tokens/s ten words are about 260 ms, as long as S2's first chunk under load:
waiting longer for a clause end would double first audio. Measured on the call load's replies
(bench/bench_first_clause.py): first token to first request p95 442 -> 260 ms; 29% of replies
cut; on the preview no change in word errors and a pause of about 170 ms at the cut."""
# Words that lead into what follows: a first segment cut between words never ends on one.
_LEADING_WORDS = frozenset(
    {"a", "an", "the", "and", "or", "but", "so", "to", "of", "in", "on", "at", "for", "with"}
    | {"by", "from", "that", "which", "who", "if", "as", "is", "are", "was", "be", "my", "your"}
    | {"our", "their", "its", "this", "these", "will", "would", "can", "could", "should", "i"}
)
# Longest phoneme markup the segmenter waits for: the most symbols, the word it keeps, markers.
_MAX_MARKUP_CHARS = phonemes.MAX_PHONES * 4 + 2 * MAX_TAG_CHARS
# A segment must hold a full-length tag plus a few words.
_MIN_MAX_CHARS = MAX_TAG_CHARS + 16


def _is_cjk(ch: str) -> bool:
    # Kana and Han ideographs: each counts as a word and may start a forced split.
    o = ord(ch)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF


def _tag_end(buf: str, i: int, final: bool) -> int | None:
    """End of the tag that opens at `buf[i]` (`[` or `<`); -1 if it is none; None if unknown yet.

    Like `tags.validate`, a tag is at most MAX_TAG_CHARS inside and has no line break, so a
    stray `[` holds text back for at most that many characters.
    """
    n = len(buf)
    if buf[i] == "[":
        close, start, banned = "]", i + 1, "[\n"
    else:
        if i + 1 == n:
            return -1 if final else None
        if buf[i + 1] != "|":
            return -1
        close, start, banned = "|>", i + 2, "\n"
    if close == "|>" and buf.startswith(phonemes.START, i):
        close, start = phonemes.END, i + len(phonemes.START)
        stop = start + _MAX_MARKUP_CHARS + len(close)
    else:
        stop = start + MAX_TAG_CHARS + len(close)
    window = buf[start:stop]
    k = window.find(close)
    inner = window if k < 0 else window[:k]
    if any(b in inner for b in banned):
        return -1
    if k >= 0:
        return start + k + len(close)
    return -1 if final or stop <= n else None


def _is_markup(buf: str, i: int, end: int) -> bool:
    """True when the tag `buf[i:end]` found by `_tag_end` is phoneme markup: a word."""
    return end > 0 and buf.startswith(phonemes.START, i)


def _no_sentence_end(buf: str, i: int) -> bool:
    """True when the single '.' at `buf[i]` ends an abbreviation, an initial or a list number."""
    k = i
    while k > 0 and i - k < 24 and (buf[k - 1].isalnum() or buf[k - 1] == "."):
        k -= 1
    word = buf[k:i]
    if not word:
        return False
    if "." in word:  # U.S., e.g., a.m., Ph.D.
        return all(0 < len(p) <= 2 and p.isalpha() for p in word.split("."))
    if word.isdigit():  # "1. Buy milk" at the start of a line
        return k == 0 or buf[k - 1] == "\n"
    if len(word) == 1:  # initials: "J. R. R. Tolkien"; but "so do I. Then"
        return word.isalpha() and word != "I"
    return word.lower() in _ABBREVIATIONS


@dataclass(frozen=True, slots=True)
class Segment:
    """One request's text, tags as written, and the speaker (cast index) who says it."""

    text: str
    speaker: int = 0


class Segmenter:
    """Cuts one reply's streamed text into segments for S2, one request each."""

    def __init__(
        self,
        *,
        first_min_words: int = 4,
        # Later segments are synthesized while earlier audio plays, so waiting costs no latency;
        # merging one- and two-word sentences ("Sure.") into the next gives S2 enough text for
        # natural prosody and saves a request.
        min_words: int = 3,
        # Ordinary sentences stay whole (LLM sentences rarely pass 200 characters); a run-on one
        # is cut before the audio of the previous segment runs out: at 50 tokens/s the LLM writes
        # about 200 characters per second, speech plays about 15.
        max_chars: int = 300,
        # Clause ends also end segments until this much of the reply has been cut. Early on
        # little audio is queued: after a short first clause, the rest of a long first sentence
        # would arrive, at 50 tokens/s, about when the clause finishes playing, and its audio
        # would start late. 100 characters are about 6 s of speech, by when audio is well ahead.
        eager_chars: int = 100,
        # A reply's first segment waits for a clause end; an LLM at 50 tokens/s writes a word
        # every 26 ms, so a long first clause holds first audio back. After this many words the
        # first segment is cut between words instead (0: never). bench/bench_first_clause.py
        # measures the wait saved and the cost in word errors and pauses at the cut.
        first_max_words: int = FIRST_MAX_WORDS,
    ) -> None:
        for name, value, least in (
            ("first_max_words", first_max_words, 0),
            ("first_min_words", first_min_words, 1),
            ("min_words", min_words, 1),
            ("max_chars", max_chars, _MIN_MAX_CHARS),
            ("eager_chars", eager_chars, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
        self._first_min_words = first_min_words
        self._first_max_words = first_max_words
        self._min_words = min_words
        self._max_chars = max_chars
        self._eager_chars = eager_chars
        self.reset()

    def reset(self) -> None:
        """Drop all pending text (an interruption); the next text starts a new reply."""
        self._buf = ""
        self._pos = 0  # next character of _buf to scan
        self._first = True  # no segment of this reply has left yet
        self._cut_chars = 0  # characters of this reply in segments that have left
        self._speaker = 0  # who speaks at the start of the current segment
        self._new_segment()

    def _new_segment(self) -> None:
        self._words = 0  # words in _buf[:_pos], tags excluded
        self._in_word = False
        self._lead: int | None = None  # index of the segment's first non-space character
        self._last_clause: int | None = None  # latest boundary that did not qualify
        self._last_space: int | None = None  # latest whitespace (or CJK start) after a word
        self._overflow = False  # over max_chars with no place to cut: cut at the next one
        self._split: int | None = None  # decided end of the segment, waiting for the next word
        self._cancel_on_lower = False  # a lowercase next word means the sentence goes on
        self._cancel_on_digit = False  # "No. 5": a number next means it was an abbreviation
        self._opening_speaker: int | None = None  # a speaker tag before the segment's words

    def push(self, fragment: str) -> list[Segment]:
        """Add one fragment; return the segments it completes, at once."""
        if not isinstance(fragment, str):
            raise ValueError(f"push takes text (str), got {type(fragment).__name__}")
        if not fragment:
            return []
        self._buf += fragment
        return self._scan(final=False)

    def flush(self) -> list[Segment]:
        """End the reply: return the remaining segments (possibly none) and start afresh.

        A tail without words (tags, punctuation) joins the segment before it; a reply without
        any words yields nothing.
        """
        out = self._scan(final=True)
        if self._words:
            out.append(self._segment(self._buf.strip()))
        self.reset()
        return out

    def _segment(self, text: str) -> Segment:
        """`text` as a Segment: its speaker is the last speaker tag before its first word."""
        if self._opening_speaker is not None:
            self._speaker = self._opening_speaker
        return Segment(text, self._speaker)

    def _scan(self, final: bool) -> list[Segment]:
        """Read on from `_pos`; cut off each segment that is complete. A tag or a punctuation run
        that may still grow stops the scan until more text (or `final`) comes."""
        out: list[Segment] = []
        i: int | None = self._pos
        while i is not None and i < len(self._buf):
            self._pos = i
            i = self._after_cut(i, final, out) if self._split is not None else self._step(i, final)
        if i is not None:
            self._pos = i
        return out

    def _after_cut(self, i: int, final: bool, out: list[Segment]) -> int | None:
        """Past a boundary, whitespace, tags and punctuation wait for the next word, which
        confirms the cut (or, lower case after an abbreviation, cancels it)."""
        buf = self._buf
        c = buf[i]
        word_start = c.isalnum()
        if c == "<":
            end = _tag_end(buf, i, final)
            if end is None:
                return None
            word_start = _is_markup(buf, i, end)
        if word_start:
            assert self._split is not None
            if (self._cancel_on_lower and c.islower()) or (self._cancel_on_digit and c.isdigit()):
                self._last_clause = self._split
                self._split = None
                return self._last_clause
            out.append(self._segment(buf[: self._split].strip()))
            self._cut_chars += self._split
            self._buf = buf[self._split :]
            self._first = False
            self._new_segment()
            return 0  # rescan what follows the cut as the new segment's start
        if c == "[" or c == "<":
            end = _tag_end(buf, i, final)
            if end is None:
                return None
            if end > 0 and tags.speaker_of(buf[i:end]) is not None:
                # A new speaker: the next word starts a segment whatever it looks like.
                self._cancel_on_lower = self._cancel_on_digit = False
            return end if end > 0 else i + 1
        return i + 1

    def _step(self, i: int, final: bool) -> int | None:
        """One character (or tag, or punctuation run) of the segment being built."""
        buf = self._buf
        c = buf[i]
        if self._lead is None and not c.isspace():
            self._lead = i
        if c.isalnum():
            if _is_cjk(c):
                if self._words:
                    self._candidate_space(i)
                self._words += 1
                self._in_word = False
            elif not self._in_word:
                self._words += 1
                self._in_word = True
            end = i + 1
        elif c.isspace():
            self._in_word = False
            if c == "\n" and self._words >= self._need():
                # A line break ends a sentence (lists, paragraphs).
                self._split_at(i)
            elif c == "\n" and self._words:
                self._candidate_clause(i)
            elif self._words:
                self._candidate_space(i)
            return i + 1
        elif c in _SENTENCE_MARKS or c in _CLAUSE_MARKS:
            return self._punctuation(i, final)
        elif c == "[" or c == "<":
            return self._tag(i, final)
        elif c != "'" and c != "’":  # noqa: RUF001 (an apostrophe keeps "don't" one word)
            self._in_word = False
            end = i + 1
        else:
            end = i + 1
        cut = self._force() if self._over(end) else None
        return end if cut is None else cut

    def _punctuation(self, i: int, final: bool) -> int | None:
        buf = self._buf
        j = i
        while j < len(buf) and buf[j] in _RUN:
            j += 1
        if j == len(buf) and not final:
            return None
        cut = self._force() if self._over(j) else None
        if cut is not None:
            return cut  # rescan from the cut as the next segment
        self._mark_run(buf, i, j)
        return j

    def _tag(self, i: int, final: bool) -> int | None:
        buf = self._buf
        tag_end = _tag_end(buf, i, final)
        if tag_end is None:
            return None
        if _is_markup(buf, i, tag_end):
            self._words += 0 if self._in_word else 1
            self._in_word = True
            cut = self._force() if self._over(tag_end) else None
            return tag_end if cut is None else cut
        self._in_word = False
        speaker = tags.speaker_of(buf[i:tag_end]) if tag_end > 0 else None
        if speaker is not None and self._words:
            self._split_at(i)  # a segment holds one speaker: cut before the switch
            return tag_end
        if speaker is not None:
            self._opening_speaker = speaker
        end = tag_end if tag_end > 0 else i + 1
        cut = self._force() if self._over(end) else None
        return end if cut is None else cut

    def _eager(self) -> bool:
        """True while clause ends may end a segment: the first one, and early in the reply."""
        return self._first or self._cut_chars < self._eager_chars

    def _need(self) -> int:
        return self._first_min_words if self._first else self._min_words

    def _over(self, end: int) -> bool:
        """True when the segment would pass max_chars if it ran to `end`."""
        return self._lead is not None and end - self._lead > self._max_chars

    def _mark_run(self, buf: str, i: int, j: int) -> None:
        """Judge the run of marks and closers `buf[i:j]`: a boundary, a candidate, or nothing."""
        self._in_word = False
        run = buf[i:j]
        nxt = buf[j] if j < len(buf) else " "
        if not (nxt.isspace() or nxt in "[<" or any(m in _SPACELESS_MARKS for m in run)):
            return
        sentence = any(m in _SENTENCE_MARKS for m in run)
        single_period = run[0] == "." and run[1:2] != "."
        if sentence and single_period and _no_sentence_end(buf, i):
            return
        if (sentence and self._words >= self._need()) or (
            not sentence and self._eager() and self._words >= self._first_min_words
        ):
            self._split = j
            # CJK marks are unambiguous; after Latin ones a lowercase word continues the sentence.
            self._cancel_on_lower = sentence and not any(m in _CJK_SENTENCE_MARKS for m in run)
            if single_period:
                k = i
                while k > 0 and buf[k - 1].isalpha():
                    k -= 1
                self._cancel_on_digit = buf[k:i].lower() in _NUMBER_ABBREVIATIONS
            else:
                self._cancel_on_digit = False
        elif self._words:
            self._candidate_clause(j)

    def _candidate_space(self, i: int) -> None:
        before, self._last_space = self._last_space, i
        if self._overflow:
            self._split_at(i)
        elif self._first and 0 < self._first_max_words <= self._words >= self._first_min_words:
            # A long first clause: cut between words, before a word that leads into the rest
            # ("this morning | and should arrive") rather than after it.
            word = self._buf[before if before is not None else 0 : i].strip().lower()
            leads = word in _LEADING_WORDS and before is not None and self._words > 1
            self._split_at(before if leads and before is not None else i)

    def _candidate_clause(self, j: int) -> None:
        self._last_clause = j
        if self._overflow:
            self._split_at(j)

    def _split_at(self, k: int) -> None:
        self._split, self._cancel_on_lower, self._cancel_on_digit = k, False, False

    def _force(self) -> int | None:
        """The segment is full: cut it at the best earlier place and return it, if there is one."""
        assert self._lead is not None
        clause, space = self._last_clause, self._last_space
        # A clause boundary sounds better than a bare space, unless it would leave a stub.
        if clause is not None and (space is None or clause - self._lead >= self._max_chars // 2):
            cut = clause
        elif space is not None:
            cut = space
        else:
            self._overflow = True  # one long word or tag run: cut at the next chance
            return None
        self._split_at(cut)
        return cut


def split(text: str, max_chars: int) -> list[str]:
    """`text` whole if it fits in `max_chars`, else in order-kept parts that each fit.

    For text that arrives all at once (a speech request, a script): parts end at sentence ends
    where they can, else at clause ends, else between words, and hold as many sentences as fit.
    A run with no space to cut at is cut hard. Parts without words (stray marks) are dropped.
    A part that starts inside another speaker's turn starts with that speaker's tag.
    """
    if len(text) <= max_chars:
        return [text]
    segmenter = Segmenter(
        first_min_words=1,
        min_words=1,
        max_chars=max(max_chars, _MIN_MAX_CHARS),
        eager_chars=0,
        first_max_words=0,
    )
    parts: list[str] = []
    speaker = 0
    for seg in segmenter.push(text) + segmenter.flush():
        for start in range(0, len(seg.text), max_chars):
            chunk = seg.text[start : start + max_chars]
            if parts and seg.speaker == speaker and len(parts[-1]) + 1 + len(chunk) <= max_chars:
                parts[-1] += " " + chunk
                continue
            if seg.speaker and not chunk.startswith(tags.speaker_tag(seg.speaker)):
                chunk = f"{tags.speaker_tag(seg.speaker)} {chunk}"
            parts.append(chunk)
            speaker = seg.speaker
    return [p for p in parts if tags.has_speech(p)]
