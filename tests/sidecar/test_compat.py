"""Clients nobody here wrote, against the real sidecar: OpenAI's SDK, Pipecat's and LiveKit's
OpenAI TTS services, and SGLang-Omni's documented calls. Every format is decoded and its words
recognised: a response that merely succeeds proves nothing.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import aiohttp
import av
import numpy as np
import openai
import pytest
import soundfile as sf
from livekit.agents import APIStatusError
from livekit.plugins import openai as lk_openai
from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.tests.utils import run_test
from support.sidecar import PERSONAS_TOML, SidecarProcess
from support.speech import transcribe, wer

from s2_plugin.personas import load_personas
from s2_plugin.protocol import OPENAI_PCM_RATE, SAMPLE_RATE

SENTENCE = (
    "Your order has shipped and should arrive on Friday. "
    "Please call me back tomorrow morning at nine."
)
MAX_WER = 0.5
"""As in test_speech.py (measured there on this text: mean 0.12, worst 0.35 in 20 runs); the lossy
encoders at their default bit rates leave it unchanged."""

FORMATS = ["wav", "pcm", "mp3", "opus", "aac", "flac"]


def decode(data: bytes, fmt: str, pcm_rate: int = OPENAI_PCM_RATE) -> tuple[bytes, int]:
    """Any response body as int16 mono PCM and its rate (FFmpeg's decoders, through PyAV)."""
    if fmt == "pcm":
        return data, pcm_rate
    out = av.AudioResampler(format="s16", layout="mono", rate=16000)
    pcm = bytearray()
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            for chunk in out.resample(frame):
                pcm += chunk.to_ndarray().tobytes()
    for chunk in out.resample(None):
        pcm += chunk.to_ndarray().tobytes()
    return bytes(pcm), 16000


def heard(data: bytes, fmt: str, pcm_rate: int = OPENAI_PCM_RATE) -> str:
    return transcribe(*decode(data, fmt, pcm_rate))


def sdk(sidecar: SidecarProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=sidecar.url + "/v1", api_key="unused", max_retries=0)


# --- the openai SDK ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_openai_sdk_every_format(sidecar: SidecarProcess, fmt: str) -> None:
    response = sdk(sidecar).audio.speech.create(
        model="s2-pro",
        voice="alloy",
        input=SENTENCE,
        response_format=fmt,  # type: ignore[arg-type]
    )
    words = heard(response.content, fmt)
    assert wer(SENTENCE, words) <= MAX_WER, words


def test_openai_sdk_defaults_write_a_playable_file(sidecar: SidecarProcess, tmp_path: Path) -> None:
    """The SDK sends only model, voice and input: the answer is a WAV, as SGLang-Omni's is."""
    response = sdk(sidecar).audio.speech.create(model="s2-pro", voice="alloy", input=SENTENCE)
    response.write_to_file(tmp_path / "speech.wav")
    x, rate = sf.read(tmp_path / "speech.wav", dtype="int16")
    assert rate == SAMPLE_RATE
    assert wer(SENTENCE, transcribe(x.tobytes(), rate)) <= MAX_WER


async def test_openai_async_streaming_pcm_is_24k(sidecar: SidecarProcess) -> None:
    client = openai.AsyncOpenAI(base_url=sidecar.url + "/v1", api_key="unused", max_retries=0)
    async with client.audio.speech.with_streaming_response.create(
        model="s2-pro", voice="alloy", input=SENTENCE, response_format="pcm"
    ) as response:
        assert response.headers["x-sample-rate"] == str(OPENAI_PCM_RATE)
        chunks = [chunk async for chunk in response.iter_bytes()]
    await client.close()
    assert len(chunks) > 1
    assert wer(SENTENCE, heard(b"".join(chunks), "pcm")) <= MAX_WER


def test_openai_sdk_sees_clear_errors(sidecar: SidecarProcess) -> None:
    client = sdk(sidecar)
    with pytest.raises(openai.BadRequestError, match=r"speed must be 1\.0"):
        client.audio.speech.create(model="s2-pro", voice="alloy", input="Hi.", speed=1.5)
    with pytest.raises(openai.BadRequestError, match="loudness"):
        client.audio.speech.create(
            model="s2-pro", voice="alloy", input="Hi.", extra_body={"loudness": 3}
        )
    with pytest.raises(openai.NotFoundError, match="--voice-alias"):
        client.audio.speech.create(model="s2-pro", voice="coral", input="Hi.")


def test_openai_sdk_lists_the_model(sidecar: SidecarProcess) -> None:
    (model,) = sdk(sidecar).models.list().data
    assert model.id == "piper/en_US-joe-medium"


# --- Pipecat's OpenAITTSService -----------------------------------------------------------


@pytest.mark.parametrize("pipeline_rate", [24000, 16000])
async def test_pipecat_openai_tts_service(sidecar: SidecarProcess, pipeline_rate: int) -> None:
    """Pipecat plays OpenAI's `pcm` as 24 kHz (`sample_rate=24000`, as its docs ask); the
    pipeline's output transport resamples to its own rate."""
    tts = OpenAITTSService(
        base_url=sidecar.url + "/v1",
        api_key="unused",
        sample_rate=24000,
        settings=OpenAITTSService.Settings(voice="alloy"),
    )
    down, _ = await run_test(
        tts,
        frames_to_send=[TTSSpeakFrame(SENTENCE)],
        pipeline_params=PipelineParams(audio_out_sample_rate=pipeline_rate),
    )
    assert not [f for f in down if isinstance(f, ErrorFrame)]
    frames = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert {f.sample_rate for f in frames} == {24000}
    words = transcribe(b"".join(f.audio for f in frames), 24000)
    assert wer(SENTENCE, words) <= MAX_WER, words


# --- LiveKit's openai.TTS -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "fmt"),
    [("gpt-4o-mini-tts", "mp3"), ("gpt-4o-mini-tts", "pcm"), ("tts-1", "wav")],
    ids=["sse-mp3", "sse-pcm", "audio-wav"],
)
async def test_livekit_openai_tts(sidecar: SidecarProcess, model: str, fmt: str) -> None:
    """LiveKit always sends speed and stream_format: sse, except for tts-1 (audio)."""
    tts = lk_openai.TTS(
        base_url=sidecar.url + "/v1", api_key="unused", model=model, response_format=fmt
    )
    try:
        frames = [ev.frame async for ev in tts.synthesize(SENTENCE)]
    finally:
        await tts.aclose()
    pcm = b"".join(bytes(f.data) for f in frames)
    assert {f.sample_rate for f in frames} == {24000}
    words = transcribe(pcm, 24000)
    assert wer(SENTENCE, words) <= MAX_WER, words


