"""Personas: a named voice = reference clip + its transcript (+ an optional default style)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from s2_plugin import tags

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

MAX_CLIP_BYTES = 20 * 1024 * 1024
"""An upload limit that fits 60 s of 48 kHz stereo 32-bit WAV, the longest clip accepted."""

MAX_TRANSCRIPT_CHARS = 2000


class PersonaError(ValueError):
    """A persona that cannot be registered; the message says what to change."""


def validate_name(name: str) -> str:
    """Return `name` if it is a safe persona name, else raise `PersonaError`."""
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise PersonaError(
            f"persona name {name!r} is not allowed; use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def content_hash(clip: bytes, transcript: str, style: str | None) -> str:
    """The identity of a persona's content: equal hashes mean the same registration."""
    h = hashlib.sha256()
    for part in (clip, transcript.strip().encode(), (style or "").encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


@dataclass(frozen=True)
class Persona:
    """A voice to register on the sidecar once and speak with afterwards.

    `clip` is a path to, or the bytes of, a 10-30 s recording (WAV, FLAC or OGG) of one speaker;
    `transcript` is exactly what is said in it.
    """

    name: str
    clip: str | Path | bytes = field(repr=False)
    transcript: str
    style: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name)
        if not self.transcript.strip():
            raise PersonaError(f"persona {self.name!r} needs the transcript of its clip")
        if len(self.transcript) > MAX_TRANSCRIPT_CHARS:
            raise PersonaError(
                f"transcript of {self.name!r} is {len(self.transcript)} characters; "
                f"a 10-30 s clip needs well under {MAX_TRANSCRIPT_CHARS}"
            )
        if self.style:
            tags.style_cue(self.style)

    def clip_bytes(self) -> bytes:
        """The clip's bytes, read from disk when it was given as a path."""
        if isinstance(self.clip, bytes):
            data = self.clip
        else:
            try:
                data = Path(self.clip).read_bytes()
            except OSError as e:
                raise PersonaError(f"cannot read the clip of {self.name!r}: {e}") from e
        if not data:
            raise PersonaError(f"the clip of {self.name!r} is empty")
        if len(data) > MAX_CLIP_BYTES:
            raise PersonaError(
                f"the clip of {self.name!r} is {len(data)} bytes; keep it under "
                f"{MAX_CLIP_BYTES} (10-30 s of mono audio is plenty)"
            )
        return data

    def content_hash(self) -> str:
        """The persona's identity; the clip is read and hashed once per `Persona` object."""
        return self._digest

    @cached_property
    def _digest(self) -> str:
        # Adapters check registration on every reply: that must not re-read a clip from disk.
        return content_hash(self.clip_bytes(), self.transcript, self.style)


def load_personas(path: Path) -> list[Persona]:
    """Read personas from a TOML file of `[[persona]]` tables (clip paths relative to the file).

    ```toml
    [[persona]]
    name = "ava"
    clip = "ava.wav"
    transcript = "What the clip says."
    style = "warm"          # optional
    ```
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PersonaError(f"cannot read personas file {path}: {e}") from e
    entries = data.get("persona", [])
    if not isinstance(entries, list) or not entries:
        raise PersonaError(f"{path} has no [[persona]] tables")
    personas = []
    for i, entry in enumerate(entries, 1):
        where = f"{path}: persona #{i}"
        # TOML lets any value through; a wrong type must fail here with a message, not as a
        # TypeError deep inside validation.
        if not isinstance(entry, dict):
            raise PersonaError(
                f"{where} is not a table; write a [[persona]] table with name, clip, transcript"
            )
        for key in ("name", "clip", "transcript"):
            if key not in entry:
                raise PersonaError(f"{where} lacks {key!r}")
        for key in ("name", "clip", "transcript", "style"):
            if key in entry and not isinstance(entry[key], str):
                raise PersonaError(f"{where}: {key} must be a string, got {entry[key]!r}")
        personas.append(
            Persona(
                name=entry["name"],
                clip=path.parent / entry["clip"],
                transcript=entry["transcript"],
                style=entry.get("style"),
            )
        )
    return personas


MAX_CAST = 100
"""Speaker tags run from `<|speaker:0|>` to `<|speaker:99|>`."""


def validate_cast(names: Sequence[str]) -> list[str]:
    """Return `names` as a cast (speaker N = the Nth name), else raise `PersonaError`."""
    if not names:
        raise PersonaError("the cast is empty; name one persona per speaker, speaker 0 first")
    if len(names) > MAX_CAST:
        raise PersonaError(f"a cast has at most {MAX_CAST} speakers, got {len(names)}")
    for name in names:
        validate_name(name)
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise PersonaError(
            f"the cast names {', '.join(doubled)} more than once; "
            "each speaker needs its own persona"
        )
    return list(names)


def describe_cast(names: Sequence[str]) -> str:
    """`<|speaker:0|> ava, <|speaker:1|> ben`: how error messages show a cast."""
    return ", ".join(f"{tags.speaker_tag(i)} {name}" for i, name in enumerate(names))


def check_speakers(text: str, names: Sequence[str]) -> None:
    """Raise `PersonaError` when a speaker tag in `text` names nobody in the cast `names`."""
    for n in tags.speakers(text):
        if n >= len(names):
            raise _no_one(n, names)


def _no_one(speaker: int, names: Sequence[str]) -> PersonaError:
    return PersonaError(
        f"{tags.speaker_tag(speaker)} names no one: the cast has {len(names)} speaker"
        f"{'s' if len(names) != 1 else ''} ({describe_cast(names)}); "
        "add a persona to the cast or use a lower speaker number"
    )


@dataclass(frozen=True)
class Cast:
    """Personas that speak together, in order: `<|speaker:N|>` is the Nth."""

    personas: tuple[Persona, ...]

    def __init__(self, personas: Iterable[Persona]) -> None:
        members = tuple(personas)
        validate_cast([p.name for p in members])
        object.__setattr__(self, "personas", members)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.personas]

    def __len__(self) -> int:
        return len(self.personas)

    def __getitem__(self, speaker: int) -> Persona:
        """The persona of speaker `speaker`; `PersonaError` when the cast has none."""
        if not 0 <= speaker < len(self.personas):
            raise _no_one(speaker, self.names)
        return self.personas[speaker]
