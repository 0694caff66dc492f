"""`s2.TTS(pronunciations=...)` and LiveKit's `tts_text_transforms`, in a real AgentSession.

IPA given to the plugin reaches the sidecar as S2 markup after the session's transforms ran,
is heard on the preview voice, and never shows in the transcript or the chat context; the
built-in transforms leave a cast's tags whole.
"""

# ruff: noqa: RUF001  (IPA is written in IPA letters)

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from livekit.agents import Agent, AgentSession
from livekit.plugins import s2
from support.livekit_audio import RATE, CaptureAudioOutput
from support.proxy import RecordingProxy
from support.sidecar import SidecarProcess
from support.speech import transcribe, words

from s2_plugin import tags

DOG = "<|phoneme_start|>cat|D AO1 G<|phoneme_end|>"


async def say(
    voice: s2.TTS, text: str, proxy: RecordingProxy, **session: object
) -> tuple[AgentSession, bytes, list[str]]:
    """Say `text` through an AgentSession; its audio and the inputs the sidecar got."""
    agent = AgentSession(tts=voice, use_tts_aligned_transcript=True, **session)  # type: ignore[arg-type]
    output = CaptureAudioOutput()
    agent.output.audio = output
    await agent.start(Agent(instructions="Answer briefly."))
    try:
        await agent.say(text)
        await proxy.wait_until(proxy.finished)
    finally:
        await agent.aclose()
    return agent, output.pcm(), [str(r.body["input"]) for r in proxy.speech() if r.body]


@pytest_asyncio.fixture(loop_scope="function")
async def proxy(sidecar: SidecarProcess) -> AsyncIterator[RecordingProxy]:
    async with RecordingProxy(sidecar.url).running() as running:
        yield running


async def test_ipa_reaches_s2_as_markup_after_the_transforms_and_never_shows(
    sidecar: SidecarProcess, proxy: RecordingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        voice = s2.TTS(
            persona=sidecar.persona,
            base_url=proxy.url,
            pronunciations={"cat": "dɔɡ", "Bach": "bɑːx"},
        )
    assert "spoken as written: Bach" in caplog.text
    text = "Please **feed** the cat tonight. The cat is hungry 😀, and it likes Bach."
    agent, pcm, sent = await say(
        voice, text, proxy, tts_text_transforms=["filter_markdown", "filter_emoji"]
    )
    await voice.aclose()
    joined = " ".join(sent)
    assert joined.count(DOG) == 2 and "**" not in joined and "😀" not in joined, joined
    assert "Bach" in joined and "phoneme" not in tags.strip_tags(joined)
    heard = words(transcribe(pcm, RATE))
    assert "dog" in heard and "cat" not in heard, heard
    said = [m.text_content for m in agent.history.messages() if m.role == "assistant"]
    assert said and "phoneme" not in str(said) and "cat" in str(said), said


async def test_update_options_changes_the_pronunciations(
    sidecar: SidecarProcess, proxy: RecordingProxy
) -> None:
    voice = s2.TTS(persona=sidecar.persona, base_url=proxy.url, pronunciations={"cold": "kɪd"})
    voice.update_options(pronunciations={"cold": "HH AA1 T"})
    _, pcm, sent = await say(voice, "The weather is cold today.", proxy)
    voice.update_options(pronunciations=None)
    stream = voice.synthesize("It is cold again.")
    async for _ in stream:
        pass
    await voice.aclose()
    assert "<|phoneme_start|>cold|HH AA1 T<|phoneme_end|>" in sent[0]
    assert str(proxy.speech()[-1].body["input"]) == "It is cold again."  # type: ignore[index]
    assert "hot" in words(transcribe(pcm, RATE))


async def test_transforms_and_pronunciations_leave_a_casts_tags_whole(
    cast_sidecar: SidecarProcess,
) -> None:
    text = (
        "<|speaker:0|> [calm] Take **your** Metformin with food 😀. "
        "<|speaker:1|> [whisper] And ask <|phoneme_start|>Aoife|IY1 F AH0<|phoneme_end|>."
    )
    async with RecordingProxy(cast_sidecar.url).running() as proxy:
        voice = s2.TTS(
            cast=["ava", "ben"],
            base_url=proxy.url,
            pronunciations={"Metformin": "mɛtˈfɔɹmɪn"},
        )
        _, pcm, sent = await say(
            voice, text, proxy, tts_text_transforms=["filter_markdown", "filter_emoji"]
        )
        await voice.aclose()
        voices = {r.body["voice"] for r in proxy.speech() if r.body}
    joined = " ".join(sent)
    assert "[calm]" in joined and "[whisper]" in joined, joined
    assert "<|phoneme_start|>Metformin|M EH0 T F AO1 R M IH0 N<|phoneme_end|>" in joined
    assert "<|phoneme_start|>Aoife|IY1 F AH0<|phoneme_end|>" in joined
    for text_sent in sent:
        tags.validate(text_sent)
    assert voices == {"ava", "ben"} and len(pcm) > RATE