async def test_livekit_openai_tts_raises_a_status_error(sidecar: SidecarProcess) -> None:
    tts = lk_openai.TTS(base_url=sidecar.url + "/v1", api_key="unused", voice="coral")
    try:
        with pytest.raises(APIStatusError) as e:
            async for _ in tts.synthesize("Hello."):
                pass
    finally:
        await tts.aclose()
    assert e.value.status_code == 404


# --- SGLang-Omni's documented calls -----------------------------------------------------------


async def post(url: str, body: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/audio/speech", json=body) as r:
        return r.status, dict(r.headers), await r.read()


async def test_sglang_plain_call_is_a_wav(sidecar: SidecarProcess) -> None:
    status, headers, data = await post(sidecar.url, {"input": SENTENCE})
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    x, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == SAMPLE_RATE
    assert wer(SENTENCE, transcribe(x.tobytes(), rate)) <= MAX_WER


async def test_sglang_stream_is_44k_pcm(sidecar: SidecarProcess) -> None:
    body = {"input": SENTENCE, "stream": True, "response_format": "pcm"}
    status, headers, data = await post(sidecar.url, body)
    assert status == 200 and headers["X-Sample-Rate"] == str(SAMPLE_RATE)
    assert wer(SENTENCE, heard(data, "pcm", SAMPLE_RATE)) <= MAX_WER


async def test_sglang_sse_events(sidecar: SidecarProcess) -> None:
    body = {"input": SENTENCE, "stream": True, "response_format": "pcm", "stream_format": "sse"}
    status, headers, data = await post(sidecar.url, body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in data.decode().splitlines() if line]
    assert [e["type"] for e in events[-1:]] == ["speech.audio.done"]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) == len(events) - 1 > 1
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert wer(SENTENCE, heard(pcm, "pcm", int(headers["X-Sample-Rate"]))) <= MAX_WER


async def test_sglang_upload_fields_and_voice_list(sidecar: SidecarProcess) -> None:
    (persona,) = load_personas(PERSONAS_TOML)
    form = aiohttp.FormData()
    form.add_field("name", "sg-upload")
    form.add_field("ref_text", persona.transcript)
    form.add_field("consent", "the speaker agreed")
    form.add_field("audio_sample", persona.clip_bytes(), filename="ref.wav")
    async with aiohttp.ClientSession() as s:
        async with s.post(sidecar.url + "/v1/audio/voices", data=form) as r:
            assert r.status == 201, await r.text()
        async with s.get(sidecar.url + "/v1/audio/voices") as r:
            listing = await r.json()
        async with s.delete(sidecar.url + "/v1/audio/voices/sg-upload") as r:
            assert r.status == 204
    assert {"sg-upload", "joe", "alloy"} <= set(listing["voices"])
    assert "sg-upload" in [v["name"] for v in listing["uploaded_voices"]]


async def test_an_inline_reference_clones_for_one_request(sidecar: SidecarProcess) -> None:
    (persona,) = load_personas(PERSONAS_TOML)
    clip = base64.b64encode(persona.clip_bytes()).decode()
    bodies = [
        {"input": SENTENCE, "references": [{"data": clip, "media_type": "audio/wav",
                                            "text": persona.transcript}]},
        {"input": SENTENCE, "ref_audio": f"data:audio/wav;base64,{clip}",
         "ref_text": persona.transcript},
    ]  # fmt: skip
    for body in bodies:
        status, _, data = await post(sidecar.url, body)
        assert status == 200, data[:300]
        x, rate = sf.read(io.BytesIO(data), dtype="int16")
        assert wer(SENTENCE, transcribe(x.tobytes(), rate)) <= MAX_WER
    # Both name the same content: one canonical clip, so the engine's caches stay warm.
    assert len(list((sidecar.store / "inline").iterdir())) == 1


def test_pcm_rate_follows_the_sample_rate_field(sidecar: SidecarProcess) -> None:
    with sdk(sidecar).audio.speech.with_streaming_response.create(
        model="s2-pro",
        voice="alloy",
        input=SENTENCE,
        response_format="pcm",
        extra_body={"sample_rate": 16000},
    ) as response:
        assert response.headers["x-sample-rate"] == "16000"
        data = response.read()
    assert wer(SENTENCE, heard(data, "pcm", 16000)) <= MAX_WER
    assert np.frombuffer(data, "<i2").size > 16000  # seconds of 16 kHz audio, not 24 kHz
