"""Hostile reference clips, made here: tiny files that declare or hold hours of audio.

FLAC codes a constant signal in a few bytes a block, so half an hour of it is a few hundred
KiB; its STREAMINFO block states the total length, which a decoder may believe.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

_STREAMINFO_TOTAL = 4 + 4 + 10
"""Offset of the 8 bytes that end in STREAMINFO's 36-bit total: after `fLaC`, the block
header, and the block and frame sizes (2 + 2 + 3 + 3 bytes)."""


def constant_flac(seconds: float, rate: int = 44100, declare: int | None = None) -> bytes:
    """`seconds` of one constant sample value as FLAC, its header saying `declare` samples
    instead when given."""
    buf = io.BytesIO()
    block = np.full(rate, 1000, dtype=np.int16)
    with sf.SoundFile(buf, "w", rate, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(int(seconds)):
            f.write(block)
    data = buf.getvalue()
    return data if declare is None else declared(data, declare)


def declared(flac: bytes, total: int) -> bytes:
    """`flac` with its STREAMINFO saying `total` samples (0 is FLAC's "unknown")."""
    at = _STREAMINFO_TOTAL
    value = int.from_bytes(flac[at : at + 8], "big")
    value = (value & ~((1 << 36) - 1)) | total
    return flac[:at] + value.to_bytes(8, "big") + flac[at + 8 :]


def constant_vorbis(seconds: float, rate: int = 44100) -> bytes:
    """`seconds` of a quiet constant tone as Ogg Vorbis (a few KiB a minute)."""
    buf = io.BytesIO()
    t = np.arange(rate) / rate
    block = (0.01 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with sf.SoundFile(buf, "w", rate, 1, format="OGG", subtype="VORBIS") as f:
        for _ in range(int(seconds)):
            f.write(block)
    return buf.getvalue()


def peak_rss(pid: int) -> int:
    """The most resident memory process `pid` has held, in bytes (Linux's VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc: peak memory needs Linux")
