"""The sidecar on a stand-in SGLang-Omni that serves by the timing model (support/s2_timing.py):
whole audio through the sidecar, arrival order past `max_running_requests`, a hang-up frees its
slot; with a budget of generations, the sidecar sends what is due first. Counts and order only;
the model's speed is tested on its virtual clock (tests/test_s2_timing.py) and measured by
bench/bench_capacity.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.sidecar import SidecarProcess
from support.upstream import Upstream, standin_sidecar
from support.waiting import until, wait_for

from s2_plugin.client import S2Client

FRAME = 2048
PROFILE = """
[serving]
step_s = 0.002
step_growth = 0.1
prefill_s = 0.002
max_running_requests = 1
"""


@pytest.fixture(scope="module")
async def engine(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[SidecarProcess, Upstream]]:
    root = tmp_path_factory.mktemp("model")
    profile = root / "one.toml"
    profile.write_text(PROFILE)
    sidecar, upstream = standin_sidecar(root)
    with sidecar:
        sidecar.wait_ready()
        await upstream.control(profile=str(profile))
        yield sidecar, upstream


async def reaches(upstream: Upstream, key: str, value: int) -> None:
    async def holds() -> bool:
        return bool((await upstream.state())[key] == value)

    await until(holds, f"the stand-in's {key} at {value}")


async def test_requests_past_the_batch_wait_in_arrival_order(
    engine: tuple[SidecarProcess, Upstream],
) -> None:
    sidecar, upstream = engine
    long = " ".join(["word"] * 40)  # 240 frames: still running when the others arrive
    texts = [long, "Two words.", "Three more words."]
    order: list[int] = []
    got: dict[int, int] = {}

    async def speak(client: S2Client, n: int) -> None:
        got[n] = 0
        async for pcm in client.speech(texts[n], voice="joe"):
            if not got[n]:
                order.append(n)
            got[n] += len(pcm) // 2

    async with S2Client(sidecar.url) as client:
        first = asyncio.create_task(speak(client, 0))
        await reaches(upstream, "running", 1)
        second = asyncio.create_task(speak(client, 1))
        await reaches(upstream, "waiting", 1)
        third = asyncio.create_task(speak(client, 2))
        await reaches(upstream, "waiting", 2)
        await asyncio.gather(first, second, third)
    assert order == [0, 1, 2]
    assert got == {0: 240 * FRAME, 1: 12 * FRAME, 2: 18 * FRAME}


async def test_a_hang_up_frees_its_place_in_the_batch(
    engine: tuple[SidecarProcess, Upstream],
) -> None:
    sidecar, upstream = engine
    endless = " ".join(["word"] * 300)
    async with S2Client(sidecar.url) as client:
        async for _ in client.speech(endless, voice="joe"):
            break  # hang up after the first chunk
        await reaches(upstream, "running", 0)
        before = (await upstream.state())["frames_made"]
        audio = b"".join([pcm async for pcm in client.speech("Still served.", voice="joe")])
    assert len(audio) // 2 == 12 * FRAME
    assert isinstance(before, int) and before < 300 * 6


async def test_with_a_budget_the_sidecar_sends_what_is_due_first(tmp_path: Path) -> None:
    """One generation at a time: a look-ahead that came first waits for a reply due now."""
    profile = tmp_path / "one.toml"
    profile.write_text(PROFILE)
    sidecar, upstream = standin_sidecar(tmp_path)
    sidecar.args += ["--max-concurrency", "1", "--queue-wait", "60", "--lead", "4.9"]
    texts = [" ".join(["word"] * 300), "Due in five seconds.", "Due right now."]
    order: list[int] = []

    async def speak(client: S2Client, n: int, due_in: float | None) -> None:
        async for _ in client.speech(texts[n], voice="joe", due_in=due_in):
            if n not in order:
                order.append(n)

    def waiting() -> float:
        return sidecar.metrics()["s2_queue_depth"]

    with sidecar:
        sidecar.wait_ready()
        await upstream.control(profile=str(profile))
        async with S2Client(sidecar.url, read_timeout=30) as client:
            first = asyncio.create_task(speak(client, 0, None))
            await reaches(upstream, "running", 1)
            ahead = asyncio.create_task(speak(client, 1, 5.0))  # ready at once, due later
            await asyncio.to_thread(wait_for, lambda: waiting() == 1, "the look-ahead queued")
            now = asyncio.create_task(speak(client, 2, None))
            await asyncio.to_thread(wait_for, lambda: waiting() == 2, "the reply due now queued")
            await asyncio.gather(first, ahead, now)
    assert order == [0, 2, 1]
