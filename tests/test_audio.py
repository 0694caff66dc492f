"""s2_plugin.audio: PCM helpers, the streaming resampler's exact length, framer, mu-law, WAV."""

from __future__ import annotations

import io
import itertools
import warnings
import wave

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from s2_plugin.audio import (
    SAMPLE_RATE,
    SUPPORTED_RATES,
    AudioError,
    SampleAligner,
    StreamResampler,
    check_rate,
    float_to_pcm16,
    resample,
    samples,
    ulaw_decode,
    ulaw_encode,
    wav_bytes,
)

RESAMPLED_RATES = [r for r in SUPPORTED_RATES if r != SAMPLE_RATE]


def expected_len(n: int, in_rate: int, out_rate: int) -> int:
    """round(n * out / in), halves up, in exact integer arithmetic."""
    return (2 * n * out_rate + in_rate) // (2 * in_rate)


def noise(n: int, seed: int = 0, scale: float = 8000) -> bytes:
    x = np.random.default_rng(seed).normal(0, scale, n)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def tone(n: int, freq: float = 440.0, rate: int = SAMPLE_RATE, amp: float = 0.5) -> bytes:
    t = np.arange(n) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def stream_all(r: StreamResampler, pcm: bytes, cuts: list[int]) -> bytes:
    """Feed `pcm` split at byte offsets `cuts`, then flush."""
    bounds = [0, *sorted(cuts), len(pcm)]
    out = b"".join(r.process(pcm[a:b]) for a, b in itertools.pairwise(bounds))
    return out + r.flush()


# --- PCM helpers -------------------------------------------------------------------------


def test_samples_rejects_odd_length() -> None:
    with pytest.raises(AudioError, match=r"2 bytes per sample, got 3 bytes"):
        samples(b"\x00\x01\x02")


def test_samples_reads_little_endian() -> None:
    assert samples(b"\x01\x00\xff\xff").tolist() == [1, -1]


def test_float_round_trip_is_exact_and_clips() -> None:
    pcm = np.array([-32768, -1, 0, 1, 32767], dtype="<i2").tobytes()
    assert float_to_pcm16(samples(pcm).astype(np.float32) / 32768.0) == pcm
    assert samples(float_to_pcm16(np.array([-2.0, 2.0]))).tolist() == [-32768, 32767]


# --- rates -------------------------------------------------------------------------------


def test_check_rate_accepts_supported() -> None:
    for rate in SUPPORTED_RATES:
        assert check_rate(rate) == rate


def test_unsupported_rate_names_the_supported_ones() -> None:
    with pytest.raises(AudioError, match=r"11025 Hz is not supported; use one of 8000, 16000"):
        check_rate(11025)
    with pytest.raises(AudioError, match="not supported"):
        resample(b"\x00\x00", SAMPLE_RATE, 11025)
    with pytest.raises(AudioError, match="not supported"):
        StreamResampler(SAMPLE_RATE, 11025)


@pytest.mark.parametrize("in_rate", [0, -44100])
def test_bad_input_rate_is_rejected(in_rate: int) -> None:
    with pytest.raises(AudioError, match="input sample rate must be a positive number of Hz"):
        resample(b"\x00\x00", in_rate, 16000)
    with pytest.raises(AudioError, match="input sample rate"):
        StreamResampler(in_rate, 16000)


# --- one-shot resample -------------------------------------------------------------------


@pytest.mark.parametrize("out_rate", [8000, 16000, 24000, 48000])
@pytest.mark.parametrize("n", [0, 1, 2, 881, 882, 44_100, 44_101])
def test_resample_has_exact_length(out_rate: int, n: int) -> None:
    y = resample(noise(n), SAMPLE_RATE, out_rate)
    assert len(y) == 2 * expected_len(n, SAMPLE_RATE, out_rate)


def test_resample_passthrough_returns_the_input() -> None:
    pcm = noise(1234)
    assert resample(pcm, SAMPLE_RATE, SAMPLE_RATE) == pcm


def test_resample_keeps_a_tone() -> None:
    y = samples(resample(tone(44_100, freq=1000), SAMPLE_RATE, 8000))
    spectrum = np.abs(np.fft.rfft(y))
    assert int(np.argmax(spectrum)) == 1000  # 1 Hz bins over one second
    assert rms(y) == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.01)


# --- StreamResampler ---------------------------------------------------------------------


