"""IPA given through Pipecat's, LiveKit's and the sidecar's APIs reaches SGLang-Omni as S2's
phoneme markup (Arpabet only, the word it stands for dropped), on the stand-in that checks
every request with 0.1.9's own request model."""

# ruff: noqa: RUF001  (IPA is written in IPA letters)

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from livekit.plugins import s2 as livekit_s2
from pipecat.frames.frames import LLMFullResponseEndFrame, LLMFullResponseStartFrame, LLMTextFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test
from pipecat_s2 import S2TTSService
from support.sidecar import SidecarProcess
from support.upstream import Upstream, standin_sidecar

S2_METFORMIN = "<|phoneme_start|>M EH0 T F AO1 R M IH0 N<|phoneme_end|>"
TEXT = "Take your Metformin with food, twice a day."


@pytest.fixture(scope="module")
def s2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SidecarProcess, Upstream]]:
    sidecar, upstream = standin_sidecar(tmp_path_factory.mktemp("sglang"))
    with sidecar:
        yield sidecar, upstream


@pytest.fixture
async def upstream(s2: tuple[SidecarProcess, Upstream]) -> Upstream:
    sidecar, up = s2
    sidecar.wait_ready()
    await up.control(mode="ok", frame_s=0.0, stamp=False, rate=44100)
    return up


async def inputs(upstream: Upstream) -> str:
    return " ".join(str(b["input"]) for b in await upstream.bodies())


async def test_pipecats_ipa_reaches_sglang_as_s2_markup(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    pronounce = S2TTSService.pronunciation_transform_ipa({"Metformin": "mɛtˈfɔɹmɪn"})
    tts = S2TTSService(base_url=sidecar.url, persona="joe", text_transforms=[("*", pronounce)])
    tokens = [LLMTextFrame(TEXT[i : i + 3]) for i in range(0, len(TEXT), 3)]
    _, up = await run_test(
        tts,
        frames_to_send=[LLMFullResponseStartFrame(), *tokens, LLMFullResponseEndFrame()],
        pipeline_params=PipelineParams(audio_out_sample_rate=16000),
    )
    assert not [f for f in up if type(f).__name__ == "ErrorFrame"]
    sent = await inputs(upstream)
    assert S2_METFORMIN in sent and "Metformin" not in sent, sent


async def test_livekits_ipa_reaches_sglang_as_s2_markup(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    voice = livekit_s2.TTS(
        persona="joe", base_url=sidecar.url, pronunciations={"Metformin": "mɛtˈfɔɹmɪn"}
    )
    async with voice.synthesize(TEXT) as stream:
        async for _ in stream:
            pass
    await voice.aclose()
    sent = await inputs(upstream)
    assert S2_METFORMIN in sent and "Metformin" not in sent, sent


async def test_the_sidecars_lexicon_and_markup_in_input_reach_sglang_as_s2_markup(
    s2: tuple[SidecarProcess, Upstream], upstream: Upstream
) -> None:
    sidecar, _ = s2
    async with aiohttp.ClientSession() as s:
        lexicon = {"pronunciations": {"Metformin": "mɛtˈfɔɹmɪn"}}
        async with s.put(sidecar.url + "/v1/pronunciations", json=lexicon) as r:
            assert r.status == 200
        try:
            for text in (TEXT, "Read it: <|phoneme_start|>read|R EH1 D<|phoneme_end|>."):
                body = {"input": text, "voice": "joe", "response_format": "wav"}
                async with s.post(sidecar.url + "/v1/audio/speech", json=body) as r:
                    assert r.status == 200, await r.text()
        finally:
            async with s.put(sidecar.url + "/v1/pronunciations", json={"pronunciations": {}}):
                pass
    sent = await inputs(upstream)
    assert S2_METFORMIN in sent and "<|phoneme_start|>R EH1 D<|phoneme_end|>" in sent, sent
