"""Reference clips: check an uploaded recording and turn it into S2's canonical form.

Canonical = 44.1 kHz mono int16, silence trimmed at both ends, speech at a fixed RMS level.
S2 clones best from 10-30 s of clean speech; shorter or longer still works, worse.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from s2_plugin.audio import duration_s, float_to_pcm16, resample, samples, wav_bytes
from s2_plugin.protocol import SAMPLE_RATE
from s2_sidecar.errors import BadRequest

MIN_S, MAX_S = 3.0, 60.0
"""Hard limits on speech duration (after trimming)."""

GOOD_MIN_S, GOOD_MAX_S = 10.0, 30.0
"""S2's sweet spot; outside it the clip is accepted with a warning."""

SILENT_PEAK = 10 ** (-50 / 20)
"""A clip whose loudest sample is under -50 dBFS holds no usable speech."""

CLIPPED_FRACTION = 0.01
"""More than 1% of samples at full scale is audible distortion the voice would copy."""

TARGET_RMS = 10 ** (-20 / 20)
PEAK_LIMIT = 10 ** (-1 / 20)
_TRIM_BELOW_DB = -40.0
"""Frames this far under the loudest frame count as silence at the ends."""
_TRIM_PAD_S = 0.1
_FRAME_S = 0.01


@dataclass(frozen=True)
class Clip:
    """A canonical reference clip."""

    pcm: bytes
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return duration_s(self.pcm)

    def wav(self) -> bytes:
        return wav_bytes(self.pcm, SAMPLE_RATE)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode WAV/FLAC/OGG bytes to mono float64 samples and their rate."""
    try:
        x, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise BadRequest(
            "the clip could not be decoded as audio; upload a WAV, FLAC or OGG file",
            "audio_undecodable",
        ) from e
    missing = _wav_missing_bytes(data)
    if missing:
        raise BadRequest(
            f"the WAV is truncated: its header promises {missing} more bytes of audio than the "
            "file holds; upload the complete file",
            "audio_truncated",
        )
    if not len(x):
        raise BadRequest("the clip holds no samples; upload a recording", "audio_empty")
    if not np.isfinite(x).all():
        raise BadRequest(
            "the clip holds NaN or infinite samples (a broken float WAV); export it again",
            "audio_not_finite",
        )
    return x.mean(axis=1), rate


def _wav_missing_bytes(data: bytes) -> int:
    """How many bytes of a WAV's data chunk are cut off (libsndfile reads a short file quietly)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return 0
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = struct.unpack_from("<4sI", data, pos)
        if chunk == b"data":
            if size == 0xFFFFFFFF:  # "unknown length", as ffmpeg writes to a pipe: read to the end
                return 0
            return max(0, int(pos + 8 + size - len(data)))
        pos += 8 + size + size % 2
    return 0


def prepare(data: bytes) -> Clip:
    """Validate an uploaded clip and return its canonical form; raise `BadRequest` if unusable."""
    x, rate = decode(data)
    peak = float(np.max(np.abs(x)))
    if peak < SILENT_PEAK:
        raise BadRequest(
            "the clip is silent (peak under -50 dBFS); upload a recording of the voice speaking",
            "audio_silent",
        )
    if np.mean(np.abs(x) >= 0.999) > CLIPPED_FRACTION:
        raise BadRequest(
            "the clip is badly clipped (over 1% of samples at full scale); record it again at a "
            "lower level",
            "audio_clipped",
        )
    x = _trim(x, rate)
    duration = len(x) / rate
    if duration < MIN_S:
        raise BadRequest(
            f"the clip holds {duration:.1f} s of speech; upload "
            f"{GOOD_MIN_S:.0f}-{GOOD_MAX_S:.0f} s (at least {MIN_S:.0f} s)",
            "audio_too_short",
        )
    if duration > MAX_S:
        raise BadRequest(
            f"the clip holds {duration:.1f} s of speech; cut it to {GOOD_MIN_S:.0f}-"
            f"{GOOD_MAX_S:.0f} s (at most {MAX_S:.0f} s)",
            "audio_too_long",
        )
    warnings = []
    if not GOOD_MIN_S <= duration <= GOOD_MAX_S:
        warnings.append(
            f"the clip holds {duration:.1f} s of speech; S2 clones best from "
            f"{GOOD_MIN_S:.0f}-{GOOD_MAX_S:.0f} s"
        )
    pcm = resample(float_to_pcm16(_normalise(x)), rate, SAMPLE_RATE)
    return Clip(pcm, warnings)


def _trim(x: np.ndarray, rate: int) -> np.ndarray:
    hop = max(1, int(rate * _FRAME_S))
    n = len(x) // hop
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (_TRIM_BELOW_DB / 20))
    pad = int(rate * _TRIM_PAD_S)
    return x[max(0, loud[0] * hop - pad) : min(len(x), (loud[-1] + 1) * hop + pad)]


def _normalise(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2)))
    gain = TARGET_RMS / rms
    gain = min(gain, PEAK_LIMIT / float(np.max(np.abs(x))))
    return x * gain


_PITCH_RATE = 16000
_PITCH_FRAME = 640  # 40 ms: two periods of the lowest pitch looked for
_PITCH_RANGE_HZ = (60.0, 400.0)
_VOICED = 0.6
"""Normalised autocorrelation at the period above which a frame counts as voiced."""


def pitch_hz(pcm: bytes, rate: int = SAMPLE_RATE) -> float | None:
    """Median pitch of the voiced 40 ms frames of int16 mono `pcm`; None if nothing is voiced.

    Autocorrelation per frame (through the FFT, corrected for the window's own taper), the
    strongest period between 2.5 and 16.7 ms. Enough to tell voices apart, not a tracker.
    """
    y = samples(resample(pcm, rate, _PITCH_RATE)).astype(np.float64)
    n = _PITCH_FRAME
    if len(y) < n:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(y, n)[:: n // 2]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames**2).sum(axis=1)
    if not energy.any():
        return None
    window = np.hanning(n)
    loud = frames[energy > 0.1 * np.median(energy[energy > 0])] * window
    ac = np.fft.irfft(np.abs(np.fft.rfft(loud, 2 * n, axis=1)) ** 2, axis=1)[:, :n]
    taper = np.correlate(window, window, "full")[n - 1 :]
    lo, hi = _PITCH_RANGE_HZ
    lags = np.arange(int(_PITCH_RATE / hi), int(_PITCH_RATE / lo) + 1)
    r = ac[:, lags] / (ac[:, :1] + 1e-12) / (taper[lags] / taper[0])
    best = r.argmax(axis=1)
    voiced = r[np.arange(len(r)), best] > _VOICED
    if not voiced.any():
        return None
    return float(np.median(_PITCH_RATE / lags[best[voiced]]))
