"""SGLang-Omni's real router (`sgl-omni-router-py`) over stand-in workers: scaling and overhead.

1. Throughput with 1, 2 and 3 workers, each a stand-in with a fixed simulated GPU time per
   request (`slots` requests at once, `frame_s` per codec frame), kept saturated by a closed loop
   of clients through the router; compared with linear scaling from one worker.
2. The router's own added time to first byte at 32 concurrent streams: the same requests,
   half straight to a worker and half through the router, interleaved in one run.
3. How long after a worker dies the router stops routing to it, at the test settings and the
   settings the deployment docs recommend, with no traffic (health checks alone) and with
   traffic (a failed request also counts as a failed check).

Run: .venv/bin/python bench/bench_router.py
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.router import Fleet  # noqa: E402

TEXT = "Your order has shipped and should arrive on Friday."  # 54 frames
BODY = {"input": TEXT, "stream": True, "response_format": "pcm"}
SLOTS, FRAME_S = 2, 0.01  # ~0.55 s of simulated GPU per request, 2 at once per worker
RECOMMENDED = ["--health-check-interval-secs", "2", "--health-failure-threshold", "2"]
RECOMMENDED += ["--health-success-threshold", "2", "--health-check-timeout-secs", "2"]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def one(session: aiohttp.ClientSession, url: str) -> float:
    """Seconds from sending the request to its first byte; reads the stream to its end."""
    start = time.perf_counter()
    async with session.post(url + "/v1/audio/speech", json=BODY) as r:
        r.raise_for_status()
        await r.content.readany()
        first = time.perf_counter() - start
        await r.read()
    return first


async def throughput(fleet: Fleet, seconds: float) -> float:
    clients = 2 * SLOTS * len(fleet.workers)  # a queue behind every slot
    done = 0
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one(session, fleet.router_url)
            done += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await one(session, fleet.router_url)  # warm connections
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return done / (time.perf_counter() - start)


async def bench_scaling(tmp: Path) -> None:
    print(f"throughput, {SLOTS} slots x {54 * FRAME_S:.2f} s simulated GPU per request per worker")
    rates = []
    for n in (1, 2, 3):
        with Fleet(n, tmp / f"scale{n}") as fleet:
            for worker in fleet.workers:
                worker.control(slots=SLOTS, frame_s=FRAME_S)
            rates.append(await throughput(fleet, 8.0))
        linear = rates[0] * n
        print(f"  {n} worker(s): {rates[-1]:6.2f} req/s  ({rates[-1] / linear:6.1%} of linear)")


async def bench_overhead(tmp: Path) -> None:
    for streams in (1, 8, 32):
        await overhead_at(tmp, streams)


async def overhead_at(tmp: Path, streams: int, seconds: float = 6.0) -> None:
    with Fleet(1, tmp / f"overhead{streams}") as fleet:
        fleet.workers[0].control(frame_s=0.002)  # short streams that overlap
        samples: dict[str, list[float]] = {"direct": [], "router": []}
        deadline = time.perf_counter() + seconds
        targets = {"direct": fleet.workers[0].url, "router": fleet.router_url}

        async def client(session: aiohttp.ClientSession, i: int) -> None:
            n = i
            while time.perf_counter() < deadline:
                path = ("direct", "router")[n % 2]
                samples[path].append(await one(session, targets[path]) * 1000)
                n += 1

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await asyncio.gather(*(client(session, i) for i in range(streams)))
    d, r = samples["direct"], samples["router"]
    print(f"time to first byte at {streams} streams, one worker (ms)")
    for name, values in samples.items():
        print(
            f"  {name:6s} n={len(values):5d}  p50 {pct(values, 50):6.2f}  "
            f"p95 {pct(values, 95):6.2f}  p99 {pct(values, 99):6.2f}"
        )
    print(
        f"  router adds: p50 {pct(r, 50) - pct(d, 50):+6.2f} ms, "
        f"p95 {pct(r, 95) - pct(d, 95):+6.2f} ms"
    )


async def time_to_drain(fleet: Fleet, traffic: bool) -> float:
    victim = fleet.workers[0]
    stop = asyncio.Event()

    async def load(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError):
                await one(session, fleet.router_url)

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(load(session)) for _ in range(4 if traffic else 0)]
        await asyncio.sleep(0.5)
        victim.kill()
        start = time.perf_counter()
        while victim.url in fleet.routable():
            await asyncio.sleep(0.01)
        took = time.perf_counter() - start
        stop.set()
        await asyncio.gather(*tasks)
    victim.start()
    fleet.wait_routable(len(fleet.workers))
    return took


async def bench_drain(tmp: Path) -> None:
    print("worker death -> router stops routing to it (s), 3 workers")
    settings = [("test (1 s, 1 failure)", []), ("recommended (2 s, 2 failures)", RECOMMENDED)]
    for name, args in settings:
        with Fleet(3, tmp / "drain", *args) as fleet:
            idle = [await time_to_drain(fleet, traffic=False) for _ in range(3)]
            busy = [await time_to_drain(fleet, traffic=True) for _ in range(3)]
        print(
            f"  {name:30s} no traffic: {min(idle):5.2f}-{max(idle):5.2f}   "
            f"with traffic: {min(busy):5.2f}-{max(busy):5.2f}"
        )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await bench_scaling(Path(tmp))
        await bench_overhead(Path(tmp))
        await bench_drain(Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
