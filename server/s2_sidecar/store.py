"""The persona store: canonical clips and their metadata on disk; the metadata is loaded into
memory at start, each clip is read from disk when a request uses it.

Layout of the store directory:

    <name>.json              transcript, style, hash, duration, warnings; the commit point
    <name>.<hash16>.wav      the canonical 44.1 kHz mono int16 clip

Every file is written atomically (temp file, fsync, rename, fsync the directory). A persona
exists once its JSON exists; the clip it names is always written first, so a crash at any
point leaves either the old persona or the new one. Clips no JSON names, and temp files, are
leftovers of such a crash and are removed at load.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from s2_plugin import tags
from s2_plugin.personas import Persona, PersonaError, content_hash
from s2_plugin.protocol import VoiceInfo
from s2_plugin.tags import TagError
from s2_sidecar import clips
from s2_sidecar.errors import BadRequest, Conflict, InsufficientStorage, NotFound
from s2_sidecar.files import TMP_PREFIX, fsync_dir, write_atomic

log = logging.getLogger(__name__)

INLINE_DIR = "inline"
"""Where clips sent inline live (content-named), so an engine can read them by path."""
MAX_INLINE = 64
"""Inline clips kept on disk; the least recently used beyond this are removed."""
MAX_PERSONAS = 1000
"""Personas a store holds at most, unless `s2-sidecar serve --max-personas` says otherwise."""
MAX_STORE_BYTES = 1024**3
"""Bytes of persona clips a store holds at most (`--max-store-bytes`): about 200 of the longest
(60 s, 5.3 MB), 600 of S2's best length (20 s)."""

VOICE_EXISTS = "voice_exists"
"""The code of the 409 for a name taken by other content (the CLI words it as `--replace`)."""


@dataclass(frozen=True)
class StoredPersona:
    """A registered persona: what `/v1/audio/voices` reports, plus its canonical clip."""

    info: VoiceInfo
    path: Path
    """Where the canonical clip (a WAV file) lies: the exact bytes sent as S2's reference every
    time. The file never changes, as its name holds the content hash."""
    cast: tuple[StoredPersona, ...] = ()
    """For a cast's combined reference (`s2_sidecar.cast`): its members, speaker 0 first."""
    data: bytes | None = None
    """The clip, when held in memory (`loaded()`, a cast's combined clip); else read from disk."""
    inline: bool = False
    """Sent inside one request: engines keep nothing of it past that request."""

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def wav(self) -> bytes:
        """The clip: held in memory, or read from disk now (a 404 if the persona went since)."""
        if self.data is not None:
            return self.data
        try:
            return self.path.read_bytes()
        except FileNotFoundError as e:
            raise NotFound(
                f"persona {self.name!r} was deleted or replaced just now; retry", "unknown_voice"
            ) from e

    def loaded(self) -> StoredPersona:
        """This persona with its clip in memory, for as long as the caller holds it: deleting or
        replacing the persona meanwhile cannot take the clip away."""
        return self if self.data is not None else replace(self, data=self.wav)


