"""`s2.TTS` against what LiveKit's own TTS tests expect of every provider plugin.

LiveKit tests its plugins through a proxy that can cut or black-hole the connection
(`tests/test_tts.py`, `tests/test_tts_fallback.py`): the caller's `conn_options` bound every
attempt, a closed stream leaves nothing running, and a `FallbackAdapter` moves on from a
failed voice and takes it back once it recovers. Here the proxy is `FaultProxy` in front of
the real sidecar; docs/conformance.md says where S2 differs and why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from livekit.agents import APIConnectionError, APIConnectOptions, APIError, APITimeoutError, tts
from livekit.plugins import s2
from support.proxy import PROXY_TASK, Fault, FaultProxy
from support.sidecar import PERSONAS_TOML, SidecarProcess, closed_port

from s2_plugin.personas import load_personas
from s2_plugin.registrar import ENGINE_CHECK_TASK

TEXT = "Hello there, friend. How are you today?"
CLIENT_DEFAULT_S = 10.0
"""What every request waited before (LiveKit's default timeout, the client's own)."""


@pytest_asyncio.fixture(loop_scope="function")
async def proxy(sidecar: SidecarProcess) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(sidecar.url).running() as running:
        yield running


async def _speak(voice: s2.TTS, options: APIConnectOptions, *, streamed: bool) -> float:
    """Synthesize TEXT; the seconds of audio it gave."""
    if not streamed:
        return (await voice.synthesize(TEXT, conn_options=options).collect()).duration
    async with voice.stream(conn_options=options) as stream:
        stream.push_text(TEXT)
        stream.end_input()
        return sum([ev.frame.duration async for ev in stream])


def _running(since: set[asyncio.Task[object]], *, livekits: bool = True) -> list[str]:
    """Tasks started after `since` that have not finished, by name, but the proxy's (and,
    unless `livekits`, LiveKit's own, which end with its stream's event channel)."""
    current = asyncio.current_task()
    return [
        name
        for t in asyncio.all_tasks() - since
        if t is not current and not t.done()
        if (name := t.get_name()) != PROXY_TASK and (livekits or not name.startswith("TTS."))
    ]


async def _nothing_left(since: set[asyncio.Task[object]]) -> None:
    async with asyncio.timeout(5):  # LiveKit's own tasks end a loop turn or two later
        while left := _running(since):
            await asyncio.sleep(0.01)
    assert not left


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("with_persona", [False, True])
async def test_a_black_holed_sidecar_fails_at_the_callers_timeout_and_leaves_nothing(
    sidecar: SidecarProcess, proxy: FaultProxy, streamed: bool, with_persona: bool
) -> None:
    # A persona given as a clip is registered first: that request takes the timeout too.
    persona = load_personas(PERSONAS_TOML)[0] if with_persona else sidecar.persona
    before = set(asyncio.all_tasks())
    await proxy.set(Fault.BLACKHOLE)
    options = APIConnectOptions(max_retry=0, timeout=1.0)
    voice = s2.TTS(persona=persona, base_url=proxy.url)
    started = time.perf_counter()
    with pytest.raises(APITimeoutError):
        await _speak(voice, options, streamed=streamed)
    # Only a bound that tells the caller's 1 s from the client's 10 s: not a latency check.
    assert time.perf_counter() - started < CLIENT_DEFAULT_S / 2
    # Nothing of the reply is left running, and its sockets are closed.
    assert set(_running(before, livekits=False)) <= {ENGINE_CHECK_TASK}, _running(before)
    await voice.aclose()
    await _nothing_left(before)
    await proxy.wait_until(lambda: proxy.connections == 0, timeout=CLIENT_DEFAULT_S)


async def test_closing_a_stream_early_closes_its_requests(
    sidecar: SidecarProcess, proxy: FaultProxy
) -> None:
    await proxy.set(Fault.BLACKHOLE)
    before = set(asyncio.all_tasks())
    async with s2.TTS(persona=sidecar.persona, base_url=proxy.url) as voice:
        stream = voice.stream()
        stream.push_text(TEXT)
        await proxy.wait_until(lambda: proxy.connections >= 1)  # its request is out
        await stream.aclose()
        assert set(_running(before, livekits=False)) <= {ENGINE_CHECK_TASK}, _running(before)
    await _nothing_left(before)
    await proxy.wait_until(lambda: proxy.connections == 0)


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_fallback_adapter_moves_on_from_a_dead_sidecar_at_once_and_back_when_it_answers(
    sidecar: SidecarProcess, proxy: FaultProxy, streamed: bool
) -> None:
    await proxy.set(Fault.REFUSE)
    primary = s2.TTS(persona=sidecar.persona, base_url=proxy.url)
    backup = s2.TTS(persona=sidecar.persona, base_url=sidecar.url)
    fallback = tts.FallbackAdapter([primary, backup])
    changes: list[tuple[tts.TTS, bool]] = []
    changed = asyncio.Event()

    @fallback.on("tts_availability_changed")
    def _changed(event: tts.AvailabilityChangedEvent) -> None:
        changes.append((event.tts, event.available))
        changed.set()

    errors: list[tts.TTSError] = []
    primary.on("error", errors.append)
    try:
        # The backup speaks, and the primary is written off after one attempt (no retries).
        assert await _speak(fallback, APIConnectOptions(), streamed=streamed) > 0.5
        assert changes == [(primary, False)]
        assert errors and not any(e.recoverable for e in errors)  # (its probes fail too)
        # The sidecar is back: the adapter's recovery probe, which each request starts while
        # the primary is written off, brings it back.
        await proxy.set(Fault.PASS)
        async with asyncio.timeout(30):
            while (primary, True) not in changes:
                changed.clear()
                assert await _speak(fallback, APIConnectOptions(), streamed=streamed) > 0.5
                await asyncio.wait_for(changed.wait(), 10)
    finally:
        await fallback.aclose()
        await primary.aclose()
        await backup.aclose()


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_reset_connection_is_a_retryable_connection_error(
    sidecar: SidecarProcess, proxy: FaultProxy, streamed: bool
) -> None:
    # The sidecar's address answers but the connection breaks: worth a retry, unlike a refusal.
    await proxy.set(Fault.RESET)
    async with s2.TTS(persona=sidecar.persona, base_url=proxy.url) as voice:
        errors: list[tts.TTSError] = []
        voice.on("error", errors.append)
        options = APIConnectOptions(max_retry=1, retry_interval=0.0, timeout=2.0)
        with pytest.raises(APIConnectionError) as caught:
            await _speak(voice, options, streamed=streamed)
    assert caught.value.retryable and not isinstance(caught.value, APITimeoutError)
    assert [e.recoverable for e in errors] == [True, False]


@pytest.mark.parametrize("streamed", [False, True])
async def test_text_of_tags_alone_is_an_error_that_says_so_not_retried(streamed: bool) -> None:
    # No request is made: nothing here needs a sidecar.
    with closed_port() as port:
        async with s2.TTS(base_url=f"http://127.0.0.1:{port}") as voice:
            errors: list[tts.TTSError] = []
            voice.on("error", errors.append)
            options = APIConnectOptions(max_retry=3, retry_interval=0.0)
            with pytest.raises(APIError, match="holds no words to speak") as caught:
                if streamed:
                    async with voice.stream(conn_options=options) as stream:
                        stream.push_text("[laugh] ")
                        stream.push_text("[sigh]")
                        stream.end_input()
                        async for _ in stream:
                            pass
                else:
                    await voice.synthesize("[laugh] [sigh]", conn_options=options).collect()
    assert not caught.value.retryable
    assert [e.recoverable for e in errors] == [False]
