"""Resampler benchmark: ours (s2_plugin.audio.StreamResampler) against Pipecat's default.

44.1 kHz in, 20 ms chunks (882 samples), to 8, 16, 24 and 48 kHz. For each it prints:
- held: audio the stream holds back (expected output so far minus output so far), in ms, mean
  and max over a 20 s run; it adds to time to first audio.
- CPU per 20 ms chunk, mean and p99, in microseconds (Pipecat's is an async call, timed as its
  TTSService awaits it).
- lost at a segment's end: 1.5 s segments with 0.25 s of idle between them, fed the way each is
  used. Ours: process() per chunk, flush() at the end. Pipecat's TTSService: resample() per
  chunk and never flush(); after 0.2 s idle its resampler clear()s, dropping what it held. The
  idle is real time (a sleep), since Pipecat reads the clock.
Then the delay held back by soxr's HQ and VHQ at every supported rate, which sets our choice.

Run: python bench/bench_resample.py   (about 5 s; CPU figures vary from run to run)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from pipecat.audio.resamplers.soxr_stream_resampler import SOXRStreamAudioResampler

from s2_plugin.audio import SAMPLE_RATE, SUPPORTED_RATES, StreamResampler

CHUNK = 882  # 20 ms at 44.1 kHz
RUN_S = 20
SEGMENT_CHUNKS = 75  # 1.5 s
SEGMENTS = 3
IDLE_S = 0.25  # more than Pipecat's clear_after_secs = 0.2
OUT_RATES = (8000, 16000, 24000, 48000)

Resample = Callable[[bytes], Awaitable[bytes]]


def speechlike(seconds: float, seed: int = 1) -> bytes:
    """Two harmonics and noise at speech level, so soxr works on realistic numbers."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.15 * np.sin(2 * np.pi * 1250 * t)
    x += 0.03 * rng.standard_normal(len(t))
    return (x * 32767).astype("<i2").tobytes()


def expected(n_in: int, out_rate: int) -> int:
    return (n_in * out_rate + SAMPLE_RATE // 2) // SAMPLE_RATE


@dataclass
class Row:
    held_mean_ms: float
    held_max_ms: float
    cpu_mean_us: float
    cpu_p99_us: float
    lost: list[int]


async def steady(resample: Resample, pcm: bytes, out_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Feed one long segment; per chunk: ms held in the stream and ns spent."""
    held, cost = [], []
    n_in = n_out = 0
    for i in range(0, len(pcm), 2 * CHUNK):
        chunk = pcm[i : i + 2 * CHUNK]
        t0 = time.perf_counter_ns()
        y = await resample(chunk)
        cost.append(time.perf_counter_ns() - t0)
        n_in += len(chunk) // 2
        n_out += len(y) // 2
        held.append((expected(n_in, out_rate) - n_out) * 1000 / out_rate)
    return np.array(held[50:]), np.array(cost)  # from 1 s on: the steady state


async def ours(out_rate: int, pcm: bytes, segments: list[bytes]) -> Row:
    r = StreamResampler(SAMPLE_RATE, out_rate)

    async def process(chunk: bytes) -> bytes:
        return r.process(chunk)

    held, cost = await steady(process, pcm, out_rate)
    r.reset()
    lost = []
    for seg in segments:
        out = b"".join(r.process(seg[i : i + 2 * CHUNK]) for i in range(0, len(seg), 2 * CHUNK))
        out += r.flush()
        lost.append(expected(len(seg) // 2, out_rate) - len(out) // 2)
    return row(held, cost, lost)


async def pipecat(out_rate: int, pcm: bytes, segments: list[bytes]) -> Row:
    r = SOXRStreamAudioResampler()  # what create_stream_resampler() gives TTSService

    async def process(chunk: bytes) -> bytes:
        return await r.resample(chunk, SAMPLE_RATE, out_rate)

    held, cost = await steady(process, pcm, out_rate)
    lost = []
    for seg in segments:
        await asyncio.sleep(IDLE_S)  # the next resample() clears what the stream held
        got = 0
        for i in range(0, len(seg), 2 * CHUNK):
            got += len(await process(seg[i : i + 2 * CHUNK])) // 2
        lost.append(expected(len(seg) // 2, out_rate) - got)
    return row(held, cost, lost)


def row(held: np.ndarray, cost: np.ndarray, lost: list[int]) -> Row:
    return Row(
        held_mean_ms=float(held.mean()),
        held_max_ms=float(held.max()),
        cpu_mean_us=float(cost.mean()) / 1000,
        cpu_p99_us=float(np.percentile(cost, 99)) / 1000,
        lost=lost,
    )


def quality_delays(pcm: bytes) -> list[str]:
    lines = []
    for out_rate in SUPPORTED_RATES:
        if out_rate == SAMPLE_RATE:
            continue
        cells = []
        for quality in ("HQ", "VHQ"):
            r = StreamResampler(SAMPLE_RATE, out_rate, quality=quality)
            held = []
            n_in = n_out = 0
            for i in range(0, len(pcm), 2 * CHUNK):
                n_out += len(r.process(pcm[i : i + 2 * CHUNK])) // 2
                n_in += CHUNK
                held.append((expected(n_in, out_rate) - n_out) * 1000 / out_rate)
            cells.append(f"{np.mean(held[50:]):6.1f}")
        lines.append(f"| {out_rate / 1000:>6g} | {cells[0]} | {cells[1]} |")
    return lines


async def main() -> None:
    pcm = speechlike(RUN_S)
    segments = [speechlike(SEGMENT_CHUNKS * CHUNK / SAMPLE_RATE, seed=s) for s in range(SEGMENTS)]
    print(
        f"44.1 kHz in, {CHUNK}-sample (20 ms) chunks; {RUN_S} s steady run; "
        f"{SEGMENTS} segments of 1.5 s with {IDLE_S} s idle between"
    )
    print()
    print(
        "| out kHz | resampler | held mean / max (ms) | CPU/chunk mean / p99 (us) "
        "| lost at segment end, mean (samples / ms) |"
    )
    print("|---|---|---|---|---|")
    for out_rate in OUT_RATES:
        for name, fn in (
            (f"ours ({StreamResampler(SAMPLE_RATE, out_rate).quality})", ours),
            ("Pipecat default (VHQ)", pipecat),
        ):
            r = await fn(out_rate, pcm, segments)
            lost = float(np.mean(r.lost))
            print(
                f"| {out_rate / 1000:g} | {name} | {r.held_mean_ms:.1f} / {r.held_max_ms:.1f} "
                f"| {r.cpu_mean_us:.1f} / {r.cpu_p99_us:.1f} "
                f"| {lost:.1f} / {lost * 1000 / out_rate:.1f} |"
            )
            if fn is ours and any(r.lost):
                raise SystemExit(f"ours lost samples at {out_rate} Hz: {r.lost}")
    print()
    print("Delay held back by soxr quality (ours, mean ms):")
    print("| out kHz |   HQ   |  VHQ   |")
    print("|---|---|---|")
    for line in quality_delays(pcm[: 5 * SAMPLE_RATE * 2]):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
