"""`/v1/audio/voices`: list, read, upload and delete personas, in SGLang-Omni's shape."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from multidict import MultiDictProxy

from s2_plugin.personas import MAX_CLIP_BYTES
from s2_plugin.protocol import VoiceList
from s2_sidecar.bodies import model_response
from s2_sidecar.errors import BadRequest, RequestTimeout, TooLarge, UnsupportedMedia
from s2_sidecar.state import ALIASES, BACKGROUND, REGISTER_LOCK, SETTINGS, STORE
from s2_sidecar.warmup import warm

log = logging.getLogger(__name__)

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]

_LOGGED_FIELDS = ("consent", "speaker_description")
"""SGLang-Omni's upload fields that S2 has no use for: logged, not stored."""


async def list_voices(request: web.Request) -> web.Response:
    personas = request.app[STORE].list()
    names = {p.name for p in personas} | request.app[ALIASES].keys()
    return model_response(VoiceList(voices=sorted(names), uploaded_voices=personas))


async def get_voice(request: web.Request) -> web.Response:
    return model_response(request.app[STORE].get(request.match_info["name"]).info)


async def delete_voice(request: web.Request) -> web.Response:
    request.app[STORE].delete(request.match_info["name"])
    return web.Response(status=204)


async def upload_voice(request: web.Request) -> web.Response:
    """Multipart fields: name, audio (file), transcript, style (optional), replace (optional).

    SGLang-Omni's names work too: `audio_sample` for audio, `ref_text` for transcript;
    its `consent` and `speaker_description` are accepted and logged, not stored.
    """
    form = await _form(request)
    data = _clip(form)
    app = request.app
    async with app[REGISTER_LOCK]:
        persona, changed = await asyncio.to_thread(
            app[STORE].register,
            _field(form, "name"),
            data,
            _field(form, "transcript") or _field(form, "ref_text"),
            _field(form, "style") or None,
            replace=_field(form, "replace").lower() in ("1", "true", "yes"),
        )
    if changed:
        log.info(
            "registered persona %s (%.1f s)%s",
            persona.name,
            persona.info.duration_s,
            "".join(f"; {k}: {_field(form, k)!r}" for k in _LOGGED_FIELDS if _field(form, k)),
        )
        for warning in persona.info.warnings:
            log.warning("persona %s: %s", persona.name, warning)
        app[BACKGROUND].spawn(warm(app, persona))
    return model_response(persona.info, status=201 if changed else 200)


async def _form(request: web.Request) -> Form:
    if request.content_type != "multipart/form-data":
        raise UnsupportedMedia(
            f"send personas as multipart/form-data, not {request.content_type!r}",
            "unsupported_media_type",
        )
    timeout = request.app[SETTINGS].body_timeout
    try:
        async with asyncio.timeout(timeout):
            return await request.post()
    except TimeoutError as e:
        raise RequestTimeout(
            f"the upload took longer than {timeout:g} s to arrive", "body_timeout"
        ) from e
    except (ValueError, AssertionError, KeyError, LookupError) as e:
        # aiohttp's multipart reader: no boundary, a part without a name, bytes that are not
        # text in a text field, an unknown charset.
        raise BadRequest(
            f"the multipart form could not be read ({type(e).__name__}: {e}); send "
            "multipart/form-data with a boundary, a name on every part and UTF-8 text fields",
            "malformed_form",
        ) from e


def _clip(form: Form) -> bytes:
    audio = form.get("audio", form.get("audio_sample"))
    if isinstance(audio, web.FileField):
        data = audio.file.read()
    elif isinstance(audio, str | bytes | bytearray) and audio:
        data = audio.encode() if isinstance(audio, str) else bytes(audio)
    else:
        raise BadRequest("the 'audio' field is missing; attach the reference clip", "missing_audio")
    if len(data) > MAX_CLIP_BYTES:
        raise TooLarge(
            f"the clip is {len(data)} bytes; keep it under {MAX_CLIP_BYTES} "
            "(10-30 s of mono audio is plenty)",
            "audio_too_large",
        )
    return data


def _field(form: Form, name: str) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise BadRequest(f"the {name!r} field must be text, not a file", f"invalid_{name}")
    return value
