"""The sidecar under load, on loopback, preview engine (issue 11's numbers).

1. Memory: RSS of the sidecar process after 1,000 mixed requests (formats, lengths, four at a
   time), every 50th a 4,000-character run without punctuation (read for its first 2 MB of
   audio, then dropped, as a client that hangs up); RSS sampled every 100 requests
   (target: under 600 MB, flat after warm-up).
2. Overload: 64 streams at once; the share served and refused, first byte p95 of those served,
   and how long the refused waited for their 503 (target: within 50 ms).
3. Shutdown: 10 clients that never read their streams, then SIGTERM; seconds until the process
   has exited (target: drain limit + 1 s; the default drain limit is 10 s).

Run: .venv/bin/python bench/bench_load.py [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.sidecar import PERSONAS_TOML, SidecarProcess  # noqa: E402

SHORT = [
    "Hello there, how can I help you today?",
    "Your order has shipped and should arrive on Friday.",
    "Please call me back tomorrow morning at nine.",
]
FORMATS = ["pcm", "wav", "mp3", "opus", "aac", "flac"]
UNPUNCTUATED = " ".join(["word"] * 800)[:4000]
LONG_READ = 2_000_000


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


async def one(s: aiohttp.ClientSession, url: str, n: int) -> None:
    if n % 50 == 49:
        body = {"input": UNPUNCTUATED, "stream": True, "response_format": "pcm"}
        async with s.post(url, json=body) as r:
            got = 0
            async for chunk in r.content.iter_any():
                got += len(chunk)
                if got >= LONG_READ:
                    break  # hang up: the sidecar must stop and free the generation
        return
    fmt = FORMATS[n % len(FORMATS)]
    body = {"input": SHORT[n % len(SHORT)], "response_format": fmt, "voice": "joe"}
    async with s.post(url, json=body) as r:
        assert r.status in (200, 503), (r.status, await r.text())
        await r.read()


async def bench_memory(sidecar: SidecarProcess, requests: int) -> None:
    pid = sidecar.pid
    assert pid is not None
    url = sidecar.url + "/v1/audio/speech"
    print(f"memory: {requests} mixed requests, 4 at a time; RSS at start {rss_mb(pid):.0f} MB")
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)
    samples: list[tuple[int, float]] = []

    async def worker(s: aiohttp.ClientSession) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            await one(s, url, n)
            if n % 100 == 99:
                samples.append((n + 1, rss_mb(pid)))

    start = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        await asyncio.gather(*(worker(s) for _ in range(4)))
    samples.sort()
    print("  after requests: " + ", ".join(f"{n}: {mb:.0f} MB" for n, mb in samples))
    print(f"  final RSS {rss_mb(pid):.0f} MB, peak sampled {max(mb for _, mb in samples):.0f} MB,"
          f" {time.perf_counter() - start:.0f} s")  # fmt: skip


async def bench_overload(sidecar: SidecarProcess, streams: int = 64) -> None:
    url = sidecar.url + "/v1/audio/speech"
    body = {"input": SHORT[1], "stream": True, "response_format": "pcm"}
    barrier = asyncio.Event()

    async def stream(s: aiohttp.ClientSession) -> tuple[int, float]:
        await barrier.wait()
        start = time.perf_counter()
        async with s.post(url, json=body) as r:
            if r.status == 200:
                await r.content.readany()
            elapsed = (time.perf_counter() - start) * 1000
            await r.read()
            return r.status, elapsed

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as s:
        tasks = [asyncio.create_task(stream(s)) for _ in range(streams)]
        await asyncio.sleep(0.2)  # every task is waiting at the barrier
        barrier.set()
        results = await asyncio.gather(*tasks)
    served = [ms for status, ms in results if status == 200]
    refused = [ms for status, ms in results if status == 503]
    print(f"\noverload: {streams} streams at once")
    print(f"  served {len(served) / streams:.0%}, refused (503) {len(refused) / streams:.0%}")
    if served:
        print(f"  first byte of the served: p50 {np.median(served):.0f} ms, "
              f"p95 {np.percentile(served, 95):.0f} ms")  # fmt: skip
    if refused:
        print(f"  time to the 503: p50 {np.median(refused):.1f} ms, "
              f"p95 {np.percentile(refused, 95):.1f} ms, max {max(refused):.1f} ms")  # fmt: skip


def bench_shutdown(tmp: Path, clients: int = 10) -> None:
    # Enough slots for every stalled client, so each holds a live generation.
    sidecar = SidecarProcess(tmp / "drain", args=["--max-concurrency", str(clients)]).start()
    body = json.dumps({"input": UNPUNCTUATED, "stream": True, "response_format": "pcm"}).encode()
    socks = []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", sidecar.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        socks.append(s)
    deadline = time.monotonic() + 60
    while sidecar.metrics()["s2_active_streams"] < clients and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sidecar.pid is not None
    proc = psutil.Process(sidecar.pid)
    start = time.monotonic()
    proc.terminate()
    code = proc.wait(120)
    took = time.monotonic() - start
    sidecar.stop()  # already gone: only forgets it
    for s in socks:
        s.close()
    cut = [line for line in sidecar.log().splitlines() if "cutting" in line]
    print(f"\nshutdown: {clients} stalled clients, drain limit 10 s")
    print(f"  SIGTERM to exit: {took:.2f} s (exit code {code})")
    print(f"  {cut[-1].split(': ', 1)[-1][:90] if cut else 'nothing cut'}")


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=1000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with SidecarProcess(Path(tmp) / "store", personas=PERSONAS_TOML) as sidecar:
            await bench_memory(sidecar, args.requests)
            await bench_overload(sidecar)
        bench_shutdown(Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
