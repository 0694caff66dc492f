"""`/v1/audio/voices` on a real sidecar process (preview engine): personas listed, uploaded,
warmed up, kept and deleted."""

from __future__ import annotations

import io

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from support.sidecar import PERSONAS_TOML, SidecarProcess
from support.sidecar_http import SENTENCE, tone, upload
from support.waiting import until

from s2_plugin.audio import wav_bytes
from s2_plugin.client import S2Client, S2StatusError
from s2_plugin.personas import MAX_CLIP_BYTES, Persona, content_hash, load_personas
from s2_plugin.protocol import SAMPLE_RATE


def store_files(sidecar: SidecarProcess) -> set[str]:
    return {p.name for p in sidecar.store.iterdir()}


async def test_lists_the_test_persona_with_the_hash_of_its_upload(sidecar: SidecarProcess) -> None:
    (persona,) = load_personas(PERSONAS_TOML)
    async with S2Client(sidecar.url) as client:
        voices = {v.name: v for v in await client.list_voices()}
        info = await client.get_voice("joe")
    assert info == voices["joe"]
    assert info.sha256 == persona.content_hash()
    assert info.transcript == persona.transcript
    assert 12 < info.duration_s < 16 and info.warnings == []


async def test_registration_is_idempotent_and_conflicts_need_replace(
    sidecar: SidecarProcess,
) -> None:
    clip = tone(12)
    persona = Persona("tone-idem", clip, "A warbling tone.")
    async with S2Client(sidecar.url) as client:
        first = await client.register(persona)
        status, again = await upload(
            sidecar.url, {"name": "tone-idem", "audio": clip, "transcript": "A warbling tone."}
        )
        assert status == 200 and again["sha256"] == first.sha256
        other = Persona("tone-idem", clip, "Another transcript.")
        with pytest.raises(S2StatusError) as e:
            await client.register(other)
        assert e.value.status == 409 and "replace" in e.value.message
        replaced = await client.register(other, replace=True)
        assert replaced.sha256 == content_hash(clip, "Another transcript.", None)
        await client.delete_voice("tone-idem")
        assert await client.get_voice("tone-idem") is None
    assert not any(name.startswith("tone-idem") for name in store_files(sidecar))


async def test_persona_warm_up_runs_after_registration(sidecar: SidecarProcess) -> None:
    before = sidecar.metrics().value("s2_warmups_total", outcome="ok")
    async with S2Client(sidecar.url) as client:
        await client.register(Persona("tone-warm", tone(11), "A tone."))
        try:
            await until(
                lambda: sidecar.metrics().value("s2_warmups_total", outcome="ok") > before,
                "a warm-up after registration",
            )
        finally:
            await client.delete_voice("tone-warm")


async def test_personas_persist_across_restart(make_sidecar) -> None:  # type: ignore[no-untyped-def]
    process: SidecarProcess = make_sidecar()
    async with S2Client(process.url) as client:
        registered = await client.register(Persona("kept", tone(12), "A tone kept on disk."))
    process.restart()
    async with S2Client(process.url) as client:
        assert await client.get_voice("kept") == registered
        pcm = await client.synthesize(SENTENCE, voice="kept")
    assert len(pcm) > SAMPLE_RATE


async def test_a_piped_wav_of_unknown_length_registers(sidecar: SidecarProcess) -> None:
    """ffmpeg writes 0xFFFFFFFF as the data size to a pipe; the clip is read to its end."""
    clip = bytearray(tone(12))
    clip[40:44] = b"\xff\xff\xff\xff"
    status, info = await upload(
        sidecar.url, {"name": "piped", "audio": bytes(clip), "transcript": "x"}
    )
    assert status == 201, info
    assert 11 < float(info["duration_s"]) < 13  # type: ignore[arg-type]
    async with S2Client(sidecar.url) as client:
        await client.delete_voice("piped")


# --- bad input: a 4xx with a JSON error saying what to change, nothing stored --------------


def _silent() -> bytes:
    return wav_bytes(bytes(2 * 22050 * 12), 22050)