@pytest.mark.parametrize("out_rate", RESAMPLED_RATES)
def test_stream_segment_has_exact_length(out_rate: int) -> None:
    pcm = noise(30_000)
    y = stream_all(StreamResampler(SAMPLE_RATE, out_rate), pcm, list(range(0, len(pcm), 1764)))
    assert len(y) == 2 * expected_len(30_000, SAMPLE_RATE, out_rate)


def test_stream_passthrough_at_44k1() -> None:
    r = StreamResampler(SAMPLE_RATE, SAMPLE_RATE)
    pcm = noise(1000)
    assert r.passthrough
    assert r.process(pcm[:3]) + r.process(pcm[3:]) == pcm
    assert r.flush() == b""


def test_flush_returns_the_held_tail_and_resets() -> None:
    r = StreamResampler(SAMPLE_RATE, 8000)
    pcm = noise(4410)
    head = r.process(pcm)
    want = expected_len(4410, SAMPLE_RATE, 8000)
    assert len(head) // 2 < want - 100  # HQ to 8 kHz holds ~47 ms back
    tail = r.flush()
    assert len(head + tail) == 2 * want
    assert rms(samples(tail)) > 1000  # the held audio, not padding
    assert r.flush() == b""  # nothing is left for a second flush
    assert head + tail == stream_all(r, pcm, [])  # the next segment starts from scratch


def test_reset_drops_state_mid_segment() -> None:
    r = StreamResampler(SAMPLE_RATE, 16000)
    r.process(noise(5001, seed=1)[:-1])  # ends on an odd byte, which reset must drop too
    r.reset()
    pcm = noise(3000, seed=2)
    assert stream_all(r, pcm, [882]) == resample(pcm, SAMPLE_RATE, 16000)


def test_odd_bytes_are_carried_across_chunks() -> None:
    r = StreamResampler(SAMPLE_RATE, 24000)
    pcm = noise(2000)
    assert stream_all(r, pcm, [1, 2, 3, 1001]) == resample(pcm, SAMPLE_RATE, 24000)


def test_flush_inside_a_sample_raises_and_resets() -> None:
    r = StreamResampler(SAMPLE_RATE, 16000)
    r.process(noise(2000)[:-1])
    with pytest.raises(AudioError, match="odd number of PCM bytes"):
        r.flush()
    pcm = noise(1000, seed=3)
    assert stream_all(r, pcm, []) == resample(pcm, SAMPLE_RATE, 16000)


