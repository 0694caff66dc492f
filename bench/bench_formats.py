"""Speech formats: what each container adds to the first byte, and what each encoder costs.

1. First byte: the real sidecar (preview engine), one short sentence per request, sequential,
   for every `response_format`; time from sending the request to the first body byte, and the
   difference to `pcm` (target: a container adds at most 20 ms).
2. Encoder CPU: the sidecar's own `Encoder` on 30 s of the preview's speech fed in engine-sized
   chunks; process CPU seconds per second of audio.

Run: .venv/bin/python bench/bench_formats.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from s2_sidecar import encoders  # noqa: E402
from support.sidecar import SidecarProcess  # noqa: E402

from s2_plugin.audio import SAMPLE_RATE  # noqa: E402

TEXT = "Your order has shipped and should arrive on Friday."
RUNS = 20


async def first_byte_ms(session: aiohttp.ClientSession, url: str, fmt: str) -> float:
    body = {"input": TEXT, "response_format": fmt, "stream": fmt == "pcm"}
    start = time.perf_counter()
    async with session.post(url + "/v1/audio/speech", json=body) as r:
        assert r.status == 200, await r.text()
        await r.content.readany()
        elapsed = time.perf_counter() - start
        await r.read()
    return elapsed * 1000


async def bench_first_byte(sidecar: SidecarProcess) -> bytes:
    async with aiohttp.ClientSession() as s:
        for fmt in encoders.FORMATS:  # warm every code path once
            await first_byte_ms(s, sidecar.url, fmt)
        results: dict[str, list[float]] = {fmt: [] for fmt in encoders.FORMATS}
        for _ in range(RUNS):  # interleaved, so load changes hit every format alike
            for fmt in encoders.FORMATS:
                results[fmt].append(await first_byte_ms(s, sidecar.url, fmt))
        body = {"input": TEXT * 6, "response_format": "pcm", "stream": True}
        async with s.post(sidecar.url + "/v1/audio/speech", json=body) as r:
            speech = await r.read()
    base = float(np.median(results["pcm"]))
    print(f"first byte after the request, preview engine, {RUNS} runs each (ms)")
    print(f"{'format':>7} {'p50':>7} {'p95':>7} {'p50 - pcm':>10}")
    for fmt, values in results.items():
        p50, p95 = float(np.median(values)), float(np.percentile(values, 95))
        print(f"{fmt:>7} {p50:7.1f} {p95:7.1f} {p50 - base:+10.1f}")
    return speech


def bench_encoders(speech: bytes) -> None:
    seconds = len(speech) / 2 / SAMPLE_RATE
    chunk = 8192 * 2  # about 0.19 s: S2's follow-up stride is 16 frames of 2048 samples
    print(f"\nencoder CPU, {seconds:.1f} s of speech in {chunk // 2}-sample chunks")
    print(f"{'format':>7} {'rate':>6} {'ms CPU per s of audio':>22} {'bytes per s':>12}")
    for fmt in encoders.FORMATS:
        rate = encoders.rate_for(fmt, None)
        best = float("inf")
        for _ in range(3):
            encoder = encoders.Encoder(fmt, rate)
            start = time.process_time()
            size = sum(
                len(encoder.encode(speech[i : i + chunk])) for i in range(0, len(speech), chunk)
            )
            size += len(encoder.finish())
            best = min(best, time.process_time() - start)
        print(f"{fmt:>7} {rate:>6} {best / seconds * 1000:22.2f} {size / seconds:12.0f}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, SidecarProcess(Path(tmp) / "store") as sidecar:
        speech = await bench_first_byte(sidecar)
    bench_encoders(speech)


if __name__ == "__main__":
    asyncio.run(main())
