"""Reference clip checks and conversion to the canonical form."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from s2_sidecar import clips
from s2_sidecar.errors import BadRequest, UnsupportedMedia
from support import bombs, raw_http
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


# --- hostile clips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        bombs.constant_flac(20, declare=2**36 - 1),  # 2.5 KiB declaring 18 days
        bombs.constant_flac(1800),  # 244 KiB holding 30 minutes
    ],
    ids=["declares-2^36", "holds-30-min"],
)
def test_a_clip_longer_than_allowed_is_refused_before_or_while_decoding(data: bytes) -> None:
    with pytest.raises(BadRequest) as e:
        clips.decode(data)
    assert e.value.code == "audio_too_long"
    assert f"at most {clips.MAX_RAW_S:.0f} s" in e.value.message


def test_a_flac_that_does_not_say_its_length_is_refused() -> None:
    # As an encoder writing to a pipe leaves it: it could hold anything.
    with pytest.raises(BadRequest) as e:
        clips.decode(bombs.constant_flac(1800, declare=0))
    assert e.value.code == "audio_length_unknown"


def test_a_header_that_understates_is_read_only_as_far_as_it_says() -> None:
    x, rate = clips.decode(bombs.constant_flac(1800, declare=30 * 44100))
    assert len(x) == 30 * rate


@pytest.mark.parametrize(
    "fmt", ["AIFF", "AU", "CAF", "VOC", "PAF", "SVX", "NIST", "IRCAM", "MAT5", "W64", "RF64"]
)
def test_only_wav_flac_and_ogg_are_read(fmt: str) -> None:
    data = encode(speechlike(12, 16000), 16000, fmt)
    with pytest.raises(UnsupportedMedia) as e:
        clips.decode(data)
    assert e.value.code == "audio_format"
    assert "WAV, FLAC or OGG" in e.value.message


def test_a_wav_holding_another_codec_is_refused() -> None:
    buf = io.BytesIO()
    sf.write(buf, speechlike(12, 16000), 16000, format="WAV", subtype="GSM610")
    with pytest.raises(UnsupportedMedia):
        clips.decode(buf.getvalue())


def test_bombs_sent_to_the_sidecar_are_refused_without_its_memory(make_sidecar: Any) -> None:
    process = make_sidecar()
    assert process.pid is not None
    before = bombs.peak_rss(process.pid)
    for bomb in (
        bombs.constant_flac(20, declare=2**36 - 1),
        bombs.constant_flac(1800),
        bombs.constant_vorbis(180),
    ):
        status, body = raw_http.upload(
            process.port, {"name": "b", "transcript": "x", "audio": bomb}
        )
        assert (status, body["error"]["code"]) == (400, "audio_too_long")
        reference = {"data": base64.b64encode(bomb).decode(), "text": "x"}
        speech = json.dumps({"input": "Hello.", "references": [reference]}).encode()
        headers = {"Content-Type": "application/json"}
        status, body = raw_http.request(
            process.port, "POST", "/v1/audio/speech", headers=headers, body=speech
        )
        assert (status, body["error"]["code"]) == (400, "audio_too_long")
    # Decoded as before (float64, the whole declared length) the 30 minutes alone took 1.3 GB.
    grown = bombs.peak_rss(process.pid) - before
    assert grown < 64 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MiB"
