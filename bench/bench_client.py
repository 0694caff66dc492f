"""How long the client holds the first PCM chunk, from server write to `SpeechStream` event.

A loopback aiohttp server stamps the moment it writes the first chunk; the client side stamps
the moment the chunk leaves `speech()` and the moment the first `AudioChunk` leaves
`SpeechStream` (resampled to the framework rate). Both ends share one clock (one process).
Prints median and 95th percentile in milliseconds. Run: `python bench/bench_client.py`.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from aiohttp import web

from s2_plugin.client import S2Client
from s2_plugin.stream import AudioChunk, SpeechOptions, SpeechStream

RUNS = 200
CHUNK = b"\x10\x00" * 2048
written_at: list[float] = []


async def speech(request: web.Request) -> web.StreamResponse:
    await request.json()
    response = web.StreamResponse(headers={"X-Sample-Rate": "44100"})
    await response.prepare(request)
    written_at.append(time.perf_counter())
    await response.write(CHUNK)
    for _ in range(20):
        await response.write(CHUNK)
    await response.write_eof()
    return response


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return f"{name:<44} median {statistics.median(ms):6.3f} ms   p95 {p95:6.3f} ms"


async def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/audio/speech", speech)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async with S2Client(f"http://127.0.0.1:{port}") as client:
        direct: list[float] = []
        for _ in range(RUNS):
            async for _chunk in client.speech("Hello there.", voice="a"):
                direct.append(time.perf_counter() - written_at[-1])
                break
        print(summary("server write -> first chunk from speech()", direct))

        for rate in (44100, 24000, 8000):
            through: list[float] = []
            for _ in range(RUNS):
                stream = SpeechStream(client, SpeechOptions(voice="a"), sample_rate=rate)
                stream.push_text("Hello there, this is the first clause of a reply.")
                stream.end_input()
                async for event in stream:
                    if isinstance(event, AudioChunk):
                        through.append(time.perf_counter() - written_at[-1])
                        break
            print(summary(f"server write -> first AudioChunk at {rate} Hz", through))
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
