"""Compact persona references: lossless FLAC where the router's 1 MiB allows, else MP3."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
from s2_sidecar.engines import compact

from s2_plugin.audio import wav_bytes

JOE = Path(__file__).resolve().parents[2] / "examples" / "personas" / "joe.wav"


def b64_size(data: bytes) -> int:
    return (len(data) + 2) // 3 * 4


def test_a_clean_clip_travels_as_lossless_flac() -> None:
    wav = JOE.read_bytes()
    data, media_type = compact.encode(wav)
    assert media_type == "audio/flac"
    decoded, rate = sf.read(io.BytesIO(data), dtype="int16")
    original, _ = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == 44100 and np.array_equal(decoded, original)  # the very same samples
    assert b64_size(data) < 0.4 * len(wav)


def test_a_long_noisy_clip_falls_back_to_mp3_under_the_limit() -> None:
    # 30 s, the longest clip accepted without a warning, with a recording's noise floor:
    # FLAC alone would be ~2 MB in base64.
    pcm, _ = sf.read(JOE, dtype="int16")
    long = np.concatenate([pcm, pcm, pcm[: 3 * 44100]]).astype(float)
    noise = np.random.default_rng(0).normal(0, 32768 * 10 ** (-55 / 20), long.shape)
    wav = wav_bytes(np.clip(long + noise, -32768, 32767).astype("<i2").tobytes())
    data, media_type = compact.encode(wav)
    assert media_type == "audio/mpeg"
    assert b64_size(data) <= compact.REFERENCE_BUDGET
    decoded, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 44100 and abs(len(decoded) - len(long)) < 4096
