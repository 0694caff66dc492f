"""SGLang-Omni failing or stalling after audio has started, through the client and both adapters.

0.1.9 can only close the socket once its headers are out (uvicorn drops a body that raises), so
the stand-in does the same after N chunks (`fail_after`), or goes silent (`stall_after`). The
sidecar must then cut its own stream (never write an error into the audio) and count it; each
caller gets one error within its read timeout, no noise, and the reply ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from livekit.agents import APIConnectOptions, APIError
from livekit.plugins import s2
from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame, TTSStoppedFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test
from pipecat_s2 import S2TTSService
from support.sidecar import SidecarProcess
from support.upstream import Upstream, standin_sidecar
from support.waiting import wait_for

from s2_plugin.client import S2Client, S2Error

TEXT = "Your order has shipped and should arrive on Friday."
FIRST_CHUNK = 4 * 2048 - 512
"""Samples in the stand-in's first chunk at stride 4: the only audio before the failure."""
MODES = ["fail_after", "stall_after"]
TIMEOUT_S = 30
"""The callers' read timeout, a hang guard: the sidecar's own cut (after SGLang-Omni's 1 s of
silence) comes first however loaded the machine, so the error is always the one under test."""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SidecarProcess, Upstream]]:
    sidecar, upstream = standin_sidecar(tmp_path_factory.mktemp("midstream"))
    with sidecar:
        yield sidecar, upstream


async def failing(engine: tuple[SidecarProcess, Upstream], mode: str) -> SidecarProcess:
    sidecar, upstream = engine
    sidecar.wait_ready()
    await upstream.control(mode=mode, after_chunks=1, frame_s=0.0)
    return sidecar


def aborted(sidecar: SidecarProcess) -> float:
    return sidecar.metrics().value("s2_streams_aborted_total", reason="engine_error")


@pytest.mark.parametrize("mode", MODES)
async def test_the_client_raises_after_clean_audio(
    engine: tuple[SidecarProcess, Upstream], mode: str
) -> None:
    sidecar = await failing(engine, mode)
    before = aborted(sidecar)
    received = b""
    async with S2Client(sidecar.url, read_timeout=TIMEOUT_S) as client:
        with pytest.raises(S2Error):
            async for chunk in client.speech(TEXT, voice="joe"):
                received += chunk
    samples = np.frombuffer(received, "<i2")
    assert len(samples) == FIRST_CHUNK and set(samples.tolist()) == {len(TEXT)}  # no noise
    wait_for(lambda: aborted(sidecar) == before + 1, "the cut stream counted")


@pytest.mark.parametrize("mode", MODES)
async def test_pipecat_gets_one_error_and_the_reply_ends(
    engine: tuple[SidecarProcess, Upstream], mode: str
) -> None:
    sidecar = await failing(engine, mode)
    tts = S2TTSService(base_url=sidecar.url, persona="joe", read_timeout=TIMEOUT_S)
    params = PipelineParams(audio_out_sample_rate=44100)
    down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame(TEXT)], pipeline_params=params)
    assert len([f for f in up if isinstance(f, ErrorFrame)]) == 1
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert 0 < len(audio) // 2 <= FIRST_CHUNK  # the first chunk at most, nothing invented
    assert set(np.frombuffer(audio, "<i2").tolist()) <= {0, len(TEXT)}
    assert any(isinstance(f, TTSStoppedFrame) for f in down)


@pytest.mark.parametrize("mode", MODES)
async def test_livekit_gets_one_error_and_the_stream_ends(
    engine: tuple[SidecarProcess, Upstream], mode: str
) -> None:
    sidecar = await failing(engine, mode)
    no_retry = APIConnectOptions(max_retry=0, timeout=TIMEOUT_S)
    frames = []
    async with s2.TTS(persona="joe", base_url=sidecar.url, sample_rate=44100) as voice:
        errors: list[object] = []
        voice.on("error", errors.append)
        with pytest.raises(APIError):
            async with voice.stream(conn_options=no_retry) as stream:
                stream.push_text(TEXT)
                stream.end_input()
                async for event in stream:
                    frames.append(event.frame)
    assert len(errors) == 1
    samples = np.concatenate([np.frombuffer(f.data, "<i2") for f in frames])
    assert 0 < len(samples) <= FIRST_CHUNK
    assert set(samples.tolist()) <= {0, len(TEXT)}
