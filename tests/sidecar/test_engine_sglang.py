"""The sglang_omni engine, for real, against the SGLang-Omni stand-in launched as `sgl-omni`."""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from support.sidecar import PERSONAS_TOML, SidecarProcess, free_port

from s2_plugin.client import S2Client, S2StatusError

STANDIN = Path(__file__).resolve().parents[1] / "support" / "sglang_standin.py"
TEXT = "Your order has shipped and should arrive on Friday."


class Upstream:
    """Talks to the stand-in's control endpoints."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    async def control(self, **settings: object) -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.post(self.url + "/standin/control", json=settings),
        ):
            pass

    async def state(self) -> dict[str, object]:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/standin/state") as r:
            return dict(await r.json())

    async def raw_bodies(self) -> list[str]:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/standin/requests") as r:
            return list(await r.json())

    async def bodies(self) -> list[dict[str, object]]:
        return [json.loads(raw) for raw in await self.raw_bodies()]


@pytest.fixture(scope="module")
def s2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SidecarProcess, Upstream]]:
    port = free_port()
    args = [
        "--sglang-command", shlex.join([sys.executable, str(STANDIN)]),
        "--sglang-port", str(port),
        "--sglang-read-timeout", "1",
        "--sglang-backoff", "0.2",
        "--sglang-health-interval", "0.3",
        "--stream-stride", "4",
    ]  # fmt: skip
    root = tmp_path_factory.mktemp("sglang")
    process = SidecarProcess(
        root / "store", engine="sglang_omni", personas=PERSONAS_TOML, args=args
    )
    with process:
        yield process, Upstream(port)


@pytest.fixture
async def upstream(s2: tuple[SidecarProcess, Upstream]) -> Upstream:
    sidecar, up = s2
    sidecar.wait_ready()
    await up.control(mode="ok", frame_s=0.0, stamp=False)
    return up


def expected_pcm(text: str) -> np.ndarray:
    """What the stand-in sends: 6 frames a word, every sample `len(text)`."""
    frames = 6 * len(text.split())
    return np.full(frames * 2048, len(text), dtype="<i2")


async def test_launches_on_loopback_with_strict_port_and_low_latency_strides(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    status, health = sidecar.health()
    assert status == 200
    assert (health["engine"], health["preview"], health["model"]) == (
        "sglang_omni",
        False,
        "fishaudio/s2-pro",
    )
    argv = (await upstream.state())["argv"]
    assert argv[:3] == ["serve", "--model-path", "fishaudio/s2-pro"]  # type: ignore[index]
    flags = dict(zip(argv[1::2], argv[2::2], strict=False))  # type: ignore[index]
    assert flags["--host"] == "127.0.0.1"
    assert flags["--vocoder.factory.stream_stride"] == "4"
    assert flags["--vocoder.factory.stream_followup_stride"] == "16"


async def test_translates_requests_and_streams_pcm_back(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    async with S2Client(sidecar.url) as client:
        pcm = await client.synthesize(
            TEXT, voice="joe", style="calm", temperature=0.7, top_k=20, seed=5
        )
    body = (await upstream.bodies())[-1]
    assert body["input"] == "[calm] " + TEXT
    assert (body["stream"], body["response_format"]) == (True, "pcm")
    assert (body["temperature"], body["top_k"], body["seed"]) == (0.7, 20, 5)
    assert "voice" not in body and "top_p" not in body
    (reference,) = body["references"]  # type: ignore[misc]
    canonical = next(sidecar.store.glob("joe.*.wav")).read_bytes()
    assert base64.b64decode(reference["data"]) == canonical
    assert reference["media_type"] == "audio/wav"
    assert reference["text"].startswith("Hi, I'm Joe")
    assert np.array_equal(np.frombuffer(pcm, "<i2"), expected_pcm("[calm] " + TEXT))


async def test_every_request_carries_the_same_reference_bytes(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    async with S2Client(sidecar.url) as client:
        for text in ("One.", "Two words.", TEXT):
            await client.synthesize(text, voice="joe")
    raws = await upstream.raw_bodies()
    refs = {raw[raw.index('"references"') :] for raw in raws if '"references"' in raw}
    assert len(raws) >= 4  # the start-up warm-up and these three
    assert len(refs) == 1


async def test_default_voice_sends_no_reference(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    async with S2Client(sidecar.url) as client:
        await client.synthesize("Hello there.")
    assert "references" not in (await upstream.bodies())[-1]


async def test_disconnect_closes_upstream_within_100ms(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    await upstream.control(frame_s=0.05)  # ~1 s per 20 frames: a long stream
    before = (await upstream.state())["cancelled"]
    async with aiohttp.ClientSession() as s:
        r = await s.post(sidecar.url + "/v1/audio/speech", json={"input": TEXT, "voice": "joe"})
        await r.content.readany()
        r.close()
        start = time.perf_counter()
        while (state := await upstream.state())["active"] or state["cancelled"] == before:
            assert time.perf_counter() - start < 5, state
        assert time.perf_counter() - start <= 0.100
    assert sidecar.metrics()["s2_streams_cancelled_total"] >= 1


async def test_upstream_rejection_is_a_400_that_says_why(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    await upstream.control(mode="reject")
    async with S2Client(sidecar.url) as client:
        with pytest.raises(S2StatusError) as e:
            await client.synthesize(TEXT, voice="joe")
    assert (e.value.status, e.value.code) == (400, "engine_rejected")
    assert "rejected by the stand-in" in e.value.message


async def test_stall_before_audio_is_a_503(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    await upstream.control(mode="stall")
    async with S2Client(sidecar.url) as client:
        with pytest.raises(S2StatusError) as e:
            await client.synthesize(TEXT, voice="joe")
    assert (e.value.status, e.value.code) == (503, "engine_stalled")


async def test_crash_reports_unhealthy_then_restarts(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    restarts = sidecar.metrics()["s2_engine_restarts_total"]
    await upstream.control(mode="crash")
    async with S2Client(sidecar.url) as client:
        with pytest.raises(S2StatusError) as e:
            await client.synthesize(TEXT, voice="joe")
        assert e.value.status == 503
        status, health = sidecar.health()
        assert status == 503 and health["status"] in ("unhealthy", "starting")
        with pytest.raises(S2StatusError) as e:
            await client.synthesize(TEXT, voice="joe")
        assert e.value.status == 503 and e.value.retryable
        sidecar.wait_ready(30)
        pcm = await client.synthesize(TEXT, voice="joe")
    assert len(pcm) == 2 * len(expected_pcm(TEXT))
    assert sidecar.metrics()["s2_engine_restarts_total"] == restarts + 1
    for _ in range(100):  # the new process gets the persona warmed again
        if any(b["input"] == "Hello." and "references" in b for b in await upstream.bodies()):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("no warm-up after the restart")


async def test_a_wedged_process_is_killed_and_relaunched(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    restarts = sidecar.metrics()["s2_engine_restarts_total"]
    await upstream.control(mode="wedge")  # alive, but /health and speech hang
    start = time.perf_counter()
    while (health := sidecar.health())[0] == 200:
        assert time.perf_counter() - start < 10, "a wedged SGLang-Omni still counts as ready"
        await asyncio.sleep(0.05)
    assert "stopped answering /health" in str(health[1]["detail"])
    sidecar.wait_ready(30)
    async with S2Client(sidecar.url) as client:
        pcm = await client.synthesize(TEXT, voice="joe")
    assert len(pcm) == 2 * len(expected_pcm(TEXT))
    assert sidecar.metrics()["s2_engine_restarts_total"] == restarts + 1