@pytest.mark.parametrize("out_rate", RESAMPLED_RATES)
def test_tone_keeps_its_energy_to_the_segment_end(out_rate: int) -> None:
    """The tail soxr holds back is real audio that flush delivers, up to the last sample.

    Pipecat's TTS path never flushes, so its segments end early by what the filter holds.
    """
    r = StreamResampler(SAMPLE_RATE, out_rate)
    pcm = tone(SAMPLE_RATE)  # one second, full amplitude up to the very last sample
    head = samples(b"".join(r.process(pcm[i : i + 1764]) for i in range(0, len(pcm), 1764)))
    y = samples(b"".join([head.tobytes(), r.flush()]))
    assert len(y) == out_rate
    steady = rms(y[out_rate // 4 : out_rate // 2])
    assert rms(y[len(head) :]) == pytest.approx(steady, rel=0.1)  # the part Pipecat would lose
    assert rms(y[-out_rate // 200 :]) == pytest.approx(steady, rel=0.15)  # the last 5 ms


@settings(max_examples=150, deadline=None)
@given(
    x=hnp.arrays(np.int16, st.integers(0, 3000)),
    in_rate=st.sampled_from(SUPPORTED_RATES),
    out_rate=st.sampled_from(SUPPORTED_RATES),
    cut_fractions=st.lists(st.floats(0, 1), max_size=12),
)
def test_any_chunking_equals_one_shot(
    x: np.ndarray, in_rate: int, out_rate: int, cut_fractions: list[float]
) -> None:
    """Exactly equal, not just close: the resampler runs soxr in float32 (deterministic and
    chunking-invariant) and quantizes like `resample`, so any difference is a bug."""
    pcm = x.astype("<i2").tobytes()
    cuts = sorted(int(f * len(pcm)) for f in cut_fractions)  # byte offsets, odd ones included
    r = StreamResampler(in_rate, out_rate)
    out = b""
    for a, b in itertools.pairwise([0, *cuts, len(pcm)]):
        out += r.process(pcm[a:b])
        # Never ahead of the exact count, so flush never has to take samples back.
        assert len(out) // 2 <= expected_len(b // 2, in_rate, out_rate)
    out += r.flush()
    assert len(out) == 2 * expected_len(len(x), in_rate, out_rate)
    assert out == resample(pcm, in_rate, out_rate)


@pytest.mark.parametrize(("in_rate", "out_rate"), list(itertools.permutations(SUPPORTED_RATES, 2)))
def test_soxr_total_is_exact_or_one_short(in_rate: int, out_rate: int) -> None:
    """What flush relies on: soxr's own total is round(n * out / in), or one less when that is
    an exact half it rounds down, so flush pads at most one sample and never trims."""
    for n in [*range(0, 400, 7), *range(400, 4000, 239), 44_100]:
        s = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
        got = len(s.resample_chunk(np.zeros(n, np.float32)))
        got += len(s.resample_chunk(np.zeros(0, np.float32), last=True))
        assert expected_len(n, in_rate, out_rate) - got in (0, 1), n


# --- mu-law ------------------------------------------------------------------------------


def g711_linear2ulaw(pcm: int) -> int:
    """Sun's reference `linear2ulaw` (g711.c), transcribed line by line."""
    seg_uend = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]
    pcm >>= 2
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = next((i for i, end in enumerate(seg_uend) if pcm <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def g711_ulaw2linear(code: int) -> int:
    """Sun's reference `ulaw2linear` (g711.c)."""
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


ALL_PCM = np.arange(-32768, 32768, dtype="<i2")


def test_ulaw_encode_is_bit_exact_with_the_reference_coder() -> None:
    want = bytes(g711_linear2ulaw(int(v)) for v in ALL_PCM)
    assert ulaw_encode(ALL_PCM.tobytes()) == want


def test_ulaw_decode_is_bit_exact_with_the_reference_coder() -> None:
    want = np.array([g711_ulaw2linear(c) for c in range(256)], dtype="<i2")
    assert ulaw_decode(bytes(range(256))) == want.tobytes()


def test_ulaw_matches_audioop_where_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13
    assert ulaw_encode(ALL_PCM.tobytes()) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)
    assert ulaw_decode(bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)


@pytest.mark.parametrize(
    ("value", "code"),
    [(0, 0xFF), (-1, 0x7E), (32767, 0x80), (-32768, 0x00), (32124, 0x80), (-32124, 0x00)],
)
def test_ulaw_known_code_points(value: int, code: int) -> None:
    assert ulaw_encode(np.array([value], dtype="<i2").tobytes()) == bytes([code])


def test_ulaw_decode_known_values() -> None:
    assert samples(ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00]))).tolist() == [0, 0, 32124, -32124]


def test_ulaw_round_trip_error_is_bounded() -> None:
    back = samples(ulaw_decode(ulaw_encode(ALL_PCM.tobytes()))).astype(np.int32)
    x = ALL_PCM.astype(np.int32)
    err = np.abs(back - x)
    inside = np.abs(x) <= 32124  # beyond the largest code point mu-law clips
    # Steps grow with the segment: 8 levels near zero, 1024 in the top segment, i.e. the
    # error stays below 1/32 of the value plus the smallest step.
    assert np.all(err[inside] <= np.abs(x[inside]) // 32 + 8)
    assert err.max() == 32768 - 32124  # -32768 clips to the lowest code point, -32124
    assert len(ulaw_encode(ALL_PCM.tobytes())) == len(ALL_PCM)


def test_ulaw_encode_rejects_odd_length() -> None:
    with pytest.raises(AudioError, match="odd length"):
        ulaw_encode(b"\x00")


# --- WAV ---------------------------------------------------------------------------------


def test_wav_bytes_reads_back_with_the_wave_module() -> None:
    pcm = noise(2205)
    with wave.open(io.BytesIO(wav_bytes(pcm, 22050)), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        assert w.getnframes() == 2205
        assert w.readframes(2205) == pcm


def test_wav_bytes_rejects_odd_length() -> None:
    with pytest.raises(AudioError, match="odd length"):
        wav_bytes(b"\x00\x00\x00")


def test_sample_aligner_recuts_a_byte_stream_at_sample_boundaries() -> None:
    aligner = SampleAligner()
    data = bytes(range(11))
    out = [aligner.push(data[i : i + 3]) for i in range(0, len(data), 3)]
    assert all(len(chunk) % 2 == 0 for chunk in out)
    assert b"".join(out) == data[:10]
    assert aligner.pending
    aligner.reset()
    assert not aligner.pending
    assert aligner.push(b"\x01\x02") == b"\x01\x02"