def _nan_wav() -> bytes:
    x = np.sin(np.arange(22050 * 12) / 10).astype(np.float32)
    x[1000] = np.nan
    buf = io.BytesIO()
    sf.write(buf, x, 22050, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _truncated() -> bytes:
    whole = tone(12)
    return whole[: len(whole) // 2]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"name": "../evil", "audio": tone(12), "transcript": "x"}, 400, "invalid_persona"),
        ({"name": "a/b", "audio": tone(12), "transcript": "x"}, 400, "invalid_persona"),
        (
            {"name": "text", "audio": b"this is not audio" * 100, "transcript": "x"},
            415,
            "audio_format",
        ),
        (
            {"name": "garbled", "audio": b"RIFF" + b"not audio" * 100, "transcript": "x"},
            400,
            "audio_undecodable",
        ),
        ({"name": "cut", "audio": _truncated(), "transcript": "x"}, 400, "audio_truncated"),
        ({"name": "short", "audio": tone(1), "transcript": "x"}, 400, "audio_too_short"),
        ({"name": "long", "audio": tone(300, rate=8000), "transcript": "x"}, 400, "audio_too_long"),
        ({"name": "silent", "audio": _silent(), "transcript": "x"}, 400, "audio_silent"),
        ({"name": "loud", "audio": tone(12, level=4.0), "transcript": "x"}, 400, "audio_clipped"),
        ({"name": "notext", "audio": tone(12)}, 400, "invalid_persona"),
        ({"name": "blank", "audio": tone(12), "transcript": "   "}, 400, "invalid_persona"),
        ({"name": "noaudio", "transcript": "x"}, 400, "missing_audio"),
        (
            {"name": "huge", "audio": bytes(MAX_CLIP_BYTES + 1), "transcript": "x"},
            413,
            "audio_too_large",
        ),
        (
            {"name": "huger", "audio": bytes(MAX_CLIP_BYTES * 2), "transcript": "x"},
            413,
            "body_too_large",
        ),
        (
            {"name": "badstyle", "audio": tone(12), "transcript": "x", "style": "a]b"},
            400,
            "invalid_persona",
        ),
        # Each of these registered (201), then every request for it was a 500 (issue 11).
        (
            {"name": "s1", "audio": tone(12), "transcript": "x", "style": "[bad"},
            400,
            "invalid_persona",
        ),
        (
            {"name": "s2", "audio": tone(12), "transcript": "x", "style": "warm]"},
            400,
            "invalid_persona",
        ),
        (
            {"name": "s3", "audio": tone(12), "transcript": "x", "style": "[[warm"},
            400,
            "invalid_persona",
        ),
        (
            {"name": "t1", "audio": tone(12), "transcript": "[bad transcript"},
            400,
            "invalid_persona",
        ),
        ({"name": "nan", "audio": _nan_wav(), "transcript": "x"}, 400, "audio_not_finite"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_bad_uploads_store_nothing(
    sidecar: SidecarProcess, fields: dict[str, object], status: int, code: str
) -> None:
    files_before = store_files(sidecar)
    async with S2Client(sidecar.url) as client:
        voices_before = await client.list_voices()
        got, error = await upload(sidecar.url, fields)
        assert (got, error["error"]["code"]) == (status, code), error
        assert error["error"]["message"]
        assert await client.list_voices() == voices_before
    assert store_files(sidecar) == files_before


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--x\r\n\r\nhello\r\n--x--\r\n", "multipart/form-data"),
        (
            b"--x\r\nContent-Disposition: form-data\r\n\r\nhello\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
        ),
        (
            b'--x\r\nContent-Disposition: form-data; name="transcript"\r\n\r\n\xff\xfe\x00'
            b"\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
        ),
    ],
    ids=["no-boundary", "nameless-part", "binary-text-field"],
)
async def test_malformed_forms_are_a_400(
    sidecar: SidecarProcess, body: bytes, content_type: str
) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            sidecar.url + "/v1/audio/voices", data=body, headers={"Content-Type": content_type}
        ) as r,
    ):
        error = await r.json()
    assert r.status == 400, error
    assert error["error"]["code"] in ("malformed_form", "missing_audio", "invalid_transcript")


async def test_upload_needs_multipart(sidecar: SidecarProcess) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(sidecar.url + "/v1/audio/voices", json={"name": "x"}) as r,
    ):
        assert r.status == 415
        assert "multipart/form-data" in (await r.json())["error"]["message"]
