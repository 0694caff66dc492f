"""Sidecar benchmark: preview TTFA/RTF, and the sidecar's own overhead per stream.

1. Preview engine through the sidecar: time to first audio (request sent -> first PCM at the
   client) and real-time factor (request -> last byte, over the audio's duration), sequential.
   Hang-up: a client closes mid-stream, and the time until the engine is idle again
   (`s2_engine_busy` back to 0 on /metrics) is measured; the tests only check that it stops.
2. Overhead: the SGLang-Omni stand-in is the engine and stamps `perf_counter_ns()` into the
   first bytes of each stream as it sends them; the client subtracts that from its own clock on
   arrival (one monotonic clock for all processes on the machine). So the number is exactly
   "first byte leaves the engine -> first byte reaches the client", the sidecar's hop,
   at 1, 8 and 32 concurrent streams (each worker streams back to back, start times jittered).
3. What one persona request costs in its body: bytes, and the time SGLang-Omni 0.1.9 spends on
   its event loop before generating (`json.loads`, then `b64decode(validate=True)` of inline
   data, `speech_service.py`), for the reference by path (a local engine), inline FLAC (a
   remote one) and inline WAV (what every request carried before).

Run: .venv/bin/python bench/bench_sidecar.py
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import shlex
import struct
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from s2_sidecar import clips  # noqa: E402
from s2_sidecar.engines import compact  # noqa: E402
from support.sidecar import SidecarProcess, free_port  # noqa: E402

from s2_plugin.audio import duration_s  # noqa: E402
from s2_plugin.client import S2Client  # noqa: E402
from s2_plugin.personas import load_personas  # noqa: E402

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
        stops = [await hang_up(sidecar) for _ in range(runs)]
    print(f"preview engine, {runs} sequential requests, {duration_s(pcm):.1f} s of audio each")
    print(f"  TTFA ms  p50 {pct(ttfa, 50):7.1f}  p95 {pct(ttfa, 95):7.1f}")
    print(f"  RTF      p50 {pct(rtf, 50):7.3f}  p95 {pct(rtf, 95):7.3f}")
    print(f"  hang-up -> engine idle ms  p50 {pct(stops, 50):6.1f}  max {max(stops):6.1f}")


async def hang_up(sidecar: SidecarProcess) -> float:
    """Close a stream once its first sentence arrived; ms until the engine is idle."""
    text = "Hello. " + ", ".join(["this long sentence keeps the engine busy for a while"] * 8)
    async with aiohttp.ClientSession() as s:
        response = await s.post(sidecar.url + "/v1/audio/speech", json={"input": text})
        await response.content.readany()
        while sidecar.metrics()["s2_engine_busy"] < 1:
            await asyncio.sleep(0.001)
        response.close()
        start = time.perf_counter()
        while sidecar.metrics()["s2_engine_busy"] > 0:
            await asyncio.sleep(0.001)
        return (time.perf_counter() - start) * 1000


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


def bench_reference_cost(runs: int = 50) -> None:
    persona = load_personas(ROOT / "examples" / "personas" / "personas.toml")[0]
    wav = persona.clip_bytes()
    flac, _ = compact.encode(wav)
    references = {
        "by path": {"audio_path": "/var/lib/s2/personas/joe.0123456789abcdef.wav"},
        "inline FLAC": {"data": base64.b64encode(flac).decode(), "media_type": "audio/flac"},
        "inline WAV": {"data": base64.b64encode(wav).decode(), "media_type": "audio/wav"},
    }
    print("one persona request to SGLang-Omni: body size, and its parse + base64 check")
    for name, reference in references.items():
        body = json.dumps(
            {
                "input": TEXT,
                "stream": True,
                "references": [{**reference, "text": persona.transcript}],
            }
        )
        start = time.perf_counter()
        for _ in range(runs):
            for ref in json.loads(body)["references"]:
                if "data" in ref:
                    base64.b64decode(ref["data"], validate=True)
        took = (time.perf_counter() - start) / runs * 1000
        print(f"  {name:12s} {len(body):9d} bytes  {took:7.3f} ms")
    # The router's fallback when FLAC does not fit: how close the MP3 stays to the clip.
    canonical = clips.prepare(wav).wav()
    mp3, _ = compact.encode(canonical, fits=0)
    ref, _ = sf.read(io.BytesIO(canonical))
    back, _ = sf.read(io.BytesIO(mp3))
    n = min(len(ref), len(back))  # libsndfile decodes LAME's MP3 gapless: no lag to align
    snr = 10 * np.log10(np.sum(ref[:n] ** 2) / np.sum((ref[:n] - back[:n]) ** 2))
    print(f"  MP3 fallback: {len(mp3)} bytes, {snr:.1f} dB SNR against the canonical clip")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await bench_preview(Path(tmp))
        await bench_overhead(Path(tmp))
    bench_reference_cost()


if __name__ == "__main__":
    asyncio.run(main())
