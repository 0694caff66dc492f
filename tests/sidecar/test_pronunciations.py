"""The sidecar's pronunciation lexicon: global and per persona, from a file and the API."""

# ruff: noqa: RUF001  (IPA is written in IPA letters)

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import openai
from support.sidecar import PERSONAS_TOML, SidecarProcess
from support.speech import transcribe, words

from s2_plugin.audio import samples
from s2_plugin.protocol import OPENAI_PCM_RATE, SAMPLE_RATE

URL = "/v1/pronunciations"


async def put(sidecar: SidecarProcess, entries: Any, persona: str = "") -> tuple[int, Any]:
    url = sidecar.url + URL + (f"/{persona}" if persona else "")
    async with aiohttp.ClientSession() as s, s.put(url, json=entries) as r:
        return r.status, await r.json()


async def get(sidecar: SidecarProcess) -> Any:
    async with aiohttp.ClientSession() as s, s.get(sidecar.url + URL) as r:
        assert r.status == 200
        return await r.json()


def openai_heard(sidecar: SidecarProcess, text: str) -> list[str]:
    client = openai.OpenAI(base_url=sidecar.url + "/v1", api_key="unused", max_retries=0)
    response = client.audio.speech.create(
        model="s2-pro",
        voice="joe",
        input=text,
        response_format="pcm",
    )
    return words(transcribe(response.content, OPENAI_PCM_RATE))


async def test_a_lexicon_entry_changes_what_an_openai_sdk_client_hears(
    make_sidecar: Callable[..., SidecarProcess],
) -> None:
    sidecar = make_sidecar(personas=PERSONAS_TOML)
    text = "The weather is cold today."
    assert "cold" in openai_heard(sidecar, text)

    status, body = await put(sidecar, {"pronunciations": {"cold": "HH AA1 T"}})
    assert status == 200 and body["pronunciations"] == {"cold": "HH AA1 T"}
    heard = openai_heard(sidecar, text)
    assert "hot" in heard and "cold" not in heard, heard

    # A persona's entry wins for its voice; the global one stays for the others.
    status, body = await put(sidecar, {"pronunciations": {"COLD": "W AO1 R M"}}, "joe")
    assert status == 200 and body["personas"] == {"joe": {"COLD": "W AO1 R M"}}
    assert "warm" in openai_heard(sidecar, text)

    # Kept in the store: the same words after a restart.
    sidecar.restart()
    assert (await get(sidecar))["personas"] == {"joe": {"COLD": "W AO1 R M"}}
    await put(sidecar, {"pronunciations": {}}, "joe")
    await put(sidecar, {"pronunciations": {}})
    assert "cold" in openai_heard(sidecar, text)


async def test_bad_entries_are_a_400_that_names_them(sidecar: SidecarProcess) -> None:
    before = await get(sidecar)
    for body, message in [
        ({"pronunciations": {"Bach": "bɑːx"}}, "lexicon entry 'Bach': Arpabet has no phone"),
        ({"pronunciations": {"read": "R EH9 D"}}, "'EH9' is not a CMU Arpabet symbol"),
        ({"pronunciations": {"read": 3}}, "must be text"),
        ({"words": {}}, 'send {"pronunciations"'),
    ]:
        status, answer = await put(sidecar, body)
        assert status == 400 and message in answer["error"]["message"], answer
    status, _ = await put(sidecar, {"pronunciations": {}}, "nobody")
    assert status == 404
    assert await get(sidecar) == before  # nothing half-applied


async def test_a_file_at_start_sets_the_lexicons(
    make_sidecar: Callable[..., SidecarProcess], tmp_path: Path
) -> None:
    lexicon = tmp_path / "pronunciations.toml"
    lexicon.write_text(
        '[pronunciations]\nMetformin = "mɛtˈfɔɹmɪn"\n\n[personas.joe]\nNiamh = "N IY1 V"\n'
    )
    sidecar = make_sidecar(personas=PERSONAS_TOML, args=["--pronunciations", str(lexicon)])
    assert await get(sidecar) == {
        "pronunciations": {"Metformin": "mɛtˈfɔɹmɪn"},
        "personas": {"joe": {"Niamh": "N IY1 V"}},
    }
    lexicon.write_text('[pronunciations]\nBach = "bɑːx"\n')
    bad = make_sidecar(start=False, args=["--pronunciations", str(lexicon)])
    done = subprocess.run(bad.command(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "lexicon entry 'Bach': Arpabet has no phone for IPA 'x'" in done.stderr


async def test_the_cast_api_takes_a_name_script_as_s2s_own_form(
    cast_sidecar: SidecarProcess,
) -> None:
    audio = []
    for text in (
        "AVA: Good evening.\nBEN: Thank you.",
        "<|speaker:0|>Good evening.\n<|speaker:1|>Thank you.",
    ):
        body = {"input": text, "cast": ["ava", "ben"], "response_format": "pcm", "stream": True}
        async with (
            aiohttp.ClientSession() as s,
            s.post(cast_sidecar.url + "/v1/audio/speech", json=body) as r,
        ):
            assert r.status == 200, await r.text()
            audio.append(samples(await r.read()))
    assert len(audio[0]) > SAMPLE_RATE // 2 and np.array_equal(audio[0], audio[1])
