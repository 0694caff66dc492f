"""The sglang_omni engine with `--sglang-url` in front of SGLang-Omni's REAL router and 3 stand-ins.

Nothing here is launched by the sidecar: the router (`sgl-omni-router-py`, least_request, health
checks every second) spreads requests over the workers; the sidecar follows its /health and
warms every persona on every routable worker listed at /workers.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support.router import Fleet, Worker
from support.sidecar import PERSONAS_TOML, SidecarProcess
from support.waiting import until, wait_for

from s2_plugin.client import S2Client, S2Error
from s2_plugin.personas import load_personas

TEXT = "Your order has shipped and should arrive on Friday."
JOE = PERSONAS_TOML.parent / "joe.wav"


def expected_pcm(text: str) -> bytes:
    return np.full(6 * len(text.split()) * 2048, len(text), dtype="<i2").tobytes()


def sidecar_for(fleet: Fleet, store: Path, personas: Path | None) -> SidecarProcess:
    args = ["--sglang-url", fleet.router_url, "--sglang-health-interval", "0.3"]
    args += ["--sglang-read-timeout", "30"]  # nothing here stalls: a hang guard only
    return SidecarProcess(store, engine="sglang_omni", personas=personas, args=args)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(3, tmp_path_factory.mktemp("fleet")) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def sidecar(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with sidecar_for(fleet, tmp_path_factory.mktemp("a") / "store", PERSONAS_TOML) as sidecar:
        yield sidecar


@pytest.fixture
def workers(fleet: Fleet, sidecar: SidecarProcess) -> Fleet:
    fleet.wait_routable(3)
    for worker in fleet.workers:
        worker.control(mode="ok", frame_s=0.0)
    return fleet


def references(fleet: Fleet, persona_text: str) -> dict[int, set[str]]:
    """Per worker: the reference payloads it received for the persona with this transcript."""
    return {
        i: {
            ref["data"]
            for body in worker.bodies()
            for ref in body.get("references", [])
            if ref["text"].startswith(persona_text)
        }
        for i, worker in enumerate(fleet.workers)
    }


def wait_warmed(fleet: Fleet, persona_text: str, worker: int | None = None) -> None:
    indices = range(len(fleet.workers)) if worker is None else [worker]
    wait_for(
        lambda: all(references(fleet, persona_text)[i] for i in indices),
        f"{persona_text!r} warmed on workers {list(indices)}",
    )


def served(worker: Worker, texts: list[str]) -> int:
    """How many of these texts the worker was asked for: warm-ups and other tests' don't count."""
    return sum(body["input"] in texts for body in worker.bodies())


async def test_references_go_inline_as_flac_under_the_router_limit(
    workers: Fleet, sidecar: SidecarProcess
) -> None:
    async with S2Client(sidecar.url) as client:
        await client.synthesize(TEXT, voice="joe")
    (raw,) = [b for w in workers.workers for b in w.bodies() if b["input"] == TEXT][-1:]
    (reference,) = raw["references"]
    assert reference["media_type"] == "audio/flac"
    flac = base64.b64decode(reference["data"])
    assert len(flac) < 0.4 * JOE.stat().st_size  # 14 s: ~1.2 MB as WAV, ~350 KB as FLAC
    assert len(reference["data"]) < 1024 * 1024  # so the router parses it and spreads it


async def test_every_persona_is_warmed_on_every_worker(
    workers: Fleet, sidecar: SidecarProcess
) -> None:
    wait_warmed(workers, "Hi, I'm Joe")
    refs = references(workers, "Hi, I'm Joe")
    assert len(set.union(*refs.values())) == 1  # byte-identical on every worker
    # A worker has the warm-up's body before the sidecar has read its reply and counted it.
    wait_for(
        lambda: sidecar.metrics().value("s2_warmups_total", outcome="ok") >= 3,
        "joe's warm-ups counted on each worker",
    )
    assert sidecar.metrics().value("s2_warmups_total", outcome="error") == 0


async def test_requests_for_several_personas_spread_over_all_workers(
    workers: Fleet, sidecar: SidecarProcess
) -> None:
    for worker in workers.workers:
        # ~3 s a stream: they overlap, so least_request spreads them, even sent one by one.
        worker.control(frame_s=0.05)
    texts = [f"Reply {n} for the caller with several personas is ready." for n in range(12)]
    async with S2Client(sidecar.url, read_timeout=60) as client:
        pcms = await asyncio.gather(
            *(client.synthesize(t, voice=("joe", "default")[n % 2]) for n, t in enumerate(texts))
        )
    assert [p == expected_pcm(t) for p, t in zip(pcms, texts, strict=True)] == [True] * 12
    # Counted by text: persona warm-ups can reach a worker while the test runs.
    counts = [served(w, texts) for w in workers.workers]
    assert sum(counts) == 12 and all(n > 0 for n in counts), counts


async def test_a_killed_worker_is_drained_and_when_back_warmed_and_used(
    workers: Fleet, sidecar: SidecarProcess
) -> None:
    victim = workers.workers[0]
    routed_before = workers.routed(victim)
    for worker in workers.workers:
        worker.control(frame_s=0.05)  # ~2.5 s a stream: they overlap, so all three get some
    victim.control(frame_s=0.1)  # ~5 s: still streaming when it is killed, however late that is
    async with S2Client(sidecar.url, read_timeout=60) as client:
        texts = [f"Reply number {n} for the caller is ready now." for n in range(6)]
        calls = [asyncio.create_task(client.synthesize(t, voice="joe")) for t in texts]
        await until(lambda: victim.state()["active"] >= 1, "the victim streaming its share")
        victim.kill()
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        # At most the calls the router had sent to it: streaming, or on their way when it died.
        assert 1 <= len(failed) <= workers.routed(victim) - routed_before, results
        assert all(isinstance(r, S2Error) for r in failed), failed
        ok = [(r, t) for r, t in zip(results, texts, strict=True) if isinstance(r, bytes)]
        assert all(r == expected_pcm(t) for r, t in ok)

        workers.wait_routable(2)  # the router drained it
        later = await asyncio.gather(*(client.synthesize(t, voice="joe") for t in texts))
        assert later == [expected_pcm(t) for t in texts]

        victim.start()
        victim.control(frame_s=0.05)
        workers.wait_routable(3)
        wait_warmed(workers, "Hi, I'm Joe", worker=0)  # a fresh process, warmed again
        assert served(victim, texts) == 0  # a fresh process has served none of them yet
        again = await asyncio.gather(*(client.synthesize(t, voice="joe") for t in texts))
    assert again == [expected_pcm(t) for t in texts]
    assert served(victim, texts) > 0  # used again


async def test_two_sidecars_share_personas_through_the_router(
    workers: Fleet, sidecar: SidecarProcess, tmp_path: Path
) -> None:
    (persona,) = load_personas(PERSONAS_TOML)  # the Persona an agent on another machine holds
    with sidecar_for(workers, tmp_path / "b" / "store", None) as other:
        async with S2Client(other.url) as client:
            await client.ensure_persona(persona)  # what S2TTSService / s2.TTS do on first use
            assert await client.synthesize(TEXT, voice="joe") == expected_pcm(TEXT)
    refs = references(workers, "Hi, I'm Joe")
    # Both sidecars sent the same bytes: every worker's caches serve both.
    assert len(set.union(*refs.values())) == 1
