"""Reference clip checks and conversion to the canonical form."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from s2_sidecar import clips
from s2_sidecar.errors import BadRequest
from support.signals import speechlike

from s2_plugin.audio import samples
from s2_plugin.protocol import SAMPLE_RATE


def encode(x: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt)
    return buf.getvalue()


def test_stereo_48k_flac_becomes_44k_mono_int16_at_the_target_level() -> None:
    x = speechlike(12, 48000, level=0.05)
    clip = clips.prepare(encode(np.stack([x, x], axis=1), 48000, "FLAC"))
    y = samples(clip.pcm).astype(np.float64) / 32768
    assert abs(clip.duration_s - 12) < 0.01
    assert abs(np.sqrt(np.mean(y**2)) - clips.TARGET_RMS) < 0.01
    assert clip.warnings == []
    x, rate = sf.read(io.BytesIO(clip.wav()), dtype="int16")
    assert (rate, x.ndim) == (SAMPLE_RATE, 1)


def test_silence_at_the_ends_is_trimmed() -> None:
    rate = 16000
    speech = speechlike(12, rate)
    padded = np.concatenate([np.zeros(3 * rate), speech, np.zeros(4 * rate)])
    clip = clips.prepare(encode(padded, rate))
    assert 12.0 <= clip.duration_s <= 12.0 + 2 * 0.11


def test_short_or_long_clips_are_accepted_with_a_warning() -> None:
    assert "10-30 s" in clips.prepare(encode(speechlike(5, 16000), 16000)).warnings[0]
    assert clips.prepare(encode(speechlike(40, 8000), 8000)).warnings


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEnot really", "audio_undecodable"),
        (encode(speechlike(2.5, 16000), 16000), "audio_too_short"),
        (encode(speechlike(61, 8000), 8000), "audio_too_long"),
        (encode(np.zeros(16000 * 12), 16000), "audio_silent"),
        (encode(np.clip(speechlike(12, 16000, level=3.0), -1, 1), 16000), "audio_clipped"),
    ],
)
def test_unusable_clips_are_rejected(data: bytes, code: str) -> None:
    with pytest.raises(BadRequest) as e:
        clips.prepare(data)
    assert e.value.code == code


def test_pitch_is_the_fundamental_of_a_voiced_signal() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for hz in (80.0, 120.0, 210.0):
        # A buzz with harmonics, like a voice: the fundamental is found, not a harmonic.
        x = sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, 6))
        pcm = (x / np.max(np.abs(x)) * 12000).astype("<i2").tobytes()
        found = clips.pitch_hz(pcm)
        assert found is not None and abs(found / hz - 1) < 0.03, (hz, found)
    assert clips.pitch_hz(bytes(SAMPLE_RATE * 2)) is None
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 3000
    assert clips.pitch_hz(noise.astype("<i2").tobytes()) is None
