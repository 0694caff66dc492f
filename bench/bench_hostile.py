"""The sidecar against hostile clients, on loopback, preview engine (issue 24's numbers).

1. Bombs: peak RSS of the sidecar (Linux VmHWM) after each clip is sent as an upload and as an
   inline reference: a FLAC declaring 2^36 samples, 30 minutes of constant FLAC, 10 minutes of
   quiet Vorbis (each refused from its header).
2. 64 inline-reference requests at once, each a 15.3 MiB body (59 s of 48 kHz stereo WAV,
   distinct clips): how many were served and refused, and the peak RSS.
3. 100 stored personas of 59 s: RSS after registering them, and after a restart (loading them).
4. /health latency (p50, max) while 20-persona casts of 59 s clips are refused, six at a time.

Run: .venv/bin/python bench/bench_hostile.py
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import psutil
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import bombs, raw_http  # noqa: E402
from support.sidecar import SidecarProcess  # noqa: E402
from support.signals import speechlike  # noqa: E402

MB = 1e6


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


def clip(seconds: float, rate: int, channels: int, seed: int) -> bytes:
    """A speech-like WAV, made distinct by `seed` (so no cache can answer for it)."""
    x = speechlike(seconds, rate) * (1 - seed * 1e-4)
    buf = io.BytesIO()
    sf.write(buf, np.stack([x] * channels, axis=1), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def speech_body(audio: bytes) -> bytes:
    ref = {"data": base64.b64encode(audio).decode(), "text": "A clip."}
    return json.dumps({"input": "Hi.", "response_format": "wav", "references": [ref]}).encode()


def bench_bombs(process: SidecarProcess) -> None:
    assert process.pid is not None
    print("1. bombs: answer, sidecar peak RSS after it (MB)")
    print(f"   at start: {bombs.peak_rss(process.pid) / MB:.0f}")
    for label, bomb in (
        ("FLAC declaring 2^36 samples", bombs.constant_flac(20, declare=2**36 - 1)),
        ("30 min of constant FLAC", bombs.constant_flac(1800)),
        ("10 min of quiet Vorbis", bombs.constant_vorbis(600)),
    ):
        fields: dict[str, str | bytes] = {"name": "b", "transcript": "x", "audio": bomb}
        up, body = raw_http.upload(process.port, fields)
        headers = {"Content-Type": "application/json"}
        inline, _ = raw_http.request(
            process.port, "POST", "/v1/audio/speech", headers=headers, body=speech_body(bomb)
        )
        peak = bombs.peak_rss(process.pid) / MB
        print(
            f"   {label:28s} {len(bomb) / 1024:6.0f} KiB: upload {up} "
            f"({body['error']['code']}), inline {inline}; peak {peak:.0f}"
        )


async def bench_inline(process: SidecarProcess, n: int = 64) -> None:
    assert process.pid is not None
    bodies = [speech_body(clip(59, 48000, 2, i)) for i in range(n)]
    print(f"2. {n} inline references at once, {len(bodies[0]) / 2**20:.1f} MiB bodies")
    before = bombs.peak_rss(process.pid) / MB
    url = process.url + "/v1/audio/speech"
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as s:

        async def one(body: bytes) -> int:
            headers = {"Content-Type": "application/json"}
            async with s.post(url, data=body, headers=headers) as r:
                await r.read()
                return r.status

        start = time.perf_counter()
        statuses = await asyncio.gather(*(one(b) for b in bodies), return_exceptions=True)
        wall = time.perf_counter() - start
    counts: dict[str, int] = {}
    for status in statuses:
        key = str(status) if isinstance(status, int) else type(status).__name__
        counts[key] = counts.get(key, 0) + 1
    peak = bombs.peak_rss(process.pid) / MB
    print(f"   answers {counts} in {wall:.1f} s; peak RSS {before:.0f} -> {peak:.0f} MB")


def bench_store(process: SidecarProcess, n: int = 100) -> list[str]:
    assert process.pid is not None
    print(f"3. {n} stored personas of 59 s")
    start_rss = rss_mb(process.pid)
    names = [f"p{i:03d}" for i in range(n)]
    for i, name in enumerate(names):
        fields: dict[str, str | bytes] = {
            "name": name,
            "transcript": "A long clip.",
            "audio": clip(59, 16000, 1, i),
        }
        status, _ = raw_http.upload(process.port, fields)
        assert status == 201, status
    on_disk = sum(p.stat().st_size for p in process.store.glob("*.wav")) / MB
    registered = rss_mb(process.pid)
    process.restart()
    assert process.pid is not None
    print(
        f"   RSS {start_rss:.0f} MB at start, {registered:.0f} MB after registering, "
        f"{rss_mb(process.pid):.0f} MB after a restart; {on_disk:.0f} MB on disk"
    )
    return names


async def bench_cast(process: SidecarProcess, names: list[str], rounds: int = 6) -> None:
    cast = names[:20]
    body = {"input": "Hello.", "cast": cast, "voice": cast[0]}
    url = process.url
    latencies: list[float] = []
    refused: list[int] = []
    async with aiohttp.ClientSession() as s:

        async def casts() -> None:
            for _ in range(rounds):
                posts = [s.post(url + "/v1/audio/speech", json=body) for _ in range(6)]
                for response in await asyncio.gather(*posts):
                    refused.append(response.status)
                    response.release()

        async def health(done: asyncio.Task[None]) -> None:
            while not done.done():
                start = time.perf_counter()
                async with s.get(url + "/health") as r:
                    await r.read()
                latencies.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(casts())
        await health(task)
        await task
    casts_dir = process.store / "casts"
    files = len(list(casts_dir.glob("*"))) if casts_dir.exists() else 0
    print(
        f"4. /health while {len(refused)} 20-persona casts were refused ({set(refused)}): "
        f"p50 {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms "
        f"({len(latencies)} probes); {files} files in casts/"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with SidecarProcess(root / "bombs" / "store") as process:
            bench_bombs(process)
        with SidecarProcess(root / "inline" / "store") as process:
            asyncio.run(bench_inline(process))
        with SidecarProcess(root / "store" / "store") as process:
            names = bench_store(process)
            asyncio.run(bench_cast(process, names))


if __name__ == "__main__":
    main()
