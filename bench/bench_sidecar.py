"""Sidecar benchmark: preview TTFA/RTF, and the sidecar's own overhead per stream.

1. Preview engine through the sidecar: time to first audio (request sent -> first PCM at the
   client) and real-time factor (request -> last byte, over the audio's duration), sequential.
2. Overhead: the SGLang-Omni stand-in is the engine and stamps `perf_counter_ns()` into the
   first bytes of each stream as it sends them; the client subtracts that from its own clock on
   arrival (one monotonic clock for all processes on the machine). So the number is exactly
   "first byte leaves the engine -> first byte reaches the client", the sidecar's hop,
   at 1, 8 and 32 concurrent streams (each worker streams back to back, start times jittered).

Run: .venv/bin/python bench/bench_sidecar.py
"""

from __future__ import annotations

import asyncio
import random
import shlex
import struct
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.sidecar import SidecarProcess, free_port  # noqa: E402

from s2_plugin.audio import duration_s  # noqa: E402
from s2_plugin.client import S2Client  # noqa: E402

TEXT = (
    "Your order has shipped and should arrive on Friday. "
    "Please call me back tomorrow morning at nine."
)
STANDIN = ROOT / "tests" / "support" / "sglang_standin.py"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def bench_preview(tmp: Path, runs: int = 10) -> None:
    with SidecarProcess(tmp / "preview") as sidecar:
        async with S2Client(sidecar.url) as client:
            await client.synthesize("Warm up.")
            ttfa, rtf = [], []
            for _ in range(runs):
                start = time.perf_counter()
                first, pcm = None, b""
                async for chunk in client.speech(TEXT):
                    first = first or time.perf_counter() - start
                    pcm += chunk
                ttfa.append(first * 1000)
                rtf.append((time.perf_counter() - start) / duration_s(pcm))
    print(f"preview engine, {runs} sequential requests, {duration_s(pcm):.1f} s of audio each")
    print(f"  TTFA ms  p50 {pct(ttfa, 50):7.1f}  p95 {pct(ttfa, 95):7.1f}")
    print(f"  RTF      p50 {pct(rtf, 50):7.3f}  p95 {pct(rtf, 95):7.3f}")


async def overhead(client: S2Client, voice: str, samples: list[float], deadline: float) -> None:
    await asyncio.sleep(random.uniform(0, 0.2))
    while time.perf_counter() < deadline:
        head = b""
        async for chunk in client.speech(TEXT, voice=voice):
            if len(head) < 8:
                head += chunk
                if len(head) >= 8:
                    sent_ns = struct.unpack("<q", head[:8])[0]
                    samples.append((time.perf_counter_ns() - sent_ns) / 1e6)


async def bench_overhead(tmp: Path, seconds: float = 6.0) -> None:
    port = free_port()
    args = ["--sglang-command", shlex.join([sys.executable, str(STANDIN)])]
    args += ["--sglang-port", str(port), "--model-path", str(tmp)]
    personas = ROOT / "examples" / "personas" / "personas.toml"
    sidecar = SidecarProcess(tmp / "s2", engine="sglang_omni", personas=personas, args=args)
    with sidecar:
        async with aiohttp.ClientSession() as s:
            # ~0.5 s per stream, paced like a (fast) engine, so streams overlap as in real use.
            control = {"stamp": True, "frame_s": 0.004}
            await (await s.post(f"http://127.0.0.1:{port}/standin/control", json=control)).read()
        print("sidecar overhead, engine first byte -> client first byte (SGLang-Omni stand-in)")
        # joe: every request names the persona's stored clip (audio_path); default: none.
        for voice, streams in [("joe", 1), ("joe", 8), ("joe", 32), ("default", 32)]:
            samples: list[float] = []
            async with S2Client(sidecar.url) as client:
                deadline = time.perf_counter() + seconds
                await asyncio.gather(
                    *(overhead(client, voice, samples, deadline) for _ in range(streams))
                )
            print(
                f"  {voice:7s} {streams:2d} streams: n={len(samples):4d}  "
                f"p50 {pct(samples, 50):6.2f} ms  p95 {pct(samples, 95):6.2f} ms  "
                f"p99 {pct(samples, 99):6.2f} ms  "
                f"max {max(samples):6.2f} ms"
            )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await bench_preview(Path(tmp))
        await bench_overhead(Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
