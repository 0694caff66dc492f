"""Scripts for narration: `NAME: line` by hand, or S2's own speaker tags; cut into generations.

```
AVA: Welcome back to the show.
BEN: Thanks for having me. [laugh] It is good to be here.
```

Every non-blank line starts with a cast member's name (any case) and a colon. A script that
opens with a speaker tag is in S2's own multi-speaker form instead, and speaker N is the Nth
cast member; a turn runs to the next tag, over line ends:

```
<|speaker:0|> The harbour was quiet that night.
<|speaker:1|> Too quiet. [whisper] Did you hear that?
```
 `parts` packs
the turns, in order, into S2 inputs of at most `max_chars`, each in fish-speech's
multi-speaker form (turns joined by newlines, each opened by its speaker tag) and cut only
between turns or, inside a turn too long for one, between sentences.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from s2_plugin import tags
from s2_plugin.client import S2Client
from s2_plugin.personas import validate_cast
from s2_plugin.segment import split

PART_CHARS = 400
"""Characters per generation: about 27 s of speech, well inside S2's default budget of 1024
codec frames (47.6 s), so no part is cut short, and short enough to stream steadily."""

_LINE_RE = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:\s*(.*)")


class ScriptError(ValueError):
    """A script that cannot be narrated; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Turn:
    speaker: int
    text: str


@dataclass(frozen=True, slots=True)
class Part:
    """One generation: its S2 input and the turns (or pieces of turns) it holds."""

    index: int
    text: str
    turns: tuple[Turn, ...]


def parse(script: str, cast: Sequence[str]) -> list[Turn]:
    """The script's turns; `ScriptError` for an empty script or a line with no cast member."""
    names = {name.lower(): i for i, name in enumerate(validate_cast(cast))}
    if script.lstrip().startswith("<|speaker:"):
        return _parse_tagged(script, cast)
    turns = []
    for number, line in enumerate(script.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE_RE.fullmatch(line)
        if m is None:
            raise ScriptError(
                f"line {number} names no speaker: {line.strip()[:40]!r}; start it with a cast "
                f"member's name and a colon, such as '{cast[0].upper()}: ...'"
            )
        name, text = m.group(1), m.group(2).strip()
        if name.lower() not in names:
            raise ScriptError(
                f"line {number}: {name!r} is not in the cast ({', '.join(cast)}); "
                "add the persona to the cast or fix the name"
            )
        if tags.speakers(text):
            raise ScriptError(
                f"line {number} holds a speaker tag; start a new line with the speaker's name"
            )
        try:
            tags.validate(text)
        except tags.TagError as e:
            raise ScriptError(f"line {number}: {e}") from e
        if tags.has_speech(text):
            turns.append(Turn(names[name.lower()], text))
    if not turns:
        raise ScriptError("the script has no lines to speak; write lines like 'AVA: Hello.'")
    return turns


def _parse_tagged(script: str, cast: Sequence[str]) -> list[Turn]:
    """The turns of a script in S2's form: each speaker tag opens a turn."""
    try:
        tags.validate(script)
    except tags.TagError as e:
        raise ScriptError(str(e)) from e
    turns = []
    for speaker, text in tags.turns(script):
        if speaker >= len(cast):
            raise ScriptError(
                f"{tags.speaker_tag(speaker)} has no cast member: the cast is "
                f"{', '.join(f'{i}={name}' for i, name in enumerate(cast))}; "
                "add a persona to the cast or fix the number"
            )
        turns.append(Turn(speaker, text))
    if not turns:
        raise ScriptError("the script has no words to speak after its speaker tags")
    return turns


def tagged(text: str, cast: Sequence[str]) -> str:
    """`text` in S2's form: a `NAME: line` script as speaker tags, anything else unchanged.

    For a cast request's input, so that a script written either way can be sent as it is.
    """
    names = {name.lower() for name in cast}
    lines = [line for line in text.splitlines() if line.strip()]
    matches = [_LINE_RE.fullmatch(line) for line in lines]
    if not lines or not all(m and m.group(1).lower() in names for m in matches):
        return text
    return _render(parse(text, cast))


def parts(turns: Sequence[Turn], max_chars: int = PART_CHARS) -> list[Part]:
    """Pack `turns` in order into parts of at most `max_chars` (a sentence longer than that is
    cut by the segmenter's own rules)."""
    # The sidecar's own cut for long text: sentence ends first, then clauses, then words.
    pieces = [Turn(t.speaker, s) for t in turns for s in split(t.text, max_chars)]
    out: list[Part] = []
    held: list[Turn] = []
    for piece in pieces:
        if held and len(_render([*held, piece])) > max_chars:
            out.append(Part(len(out), _render(held), tuple(_merge(held))))
            held = []
        held.append(piece)
    if held:
        out.append(Part(len(out), _render(held), tuple(_merge(held))))
    return out


def _merge(pieces: list[Turn]) -> list[Turn]:
    """Consecutive pieces of one speaker are one turn again."""
    merged: list[Turn] = []
    for piece in pieces:
        if merged and merged[-1].speaker == piece.speaker:
            merged[-1] = Turn(piece.speaker, f"{merged[-1].text} {piece.text}")
        else:
            merged.append(piece)
    return merged


def _render(pieces: list[Turn]) -> str:
    """fish-speech's form: each turn opened by its speaker tag, turns joined by newlines."""
    return "\n".join(tags.speaker_tag(t.speaker) + t.text for t in _merge(pieces))


async def narrate(
    client: S2Client, planned: Sequence[Part], cast: Sequence[str], **params: Any
) -> AsyncIterator[tuple[Part, bytes]]:
    """Speak the parts of a script (`parts(parse(script, cast))`) in order: (part, PCM chunk).

    Each part is one cast request, so on S2 each is one generation with the whole cast in its
    context. The chunks are 44.1 kHz int16 mono; written one after another they are the
    narration, with no sample lost or added at the joins. `params` are `SpeechRequest` fields.
    """
    for part in planned:
        async for pcm in client.speech(part.text, cast=list(cast), **params):
            yield part, pcm
