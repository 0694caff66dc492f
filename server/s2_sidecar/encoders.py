"""Audio encoders for speech responses: S2's 44.1 kHz PCM16 in, chunks of a format out.

Every format streams: each engine chunk is encoded and sent as it comes, so a container adds
only its encoder's frame delay to the first byte. WAV streams as ffmpeg writes WAV to a pipe
(sizes 0xFFFFFFFF, read to the end by every decoder); mp3, Ogg Opus, ADTS AAC and FLAC are
FFmpeg's encoders through PyAV (the wheels bundle FFmpeg with libmp3lame and libopus).
"""

from __future__ import annotations

import struct
from fractions import Fraction

import av
import numpy as np

from s2_plugin.audio import SAMPLE_RATE, StreamResampler, samples
from s2_plugin.protocol import ResponseFormat as Format

CONTENT_TYPES: dict[Format, str] = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
}

OPUS_RATE = 48000
"""Opus codes at 48 kHz (and 24/16/12/8); 44.1 kHz must be resampled for it."""

# (container, codec, container options). Ogg flushes a page per 20 ms packet instead of per
# second, else its first bytes would wait a second of audio.
_AV: dict[Format, tuple[str, str, dict[str, str]]] = {
    "mp3": ("mp3", "libmp3lame", {}),
    "opus": ("ogg", "libopus", {"page_duration": "20000"}),
    "aac": ("adts", "aac", {}),
    "flac": ("flac", "flac", {}),
}


def rate_for(fmt: Format, requested: int | None) -> int:
    """The rate a format is encoded at: the requested one, else S2's own (Opus: 48 kHz)."""
    if fmt == "opus":
        if requested not in (None, OPUS_RATE):
            raise ValueError(f"opus is always {OPUS_RATE} Hz; leave sample_rate out")
        return OPUS_RATE
    return requested or SAMPLE_RATE


class Encoder:
    """One response's encoder: `encode()` per PCM chunk, `finish()` once at the end."""

    def __init__(self, fmt: Format, rate: int) -> None:
        self.format = fmt
        self.rate = rate
        self.content_type = CONTENT_TYPES[fmt]
        self._resampler = StreamResampler(SAMPLE_RATE, rate)
        self._started = False
        self._av: _AvEncoder | None = _AvEncoder(fmt, rate) if fmt in _AV else None

    def encode(self, pcm: bytes) -> bytes:
        """Encoded bytes for one 44.1 kHz PCM16 chunk (may be empty while a frame fills)."""
        return self._out(self._resampler.process(pcm))

    def finish(self) -> bytes:
        """The rest: the resampler's tail and the encoder's last frames."""
        out = self._out(self._resampler.flush())
        if self._av is not None:
            out += self._av.finish()
            self._av = None
        return out

    def close(self) -> None:
        """Free the encoder; for a response that ends early (after `finish()`, a no-op)."""
        if self._av is not None:
            self._av.close()
            self._av = None

    def _out(self, pcm: bytes) -> bytes:
        if self._av is not None:
            return self._av.encode(pcm)
        if self.format == "wav" and not self._started:
            self._started = True
            return streaming_wav_header(self.rate) + pcm
        return pcm


def streaming_wav_header(rate: int) -> bytes:
    """A PCM16 mono WAV header of unknown length, as ffmpeg writes to a pipe."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    unknown = 0xFFFFFFFF
    return (
        b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", unknown)
    )  # fmt: skip


class _Sink:
    """Where the muxer writes; no `seek`, so FFmpeg writes a stream (no header rewrites)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data


class _AvEncoder:
    def __init__(self, fmt: Format, rate: int) -> None:
        container, codec, options = _AV[fmt]
        self._sink = _Sink()
        self._container = av.open(self._sink, mode="w", format=container, options=options)
        stream = self._container.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        self._stream = stream
        self._rate = rate
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        x = samples(pcm)
        if not len(x):
            return b""
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(x).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self._rate
        frame.pts = self._pts
        frame.time_base = Fraction(1, self._rate)
        self._pts += len(x)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()

    def close(self) -> None:
        self._container.close()
