"""The preview engine speaks phoneme markup: a word given another word's sounds is heard as it."""

from __future__ import annotations

import aiohttp
import pytest
from support.sidecar import SidecarProcess
from support.speech import transcribe, words

from s2_plugin.protocol import SAMPLE_RATE


async def speak(sidecar: SidecarProcess, text: str) -> tuple[int, bytes]:
    """The status and the body: 44.1 kHz PCM, or the error."""
    body = {"input": text, "voice": "joe", "response_format": "pcm", "stream": True}
    async with (
        aiohttp.ClientSession() as s,
        s.post(sidecar.url + "/v1/audio/speech", json=body) as r,
    ):
        return r.status, await r.read()


@pytest.mark.parametrize(
    ("text", "heard", "not_heard"),
    [
        ("Please feed the <|phoneme_start|>cat|D AO1 G<|phoneme_end|> tonight.", "dog", "cat"),
        ("The weather is <|phoneme_start|>HH AA1 T<|phoneme_end|> today.", "hot", "cold"),
        ("A cup of <|phoneme_start|>tea|K AO1 F IY0<|phoneme_end|> please.", "coffee", "tea"),
    ],
)
async def test_a_word_is_heard_as_the_word_its_phonemes_say(
    sidecar: SidecarProcess, text: str, heard: str, not_heard: str
) -> None:
    status, pcm = await speak(sidecar, text)
    assert status == 200, pcm
    said = words(transcribe(pcm, SAMPLE_RATE))
    assert heard in said and not_heard not in said, said


async def test_malformed_markup_is_a_400_that_says_what_is_wrong(sidecar: SidecarProcess) -> None:
    status, body = await speak(sidecar, "Take <|phoneme_start|>m eh0 t<|phoneme_end|> now.")
    assert status == 400
    assert b"write it in capitals, 'M'" in body, body
    status, body = await speak(sidecar, "Take <|phoneme_start|>M EH0 T now.")
    assert status == 400
    assert b"never closed" in body, body
