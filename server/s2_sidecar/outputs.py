"""Sound files the CLI writes (`say`, `narrate`), in the format their suffix names.

The formats are the API's: WAV and FLAC through libsndfile (a file's WAV header then holds its
size, which a streamed one cannot), MP3, Ogg Opus (`.ogg`, `.opus`) and AAC through the API's
own encoders. PCM goes in as it arrives, so a long narration needs no memory.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import soundfile as sf

from s2_plugin.audio import SAMPLE_RATE
from s2_plugin.protocol import ResponseFormat as Format
from s2_sidecar.encoders import Encoder, rate_for

SUFFIXES: dict[str, Format] = {
    ".wav": "wav",
    ".flac": "flac",
    ".mp3": "mp3",
    ".ogg": "opus",
    ".opus": "opus",
    ".aac": "aac",
}
_LIBSNDFILE = {"wav": "WAV", "flac": "FLAC"}


def format_for(path: Path) -> Format:
    """The format `path`'s suffix names; a ValueError that lists the suffixes otherwise."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        *others, last = ("*" + suffix for suffix in SUFFIXES)
        raise ValueError(
            f"cannot write {path.suffix or 'a file without suffix'}; "
            f"name the output {', '.join(others)} or {last}"
        )
    return fmt


class SoundWriter:
    """44.1 kHz PCM16 in, written to `path` in the format of its suffix; use as a context."""

    def __init__(self, path: Path) -> None:
        fmt = format_for(path)
        self._sound: sf.SoundFile | None = None
        self._encoder: Encoder | None = None
        self._file: BinaryIO | None = None
        if fmt in _LIBSNDFILE:
            self._sound = sf.SoundFile(path, "w", SAMPLE_RATE, 1, format=_LIBSNDFILE[fmt])
        else:
            self._encoder = Encoder(fmt, rate_for(fmt, None))
            self._file = path.open("wb")

    def write(self, pcm: bytes) -> None:
        if self._sound is not None:
            self._sound.buffer_write(pcm, dtype="int16")
        elif self._encoder is not None and self._file is not None:
            self._file.write(self._encoder.encode(pcm))

    def __enter__(self) -> SoundWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._sound is not None:
            self._sound.close()
        if self._encoder is not None and self._file is not None:
            if kind is None:
                self._file.write(self._encoder.finish())
            self._encoder.close()
            self._file.close()
