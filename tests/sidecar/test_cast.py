"""s2_sidecar.cast: the combined reference, its prompt in SGLang-Omni 0.1.9, the context check,
and cast requests on the real sidecar (preview engine)."""

from __future__ import annotations

import importlib
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from s2_sidecar import cast
from s2_sidecar.clips import pitch_hz
from s2_sidecar.errors import BadRequest
from s2_sidecar.store import StoredPersona
from support.cast import CAST, plain, who
from support.sidecar import SidecarProcess
from support.speech import transcribe, wer

from s2_plugin.audio import wav_bytes
from s2_plugin.client import S2Client, S2StatusError
from s2_plugin.personas import Persona
from s2_plugin.protocol import SAMPLE_RATE, SPEECH_PATH, SpeechRequest, VoiceInfo

FRAME = cast.FRAME_SAMPLES


@pytest.fixture(autouse=True)
def casts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where this test's combined clips go; the cache of combined references starts empty."""
    monkeypatch.setattr(cast, "_COMBINED", {})
    return tmp_path / "casts"


def persona(name: str, seconds: float, value: int, transcript: str = "") -> StoredPersona:
    """A stored persona whose clip is `seconds` of the constant `value`."""
    pcm = np.full(round(seconds * SAMPLE_RATE), value, "<i2").tobytes()
    info = VoiceInfo(
        name=name,
        transcript=transcript or f"I am {name}.",
        sha256=f"{name}-{seconds}-{value}",
        duration_s=seconds,
    )
    return StoredPersona(info, wav_bytes(pcm), Path(f"{name}.wav"))


def pcm_of(reference: StoredPersona) -> np.ndarray:
    return np.frombuffer(reference.wav[44:], "<i2")


AVA, BEN, CY = persona("ava", 10.3, 100), persona("ben", 12.01, 200), persona("cy", 11.5, 300)