class PersonaStore:
    """Personas on disk under `root`, mirrored in memory; thread-safe."""

    def __init__(
        self, root: Path, *, max_personas: int = MAX_PERSONAS, max_bytes: int = MAX_STORE_BYTES
    ) -> None:
        self.root = root
        self.max_personas = max_personas
        self.max_bytes = max_bytes
        self._personas: dict[str, StoredPersona] = {}
        self._sizes: dict[str, int] = {}
        """Persona name -> bytes of its clip on disk."""
        self._inline: dict[str, StoredPersona] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read every persona from disk and clear what an interrupted write left behind."""
        self.root.mkdir(parents=True, exist_ok=True)
        loaded: dict[str, StoredPersona] = {}
        sizes: dict[str, int] = {}
        for meta in sorted(self.root.glob("*.json")):
            try:
                info = VoiceInfo.model_validate_json(meta.read_bytes())
                _check_text(info.transcript, info.style)  # stored before styles were checked
                path = self._clip_path(info)
                sizes[info.name] = path.stat().st_size
            except (OSError, ValueError, BadRequest) as e:
                log.error("skipping persona %s (register it again): %s", meta.name, e)
                continue
            loaded[info.name] = StoredPersona(info, path)
        keep = {self._clip_path(p.info).name for p in loaded.values()}
        for path in self.root.iterdir():
            if path.name.startswith(TMP_PREFIX) or (
                path.suffix == ".wav" and path.name not in keep
            ):
                log.warning("removing %s, left over from an interrupted write", path.name)
                path.unlink(missing_ok=True)
        with self._lock:
            self._personas, self._sizes = loaded, sizes
        log.info("persona store %s: %d personas", self.root, len(loaded))

    def list(self) -> list[VoiceInfo]:
        with self._lock:
            return [p.info for p in sorted(self._personas.values(), key=lambda p: p.name)]

    def get(self, name: str) -> StoredPersona:
        with self._lock:
            persona = self._personas.get(name)
        if persona is None:
            raise NotFound(
                f"no persona named {name!r}; register it first (`s2-sidecar personas add`, "
                "a Persona given to the TTS, or POST /v1/audio/voices)",
                "unknown_voice",
            )
        return persona

    def find(self, name: str) -> StoredPersona | None:
        with self._lock:
            return self._personas.get(name)

    def register(
        self,
        name: str,
        audio: bytes,
        transcript: str,
        style: str | None = None,
        *,
        replace: bool = False,
    ) -> tuple[StoredPersona, bool]:
        """Validate and store a persona; return it and whether anything changed.

        Idempotent: the same name with the same content returns the stored persona untouched.
        The same name with other content is a `Conflict` unless `replace` is set.
        """
        _check_fields(name, audio, transcript, style)
        transcript = transcript.strip()
        style = style or None
        digest = content_hash(audio, transcript, style)
        existing = self.find(name)
        if existing is not None and existing.info.sha256 == digest:
            return existing, False
        if existing is not None and not replace:
            raise Conflict(
                f"persona {name!r} exists with a different clip, transcript or style; "
                "send replace=true to overwrite it, or pick another name",
                VOICE_EXISTS,
            )
        self._check_room(name, 0)  # before the decode, which is the costly part
        clip = clips.prepare(audio)
        info = VoiceInfo(
            name=name,
            transcript=transcript,
            style=style,
            sha256=digest,
            duration_s=round(clip.duration_s, 3),
            warnings=clip.warnings,
        )
        wav = clip.wav()
        persona = StoredPersona(info, self._clip_path(info))
        with self._lock:
            self._check_room(name, len(wav))
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(persona.path, wav)
            write_atomic(self.root / f"{name}.json", info.model_dump_json(indent=2).encode())
            previous = self._personas.get(name)
            self._personas[name] = persona
            self._sizes[name] = len(wav)
        if previous is not None and previous.info.sha256 != digest:
            self._clip_path(previous.info).unlink(missing_ok=True)
        return persona, True

    def inline(self, audio: bytes, transcript: str) -> StoredPersona:
        """A voice for one request (a reference sent inline): validated like a registration,
        not listed, kept by content hash so repeats send the same bytes (and hit the caches)."""
        transcript = transcript.strip()
        digest = content_hash(audio, transcript, None)
        name = f"inline-{digest[:16]}"
        with self._lock:
            cached = self._inline.pop(digest, None)
            if cached is not None:
                self._inline[digest] = cached  # most recently used last
                return cached.loaded()  # under the lock: no eviction in between
        _check_fields(name, audio, transcript, None)
        clip = clips.prepare(audio)
        info = VoiceInfo(
            name=name,
            transcript=transcript,
            sha256=digest,
            duration_s=round(clip.duration_s, 3),
            warnings=clip.warnings,
        )
        folder = self.root / INLINE_DIR
        wav = clip.wav()
        persona = StoredPersona(info, folder / f"{digest[:16]}.wav", inline=True)
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(persona.path, wav)
            self._inline[digest] = persona
            while len(self._inline) > MAX_INLINE:
                evicted = self._inline.pop(next(iter(self._inline)))
                evicted.path.unlink(missing_ok=True)
        return replace(persona, data=wav)

    def delete(self, name: str) -> None:
        persona = self.get(name)
        with self._lock:
            (self.root / f"{name}.json").unlink(missing_ok=True)
            fsync_dir(self.root)
            self._clip_path(persona.info).unlink(missing_ok=True)
            self._personas.pop(name, None)
            self._sizes.pop(name, None)

    def _check_room(self, name: str, size: int) -> None:
        """Refuse a persona the store has no room for (a replaced one frees its own)."""
        with_it = {**self._sizes, name: size}
        if name not in self._sizes and len(with_it) > self.max_personas:
            raise InsufficientStorage(
                f"the store holds {len(self._sizes)} personas, its limit; delete some, or start "
                "the sidecar with a larger --max-personas",
                "store_full",
            )
        if sum(with_it.values()) > self.max_bytes:
            raise InsufficientStorage(
                f"the store's clips would take {sum(with_it.values())} bytes, over its limit of "
                f"{self.max_bytes}; delete some personas, or start the sidecar with a larger "
                "--max-store-bytes",
                "store_full",
            )

    def _clip_path(self, info: VoiceInfo) -> Path:
        return self.root / f"{info.name}.{info.sha256[:16]}.wav"


def _check_fields(name: str, audio: bytes, transcript: str, style: str | None) -> None:
    # The core's Persona holds the rules a client checks before uploading; apply the same ones.
    try:
        Persona(name=name, clip=audio, transcript=transcript, style=style).clip_bytes()
    except (PersonaError, TagError) as e:
        raise BadRequest(str(e), "invalid_persona") from e
    _check_text(transcript, style)


def _check_text(transcript: str, style: str | None) -> None:
    """Transcript and style as every request will use them: balanced tags, no control chars."""
    try:
        tags.validate(transcript)
    except TagError as e:
        raise BadRequest(f"the transcript: {e}", "invalid_persona") from e
    try:
        if style:
            tags.style_cue(style)
    except TagError as e:
        raise BadRequest(str(e), "invalid_persona") from e
