"""S2TTSService's pronunciations and text transforms in a real pipeline, on the real sidecar.

IPA given through Pipecat's own API (`pronunciation_transform_ipa`) reaches the sidecar as
S2 markup, is heard on the preview voice, and never shows in the words Pipecat reports; the
`VoiceFormatter` runs on whole segments and leaves every tag as written.
"""

# ruff: noqa: RUF001  (IPA is written in IPA letters)

from __future__ import annotations

from pipecat.frames.frames import (
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSTextFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test
from pipecat.utils.text.transforms.voice_formatter import VoiceFormatter
from pipecat_s2 import S2TTSService
from support.pronunciations import COMMON
from support.proxy import RecordingProxy
from support.sidecar import SidecarProcess
from support.speech import transcribe, words

from s2_plugin import phonemes, tags


def llm_reply(text: str, size: int = 4) -> list[Frame]:
    tokens = [LLMTextFrame(text[i : i + size]) for i in range(0, len(text), size)]
    return [LLMFullResponseStartFrame(), *tokens, LLMFullResponseEndFrame()]


def test_format_pronunciation_is_s2_markup_or_none_for_an_unwritable_phone() -> None:
    for word, ipa, arpabet in COMMON:
        expected = None if arpabet is None else phonemes.markup(arpabet, word)
        assert S2TTSService.format_pronunciation(word, ipa) == expected, word
    assert S2TTSService.format_pronunciation("New York", "/nu ˈjɔɹk/") == (
        "<|phoneme_start|>New York|N UW1<|phoneme_end|> <|phoneme_start|>Y AO1 R K<|phoneme_end|>"
    )


async def test_ipa_reaches_s2_as_markup_is_heard_and_never_shows(
    sidecar: SidecarProcess,
) -> None:
    pronounce = S2TTSService.pronunciation_transform_ipa({"cat": "dɔɡ", "Bach": "bɑːx"})
    reply = "Please feed the cat tonight. The cat is hungry, and it likes fish."
    async with RecordingProxy(sidecar.url).running() as proxy:
        tts = S2TTSService(
            base_url=proxy.url, persona=sidecar.persona, text_transforms=[("*", pronounce)]
        )
        assert tts.supports_pronunciations
        down, up = await run_test(
            tts,
            frames_to_send=llm_reply(reply, 3),  # " ca" + "t t": no token holds the word
            pipeline_params=PipelineParams(audio_out_sample_rate=16000),
        )
    assert not [f for f in up if type(f).__name__ == "ErrorFrame"]
    sent = " ".join(str(r.body["input"]) for r in proxy.speech() if r.body)
    assert sent.count("<|phoneme_start|>cat|D AO1 G<|phoneme_end|>") == 2, sent
    spoken = [f.text for f in down if isinstance(f, TTSTextFrame)]
    assert spoken == reply.split()  # the LLM's words, never the phonemes
    pcm = b"".join(f.audio for f in down if hasattr(f, "audio"))
    heard = words(transcribe(pcm, 16000))
    assert "dog" in heard and "cat" not in heard, heard


async def test_voice_formatter_and_pronunciations_leave_a_casts_tags_whole(
    cast_sidecar: SidecarProcess,
) -> None:
    formatter = VoiceFormatter(expand_numbers=True)
    pronounce = S2TTSService.pronunciation_transform_ipa({"Metformin": "mɛtˈfɔɹmɪn"})
    reply = (
        "<|speaker:0|> [calm] Your Metformin costs $12.50 a month. "
        "<|speaker:1|> [whisper] Call 555-123-4567 at 3 and ask for <|phoneme_start|>"
        "Aoife|IY1 F AH0<|phoneme_end|>, please."
    )
    async with RecordingProxy(cast_sidecar.url).running() as proxy:
        tts = S2TTSService(
            base_url=proxy.url,
            cast=["ava", "ben"],
            text_transforms=[("*", formatter), ("*", pronounce)],  # pronunciations last
        )
        down, up = await run_test(
            tts,
            frames_to_send=llm_reply(reply, 3),
            pipeline_params=PipelineParams(audio_out_sample_rate=16000),
        )
    assert not [f for f in up if type(f).__name__ == "ErrorFrame"]
    requests = [(r.body["voice"], str(r.body["input"])) for r in proxy.speech() if r.body]
    sent = " ".join(text for _, text in requests)
    assert "twelve dollars and fifty cents" in sent and "five five five" in sent, sent
    assert "[calm]" in sent and "[whisper]" in sent
    assert "<|phoneme_start|>Metformin|M EH0 T F AO1 R M IH0 N<|phoneme_end|>" in sent
    assert "<|phoneme_start|>Aoife|IY1 F AH0<|phoneme_end|>" in sent
    for _, text in requests:
        tags.validate(text)  # every tag and markup whole
    assert {voice for voice, _ in requests} == {"ava", "ben"}
    spoken = " ".join(f.text for f in down if isinstance(f, TTSTextFrame))
    assert tags.strip_tags(spoken) == tags.strip_tags(reply)  # the LLM's text, as written