def test_the_combined_reference_is_the_clips_back_to_back_on_frame_boundaries(casts: Path) -> None:
    ref = cast.combined([AVA, BEN, CY], casts)
    pcm = pcm_of(ref)
    assert len(pcm) % FRAME == 0
    start = 0
    for member in (AVA, BEN, CY):
        clip = pcm_of(member)
        assert start % FRAME == 0
        assert np.array_equal(pcm[start : start + len(clip)], clip)
        padded = -(-len(clip) // FRAME) * FRAME
        assert not pcm[start + len(clip) : start + padded].any()  # silence to the frame's end
        start += padded
    assert start == len(pcm)
    assert ref.info.transcript == "I am ava.\n<|speaker:1|>I am ben.\n<|speaker:2|>I am cy."
    assert ref.cast == (AVA, BEN, CY)
    assert cast.reference_frames(ref) == len(pcm) // FRAME


def test_the_combined_reference_is_byte_identical_per_cast(casts: Path) -> None:
    first = cast.combined([AVA, BEN], casts)
    assert cast.combined([AVA, BEN], casts) is first
    cast._COMBINED.clear()  # built again from scratch: still the same bytes, the same file
    again = cast.combined([AVA, BEN], casts)
    assert again is not first
    assert (again.wav, again.info, again.path) == (first.wav, first.info, first.path)
    assert again.path.read_bytes() == first.wav
    other = cast.combined([BEN, AVA], casts)
    assert other.wav != first.wav and other.info.sha256 != first.info.sha256


# --- the prompt SGLang-Omni 0.1.9 builds from it


class _Tokenizer:
    """One token per character; the semantic tokens above them."""

    SEMANTIC0 = 1_000_000

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def convert_tokens_to_ids(self, token: str) -> int:
        assert token == "<|semantic:0|>"
        return self.SEMANTIC0


class _Tensor(np.ndarray):
    def clone(self) -> _Tensor:
        return self.copy()

    def to(self, dtype: Any) -> _Tensor:
        return self.astype(dtype)


def _stub_torch() -> types.ModuleType:
    """The part of torch that `tokenizer.py` uses, on numpy (torch is not installed here)."""

    def wrap(f: Any) -> Any:
        return lambda *args, **kwargs: np.asarray(f(*args, **kwargs)).view(_Tensor)

    torch: Any = types.ModuleType("torch")
    torch.Tensor = _Tensor
    torch.int, torch.bool = np.int64, np.bool_
    torch.tensor = wrap(lambda data, dtype=None: np.asarray(data, dtype=dtype))
    torch.cat = wrap(lambda parts, dim=0: np.concatenate(parts, axis=dim))
    torch.zeros_like = wrap(lambda x, dtype=None: np.zeros_like(x, dtype=dtype))
    torch.ones_like = wrap(lambda x, dtype=None: np.ones_like(x, dtype=dtype))
    return torch


@pytest.fixture
def s2_tokenizer(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """0.1.9's own `models/fishaudio_s2_pro/tokenizer.py`, imported over the stubs."""
    transformers: Any = types.ModuleType("transformers")
    transformers.PreTrainedTokenizerFast = object
    monkeypatch.setitem(sys.modules, "torch", _stub_torch())
    monkeypatch.setitem(sys.modules, "transformers", transformers)
    before = set(sys.modules)
    yield importlib.import_module("sglang_omni.models.fishaudio_s2_pro.tokenizer")
    for name in set(sys.modules) - before:  # nothing keeps the stubbed imports
        del sys.modules[name]


def _codec(pcm: np.ndarray) -> np.ndarray:
    """A frame-local stand-in for S2's codec: 10 codes per 2048 samples, from those samples."""
    frames = np.pad(pcm, (0, -len(pcm) % FRAME)).reshape(-1, FRAME).astype(np.int64)
    return (frames.sum(axis=1)[None, :] + np.arange(10)[:, None]) % 4096


def _decode(prompt: dict[str, Any]) -> tuple[str, list[np.ndarray]]:
    """The prompt's text, with each reference-code run shown as `<VQ>`, and the codes."""
    text, in_vq = [], False
    for token, vq in zip(prompt["input_ids"], prompt["vq_mask_tokens"], strict=True):
        if vq and not in_vq:
            text.append("<VQ>")
        elif not vq:
            text.append(chr(token))
        in_vq = bool(vq)
    return "".join(text), prompt["vq_parts"]


def fish_speech_prompt(transcripts: list[str], turns: list[tuple[int, str]]) -> str:
    """fish-speech's multi-speaker format (`generate_long`, the mlx port's
    `build_prompt_multi_speaker`): reference i tagged `<|speaker:i|>`, joined by newlines, the
    codes of all references after them; the turns tagged the same way, joined by newlines."""
    system = "convert the provided text to speech reference to the following:\n\nText:\n"
    system += "\n".join(f"<|speaker:{i}|>{t}" for i, t in enumerate(transcripts))
    user = "\n".join(f"<|speaker:{n}|>{t}" for n, t in turns)
    return (
        f"<|im_start|>system\n{system}\n\nSpeech:\n<VQ><|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n<|voice|>"
    )


def test_sglang_omni_builds_fish_speechs_multi_speaker_prompt(
    s2_tokenizer: types.ModuleType, casts: Path
) -> None:
    members = (AVA, BEN, CY)
    ref = cast.combined(members, casts)
    script = "<|speaker:0|> Hello there.\n<|speaker:1|>Hi, Ava.\n<|speaker:2|>Hello both."
    text = cast.speaker_text(script, ref, SpeechRequest(input=script, cast=CAST))
    adapter = s2_tokenizer.S2ProTokenizerAdapter(_Tokenizer())
    # What stages.py `_preprocess` hands `build_prompt` for our one reference.
    reference = s2_tokenizer.Reference(
        audio_bytes=ref.wav, text=ref.info.transcript, vq_codes=_codec(pcm_of(ref)).view(_Tensor)
    )
    prompt, parts = _decode(adapter.build_prompt(text=text, references=[reference]))
    expected = fish_speech_prompt(
        [m.info.transcript for m in members],
        [(0, "Hello there."), (1, "Hi, Ava."), (2, "Hello both.")],
    )
    assert prompt == expected
    # The codes are each clip's own codes, concatenated in speaker order.
    (codes,) = parts
    assert np.array_equal(codes, np.concatenate([_codec(pcm_of(m)) for m in members], axis=1))


# --- S2's context


def test_a_cast_that_fits_passes_and_one_that_does_not_is_refused_with_the_numbers(
    casts: Path,
) -> None:
    long = [persona(f"p{i}", 29.0, 1) for i in range(5)]  # 625 frames each
    four = cast.combined(long[:4], casts)
    cast.check_context(four, "Hello.", None)  # 2500 + 1024 to generate + text: fits
    with pytest.raises(BadRequest) as e:
        cast.check_context(four, "Hello.", 2048)
    assert e.value.code == "cast_too_long"
    message = e.value.message
    assert "(<|speaker:0|> p0, <|speaker:1|> p1, <|speaker:2|> p2, <|speaker:3|> p3)" in message
    assert "2500 reference frames (116.1 s of clips at 21.5 frames/s)" in message
    assert "2048 for generation" in message and "context of 4096 tokens" in message
    with pytest.raises(BadRequest, match="use shorter clips, fewer speakers"):
        cast.check_context(cast.combined(long, casts), "Hello.", None)  # 3125 + 1024 + text


def test_a_leading_speaker_zero_is_left_to_sglang_omni(casts: Path) -> None:
    ref = cast.combined([AVA, BEN], casts)
    request = SpeechRequest(input="x", cast=["ava", "ben"])
    assert cast.speaker_text(" <|speaker:0|> Hi.", ref, request) == "Hi."
    assert cast.speaker_text("<|speaker:1|> Hi.", ref, request) == "<|speaker:1|> Hi."
    styled = SpeechRequest(input="x", cast=["ava", "ben"], style="calm")
    assert cast.speaker_text("<|speaker:0|>Hi.", ref, styled) == "[calm] Hi."


# --- on the sidecar


async def test_each_speaker_of_a_cast_speaks_in_its_own_voice(
    cast_sidecar: SidecarProcess,
) -> None:
    line = "Good evening and welcome to the show."
    async with S2Client(cast_sidecar.url) as client:
        hz = {}
        for name in CAST:  # each persona alone: the preview voice to compare with
            hz[name] = pitch_hz(await client.synthesize(line, voice=name))
        for n, name in enumerate(CAST):
            pcm = await client.synthesize(f"<|speaker:{n}|> {line}", cast=CAST)
            heard, off = who(pcm, SAMPLE_RATE, hz)
            assert heard == name, (n, heard, off)
            # The words: undo the voice's pitch shift for the recogniser.
            assert wer(line, transcribe(plain(pcm, SAMPLE_RATE, name), SAMPLE_RATE)) <= 0.5


async def _error(url: str, body: dict[str, object]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(url + SPEECH_PATH, json=body) as r:
        return r.status, (await r.json())["error"]


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"input": "Hi.", "cast": ["ava", "zed"]},
            "unknown_cast_member",
            "cast member 'zed' is not a registered persona (registered: ava, ben, cy",
        ),
        (
            {"input": "Hi. <|speaker:2|> Hello.", "cast": ["ava", "ben"]},
            "invalid_request",
            "<|speaker:2|> names no one: the cast has 2 speakers (<|speaker:0|> ava, "
            "<|speaker:1|> ben); add a persona to the cast or use a lower speaker number",
        ),
        (
            {"input": "Hi.", "cast": ["ava", "ava"]},
            "invalid_request",
            "the cast names ava more than once",
        ),
        (
            {"input": "Hi.", "cast": []},
            "invalid_request",
            "the cast is empty",
        ),
        (
            {"input": "Hi.", "cast": ["ava", "ben"], "voice": "cy"},
            "invalid_request",
            "voice 'cy' is not the cast's speaker 0 ('ava')",
        ),
    ],
)
async def test_bad_cast_requests_say_what_to_change(
    cast_sidecar: SidecarProcess, body: dict[str, object], code: str, message: str
) -> None:
    status, error = await _error(cast_sidecar.url, body)
    assert (status, error["code"]) == (400, code)
    assert message in error["message"]


async def test_a_cast_that_overflows_the_context_is_a_400_with_the_numbers(
    cast_sidecar: SidecarProcess,
) -> None:
    rng = np.random.default_rng(0)
    async with S2Client(cast_sidecar.url) as client:
        for name in ("long0", "long1"):  # 55 s of noise each: 2 x 1182 frames
            noise = (rng.standard_normal(55 * SAMPLE_RATE) * 3000).astype("<i2").tobytes()
            await client.register(Persona(name, wav_bytes(noise), "A long clip of noise."))
        with pytest.raises(S2StatusError) as e:
            await client.synthesize("Hello.", cast=["long0", "long1"], max_new_tokens=2048)
    assert (e.value.status, e.value.code) == (400, "cast_too_long")
    frames = re.search(r"(\d+) reference frames \(([\d.]+) s of clips", str(e.value))
    assert frames is not None and 2300 < int(frames[1]) < 2400, str(e.value)
    assert re.search(r"2048 for generation = (\d+);", str(e.value))
