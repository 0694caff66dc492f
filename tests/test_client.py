import asyncio
import gc
import warnings

import aiohttp
import numpy as np
import pytest
from support.pcm_server import expected_samples, level, pcm_server
from support.proxy import Fault, FaultProxy
from support.sidecar import closed_port
from support.waiting import until

from s2_plugin.client import (
    ConnectionTiming,
    S2Client,
    S2ConnectionError,
    S2Error,
    S2StatusError,
    S2TimeoutError,
    S2UnreachableError,
)

TEXT = "Hello there, this is a test."


async def collect(client: S2Client, text: str = TEXT, voice: str = "ok") -> list[bytes]:
    return [chunk async for chunk in client.speech(text, voice=voice)]


async def test_streams_whole_samples_of_the_right_count_and_value() -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        chunks = await collect(client)
    assert len(chunks) > 1
    assert all(len(c) % 2 == 0 for c in chunks)
    pcm = np.frombuffer(b"".join(chunks), "<i2")
    assert len(pcm) == expected_samples(TEXT)
    assert set(pcm.tolist()) == {level(TEXT)}
    assert server.requests[0]["input"] == TEXT
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["response_format"] == "pcm"


async def test_odd_sized_network_chunks_are_realigned_to_samples() -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        chunks = await collect(client, voice="odd")
    assert all(len(c) % 2 == 0 for c in chunks)
    pcm = np.frombuffer(b"".join(chunks), "<i2")
    assert len(pcm) == expected_samples(TEXT)
    assert set(pcm.tolist()) == {level(TEXT)}


async def test_request_fields_and_api_key_reach_the_server() -> None:
    async with pcm_server() as server, S2Client(server.url, api_key="k") as client:
        async for _ in client.speech(TEXT, voice="ok", temperature=0.5, seed=7, style="calm"):
            pass
    body = server.requests[0]
    assert body["temperature"] == 0.5
    assert body["seed"] == 7
    assert body["style"] == "calm"
    assert "top_p" not in body  # unset fields stay unset, so the server's defaults apply


async def test_client_error_carries_the_servers_message() -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        with pytest.raises(S2StatusError) as caught:
            await collect(client, voice="error400")
    error = caught.value
    assert error.status == 400
    assert error.message == "unknown persona 'x'"
    assert error.code == "unknown_persona"
    assert not error.retryable


async def test_server_errors_are_retryable_even_without_a_json_body() -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        with pytest.raises(S2StatusError) as unavailable:
            await collect(client, voice="error503")
        with pytest.raises(S2StatusError) as garbage:
            await collect(client, voice="garbage500")
    assert unavailable.value.retryable and unavailable.value.status == 503
    assert garbage.value.retryable and "oops" in garbage.value.message


async def test_a_stalled_stream_times_out_instead_of_hanging() -> None:
    async with pcm_server() as server, S2Client(server.url, read_timeout=0.3) as client:
        received: list[bytes] = []
        with pytest.raises(S2TimeoutError):
            async for chunk in client.speech(TEXT, voice="stall"):
                received.append(chunk)
    assert received, "the chunk sent before the stall is delivered"


async def test_a_dropped_connection_is_a_connection_error() -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        with pytest.raises(S2ConnectionError):
            await collect(client, voice="drop")


async def test_a_dead_server_says_how_to_fix_it() -> None:
    with closed_port() as port:
        async with S2Client(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(S2ConnectionError, match="s2-sidecar serve"):
                await collect(client)


async def test_leaving_early_closes_the_connection_so_the_server_stops() -> None:
    async with pcm_server(chunk_delay_s=0.05) as server, S2Client(server.url) as client:
        async for _ in client.speech(TEXT * 4, voice="ok"):
            break
        await until(lambda: server.open_streams == 0, "the server saw the hang-up")
        assert server.disconnects == 1


async def test_cancelling_the_reading_task_closes_the_connection() -> None:
    async with pcm_server(chunk_delay_s=0.05) as server, S2Client(server.url) as client:
        first = asyncio.Event()

        async def read() -> None:
            async for _ in client.speech(TEXT * 4, voice="ok"):
                first.set()

        task = asyncio.create_task(read())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: server.open_streams == 0, "the server saw the hang-up")
        assert server.disconnects == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("[laugh]", "only tags"),
        ("x" * 5000, "4096"),
        ("Hi [whisper there", "never closed"),
    ],
)
async def test_bad_text_is_refused_before_any_request(text: str, message: str) -> None:
    async with pcm_server() as server, S2Client(server.url) as client:
        with pytest.raises(ValueError, match=message):
            await collect(client, text=text)
    assert server.requests == []


def test_a_base_url_without_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="http://"):
        S2Client("127.0.0.1:8421")


async def test_a_request_says_whether_its_connection_was_new_or_pooled() -> None:
    # A shared session made elsewhere (a LiveKit job's): its pool is used, the session itself
    # is left as it was made (no tracing hooks added for every other user's requests).
    async with pcm_server() as server, aiohttp.ClientSession() as shared:
        client = S2Client(server.url, session=shared)
        seen = [ConnectionTiming(), ConnectionTiming()]
        for connection in seen:
            async for _ in client.speech(TEXT, voice="ok", connection=connection):
                pass
        await client.aclose()
        assert shared.trace_configs == []
        assert shared.connector is not None and not shared.connector.closed
        async with shared.get(server.url + "/health") as response:  # the owner's pool still works
            assert response.status == 200
    assert [c.reused for c in seen] == [False, True]
    assert all(c.acquire_s > 0 for c in seen)


async def test_nothing_listening_is_an_unreachable_sidecar_not_worth_a_retry() -> None:
    with closed_port() as port:
        async with S2Client(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(S2UnreachableError) as caught:
                await client.health()
    assert not caught.value.retryable
    # A sidecar that answers but fails one request stays worth a retry.
    async with pcm_server() as server, S2Client(server.url) as client:
        with pytest.raises(S2ConnectionError) as dropped:
            await collect(client, voice="drop")
    assert dropped.value.retryable and not isinstance(dropped.value, S2UnreachableError)


@pytest.mark.parametrize("call", ["speech", "health", "get_voice"])
async def test_each_call_may_bound_its_requests_by_its_own_timeout(call: str) -> None:
    async with (
        pcm_server() as server,
        FaultProxy(server.url).running(Fault.BLACKHOLE) as proxy,
        S2Client(proxy.url, read_timeout=60) as client,
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(S2TimeoutError):
            if call == "speech":
                await collect_within(client, 0.3)
            elif call == "health":
                await client.health(timeout=0.3)
            else:
                await client.get_voice("joe", timeout=0.3)
        # The client's own 60 s never applied: any bound well under it tells the two apart.
        assert loop.time() - started < 30
        await proxy.wait_until(lambda: proxy.connections == 0)  # the request's socket closed


async def collect_within(client: S2Client, timeout: float) -> list[bytes]:
    return [chunk async for chunk in client.speech(TEXT, voice="ok", timeout=timeout)]


async def test_a_shared_session_closed_by_its_owner_leaves_nothing_of_ours_open() -> None:
    async with pcm_server() as server:
        shared = aiohttp.ClientSession()
        client = S2Client(server.url, session=shared)
        await collect(client)
        await shared.close()  # the job ends; nobody calls client.aclose()
        with pytest.raises(S2Error, match="is closed"):
            await collect(client)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del client
            gc.collect()
    assert not [w for w in caught if "Unclosed client session" in str(w.message)]
