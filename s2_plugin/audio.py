"""PCM16 audio: conversions, a streaming resampler with an exact length, mu-law.

Inside the plugin audio is int16 little-endian mono at 44.1 kHz; it is resampled once, at the
framework's edge.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import soxr  # type: ignore[import-untyped]

from s2_plugin.protocol import SAMPLE_RATE, SUPPORTED_RATES

__all__ = [
    "SAMPLE_RATE",
    "SUPPORTED_RATES",
    "AudioError",
    "SampleAligner",
    "StreamResampler",
    "check_rate",
    "duration_s",
    "float_to_pcm16",
    "resample",
    "samples",
    "ulaw_decode",
    "ulaw_encode",
    "wav_bytes",
]

# soxr quality. HQ and VHQ share the passband (-0.01 dB at 0.46 x the output rate) and both
# reject aliases far below int16's noise floor (-98 dBFS): measured from 44.1 kHz, HQ <= -135 dB
# and VHQ <= -155 dB. VHQ's longer filter holds more audio back, which adds to time to first
# audio. Mean ms held in the stream, 44.1 kHz in 20 ms chunks (bench/bench_resample.py):
#   out kHz   8     16    22.05  24    32    48    (48 -> 44.1)
#   HQ        47.1  23.3  23.2   21.7  11.7  11.7  10.7
#   VHQ       93.8  46.6  23.2   21.5  23.3  11.7  21.5
# VHQ never holds less and buys nothing int16 can carry, so HQ at every rate.
_QUALITY = "HQ"


class AudioError(ValueError):
    """Audio that cannot be used as given; the message says what to change."""


def check_rate(rate: int) -> int:
    """Return `rate` if the plugin can produce it, else raise `AudioError`."""
    if rate not in SUPPORTED_RATES:
        raise AudioError(
            f"sample rate {rate} Hz is not supported; use one of "
            + ", ".join(str(r) for r in SUPPORTED_RATES)
        )
    return rate


def samples(pcm: bytes) -> np.ndarray:
    """View int16 little-endian PCM bytes as samples; odd-length input is an error."""
    if len(pcm) % 2:
        raise AudioError(f"PCM16 has 2 bytes per sample, got {len(pcm)} bytes (odd length)")
    return np.frombuffer(pcm, dtype="<i2")


def float_to_pcm16(x: np.ndarray) -> bytes:
    """Float samples (clipped to [-1, 1]) to PCM16 bytes."""
    scaled = np.clip(np.asarray(x, dtype=np.float64) * 32768.0, -32768, 32767)
    return np.round(scaled).astype("<i2").tobytes()


def duration_s(pcm: bytes | int, sample_rate: int = SAMPLE_RATE) -> float:
    """Seconds of int16 mono PCM, given as the bytes or their count."""
    return (pcm if isinstance(pcm, int) else len(pcm)) / 2 / sample_rate


def _check_in_rate(rate: int) -> int:
    if rate <= 0:
        raise AudioError(f"input sample rate must be a positive number of Hz, got {rate}")
    return rate


def _expected_len(n_in: int, in_rate: int, out_rate: int) -> int:
    return (n_in * out_rate + in_rate // 2) // in_rate


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - len(x), dtype=x.dtype)])


# soxr runs in float32 and we round to int16 ourselves: its int16 output is dithered with a
# random seed, so the same input gave outputs up to 2 LSB apart from run to run and chunking to
# chunking. In float32 the stream is deterministic and equals the one-shot `soxr.resample`
# sample for sample, whatever the chunking. int16 -> float32 by 1/32768 is exact.
def _to_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) * np.float32(1 / 32768)


def _to_pcm16(y: np.ndarray) -> bytes:
    return np.rint(np.clip(y * np.float32(32768), -32768, 32767)).astype("<i2").tobytes()


def resample(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """One-shot resampling of a whole clip; output length is `round(n * out / in)`.

    Equals a `StreamResampler` run over the same samples, however they are chunked.
    """
    _check_in_rate(in_rate)
    check_rate(out_rate)
    x = samples(pcm)
    if in_rate == out_rate or not len(x):
        return x.tobytes()
    y = soxr.resample(_to_float(x), in_rate, out_rate, quality=_QUALITY)
    return _to_pcm16(_fit(y, _expected_len(len(x), in_rate, out_rate)))


class SampleAligner:
    """Re-cuts a byte stream at sample boundaries: a network chunk may end inside a sample."""

    def __init__(self) -> None:
        self._odd = b""

    def push(self, data: bytes) -> bytes:
        """Return the whole samples so far; a trailing odd byte waits for the next chunk."""
        data = self._odd + data
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        return data[:cut]

    @property
    def pending(self) -> bool:
        """True while half a sample is held: a stream that ends now was cut short."""
        return bool(self._odd)

    def reset(self) -> None:
        self._odd = b""


class StreamResampler:
    """Streaming soxr resampler for one voice: chunks in, chunks out, exact length per segment.

    Call `process()` per chunk, `flush()` at the end of each segment (it returns the tail the
    filter held back and evens the count to `round(n_in * out / in)`), `reset()` to drop
    everything on a cancel.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str | None = None) -> None:
        self.in_rate = _check_in_rate(in_rate)
        self.out_rate = check_rate(out_rate)
        self.quality = quality or _QUALITY
        # One stream for the resampler's life: `clear()` returns it to its initial state (its
        # output after a clear equals a new stream's), and a new one would redo the filter
        # design, 40-120 us, on every segment's first chunk.
        self._stream = (
            None
            if self.passthrough
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=self.quality)
        )
        self._n_in = 0
        self._n_out = 0
        self._aligner = SampleAligner()

    @property
    def passthrough(self) -> bool:
        return self.in_rate == self.out_rate

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk; a trailing odd byte is kept for the next chunk.

        soxr never runs ahead of `round(n_in * out / in)` (tested at every supported rate pair
        and chunking), so nothing here is trimmed: only `flush()` evens the count.
        """
        x = samples(self._aligner.push(pcm))
        self._n_in += len(x)
        if self._stream is None:
            self._n_out += len(x)
            return x.tobytes()
        y = self._stream.resample_chunk(_to_float(x))
        self._n_out += len(y)
        return _to_pcm16(y)

    def flush(self) -> bytes:
        """End the segment: return the held tail so the segment has its exact length.

        soxr's own total is `round(n_in * out / in)` except that it may round an exact half
        down (e.g. 24 kHz -> 44.1 kHz, 120 samples in, 220.5 out); one zero sample evens that.
        """
        odd = self._aligner.pending
        tail = np.zeros(0, dtype=np.float32)
        if self._stream is not None and not odd:
            tail = self._stream.resample_chunk(tail, last=True)
        missing = _expected_len(self._n_in, self.in_rate, self.out_rate) - self._n_out
        self.reset()
        if odd:
            # The segment is over either way; its state must not leak into the next one.
            raise AudioError("segment ended inside a sample (odd number of PCM bytes)")
        return _to_pcm16(_fit(tail, max(0, missing)))

    def reset(self) -> None:
        """Forget all state (after a cancel): the next chunk starts a fresh segment."""
        if self._stream is not None:
            self._stream.clear()
        self._n_in = self._n_out = 0
        self._aligner.reset()


# G.711 mu-law, as telephony carries it (bias 0x84, clip 32635, bits inverted).
_BIAS = 0x84
_CLIP = 32635


def _ulaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign, -magnitude, magnitude).astype(np.int16)


_ULAW_DECODE = _ulaw_table()


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 to G.711 mu-law bytes (one byte per sample), bit-exact with the reference coder."""
    x = samples(pcm).astype(np.int32) >> 2  # the reference coder works on 14 bits
    sign = (x < 0).astype(np.int32) << 7
    mag = np.minimum(np.abs(x), _CLIP >> 2) + (_BIAS >> 2)
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 5, 0, 7)
    mantissa = (mag >> (exponent + 1)) & 0x0F
    code: np.ndarray = (sign | (exponent << 4) | mantissa) ^ 0xFF
    return code.astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """G.711 mu-law bytes to PCM16."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def wav_bytes(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Wrap PCM16 mono in a WAV container."""
    samples(pcm)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()
