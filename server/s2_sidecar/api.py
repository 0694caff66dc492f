"""The sidecar's HTTP API (aiohttp): speech, personas, health, metrics.

Run the app with `handler_cancellation=True` (as `httpserver.serve` does): a client that
disconnects then cancels its handler at once, and the cancellation reaches the engine.

Once a stream's headers are out, a failure can no longer become a JSON error: the connection
is cut without the final chunk, so the client sees a broken stream (and raises) instead of
audio that just ends, or an error document inside the audio.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel, ValidationError

from s2_plugin import segment, tags
from s2_plugin.personas import MAX_CLIP_BYTES
from s2_plugin.protocol import (
    HEADER_ENGINE,
    HEADER_REQUEST_ID,
    HEADER_SAMPLE_RATE,
    HEALTH_PATH,
    METRICS_PATH,
    MODELS_PATH,
    OPENAI_PCM_RATE,
    OPENAI_VOICES,
    SAMPLE_RATE,
    SPEECH_PATH,
    VOICES_PATH,
    ErrorBody,
    ErrorDetail,
    Health,
    SpeechReference,
    SpeechRequest,
    VoiceList,
    describe,
)
from s2_sidecar import cast, encoders, studio
from s2_sidecar.admission import Admission
from s2_sidecar.encoders import Encoder
from s2_sidecar.engines.base import Engine
from s2_sidecar.errors import (
    BadRequest,
    NotFound,
    RequestTimeout,
    SidecarError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from s2_sidecar.metrics import CONTENT_TYPE, Metrics
from s2_sidecar.settings import Settings
from s2_sidecar.store import PersonaStore, StoredPersona

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", Engine)
ALIASES = web.AppKey("aliases", dict[str, str])
"""Voice names (OpenAI's, say) that stand for personas: {"alloy": "joe"}."""
STORE = web.AppKey("store", PersonaStore)
METRICS = web.AppKey("metrics", Metrics)
SETTINGS = web.AppKey("settings", Settings)
_ADMISSION = web.AppKey("admission", Admission)
_TASKS = web.AppKey("tasks", set[asyncio.Task[None]])
_REGISTER_LOCK = web.AppKey("register_lock", asyncio.Lock)


@dataclass
class _State:
    draining: bool = False
    streams: dict[str, float] = field(default_factory=dict)
    """Request id -> start time of every speech response in progress."""


_STATE = web.AppKey("state", _State)

DEFAULT_VOICE = "default"
"""`voice` when none is named: the engine's own voice, unless a persona takes this name."""

WARMUP_TEXT = "Hello."
_PUBLIC_PATHS = frozenset({HEALTH_PATH, METRICS_PATH, *studio.PATHS})
_FORM_OVERHEAD = 64 * 1024
"""Room for the multipart fields around a clip of the largest accepted size."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    engine: Engine,
    store: PersonaStore,
    *,
    metrics: Metrics | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
    aliases: dict[str, str] | None = None,
) -> web.Application:
    """The sidecar as an aiohttp app; starting it starts the engine, cleanup stops it."""
    middlewares = [_errors] + ([_auth(api_key)] if api_key else [])
    app = web.Application(middlewares=middlewares, client_max_size=MAX_CLIP_BYTES + _FORM_OVERHEAD)
    settings = settings or Settings()
    metrics = metrics or Metrics()
    limit = settings.max_concurrency or engine.max_concurrency
    app[ENGINE] = engine
    app[STORE] = store
    app[METRICS] = metrics
    app[SETTINGS] = settings
    app[ALIASES] = dict(aliases or {})
    app[_STATE] = _State()
    queue = limit if settings.queue_size is None else settings.queue_size
    app[_ADMISSION] = Admission(limit, queue, settings.queue_wait, metrics)
    app[_TASKS] = set()
    app[_REGISTER_LOCK] = asyncio.Lock()
    app.add_routes(
        [
            web.post(SPEECH_PATH, speech),
            web.get(VOICES_PATH, list_voices),
            web.post(VOICES_PATH, upload_voice),
            web.get(VOICES_PATH + "/{name}", get_voice),
            web.delete(VOICES_PATH + "/{name}", delete_voice),
            web.get(MODELS_PATH, list_models),
            web.get(HEALTH_PATH, health),
            web.get(METRICS_PATH, metrics_text),
        ]
    )
    studio.add_routes(app)
    app.cleanup_ctx.append(_engine_running)
    return app


async def _engine_running(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    engine.on_ready = lambda: _spawn(app, _warm_all(app))
    await engine.start()
    yield
    for task in app[_TASKS]:
        task.cancel()
    await asyncio.gather(*app[_TASKS], return_exceptions=True)
    await engine.stop()


# --- speech -------------------------------------------------------------------------------


async def speech(request: web.Request) -> web.StreamResponse:
    """Speech in any format, streamed as it is generated; headers go out with the first audio."""
    app = request.app
    state, metrics = app[_STATE], app[METRICS]
    if state.draining:
        metrics.rejected.labels("draining").inc()
        raise Unavailable("the sidecar is shutting down; retry on another one", "draining")
    req = await _speech_request(request)
    engine = app[ENGINE]
    texts = segment.split(req.input, engine.max_text_chars)
    persona: StoredPersona | None
    if req.cast:
        reference = cast.resolve(app[STORE], req.cast)
        persona, parts = reference, [cast.for_cast(t, reference, req) for t in texts]
    else:
        persona = await _voice(app, req)
        style = req.style_tag
        if style is None and persona is not None:
            style = persona.info.style
        parts = [tags.apply_style(t, style) for t in texts]
    _require_ready(engine)
    try:
        encoder = Encoder(req.response_format, _rate(req))
    except ValueError as e:
        raise BadRequest(str(e), "invalid_sample_rate") from e
    async with app[_ADMISSION].slot():
        return await _respond(request, parts, persona, req, encoder)


def _rate(req: SpeechRequest) -> int:
    """The output rate. `pcm` has no header, so each kind of client gets the rate it assumes:
    SGLang-Omni's streaming clients (`stream: true`) 44.1 kHz, as SGLang-Omni sends; OpenAI's
    (which never send `stream`) 24 kHz, as OpenAI defines `pcm`. `sample_rate` overrides both,
    and `X-Sample-Rate` always tells the truth."""
    if req.response_format == "pcm" and req.sample_rate is None:
        return SAMPLE_RATE if req.stream else OPENAI_PCM_RATE
    return encoders.rate_for(req.response_format, req.sample_rate)


async def _respond(
    request: web.Request,
    parts: list[str],
    persona: StoredPersona | None,
    req: SpeechRequest,
    encoder: Encoder,
) -> web.StreamResponse:
    app = request.app
    engine, metrics, state = app[ENGINE], app[METRICS], app[_STATE]
    request_id = request.headers.get(HEADER_REQUEST_ID) or uuid.uuid4().hex
    sse = req.stream_format == "sse"
    headers = {
        HEADER_SAMPLE_RATE: str(encoder.rate),
        HEADER_REQUEST_ID: request_id,
        HEADER_ENGINE: engine.name,
        "X-Channels": "1",
        "Content-Type": "text/event-stream" if sse else encoder.content_type,
    }
    if req.response_format in ("pcm", "wav"):
        headers["X-Bit-Depth"] = "16"
    started = time.perf_counter()
    chunks = aiter(_generate(engine, parts, persona, req))
    metrics.active_streams.inc()
    state.streams[request_id] = started
    response: web.StreamResponse | None = None
    sent = 0
    write_timeout = app[SETTINGS].write_timeout
    try:
        first = await anext(chunks, b"")  # an engine error here still becomes a JSON error
        metrics.ttfa.observe(time.perf_counter() - started)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)

        async def send(data: bytes) -> None:
            assert response is not None
            if data:
                await _send(response, _sse_delta(data) if sse else data, write_timeout)

        async def emit(pcm: bytes) -> None:
            # A compressing encoder takes 10-30 ms per second of audio: fed a whole sentence
            # at once it would hold the first bytes back for that long, so feed it in slices.
            step = len(pcm) if encoder.format in ("pcm", "wav") else _ENCODE_SLICE
            for i in range(0, len(pcm), step or 1):
                await send(encoder.encode(pcm[i : i + step]))

        await emit(first)
        sent = len(first)
        async for pcm in chunks:
            await emit(pcm)
            sent += len(pcm)
        await send(encoder.finish())
        if sse:
            await _send(response, _sse_done(), write_timeout)
        await response.write_eof()
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        metrics.streams_cancelled.inc()
        raise
    except _Stalled:
        assert response is not None
        log.warning(
            "request %s: the client read nothing for %g s; cut its stream",
            request_id,
            app[SETTINGS].write_timeout,
        )
        return _cut(request, response, "write_timeout")
    except Exception as e:
        if response is None or not response.prepared:
            raise
        log.warning("request %s: the engine failed mid-stream, cutting it: %s", request_id, e)
        return _cut(request, response, "engine_error")
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
        encoder.close()
        state.streams.pop(request_id, None)
        metrics.active_streams.dec()
        metrics.audio_seconds.inc(sent / 2 / SAMPLE_RATE)


async def _generate(
    engine: Engine, parts: list[str], persona: StoredPersona | None, req: SpeechRequest
) -> AsyncIterator[bytes]:
    """The parts' audio, one generation after the other, as one stream."""
    for part in parts:
        chunks = engine.generate(part, persona, req)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]


def _sse_delta(audio: bytes) -> bytes:
    """One SSE event of OpenAI's and SGLang-Omni's speech stream: a piece of the audio."""
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode()}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _sse_done() -> bytes:
    # No usage: the engines report no token counts (and LiveKit's client fails on a null).
    event = {"type": "speech.audio.done", "finish_reason": "stop"}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


_ENCODE_SLICE = 4096 * 2
"""Bytes of PCM (4096 samples, 93 ms) a compressing encoder gets at a time."""


class _Stalled(Exception):
    """The client left the audio unread for longer than `write_timeout`."""


async def _send(response: web.StreamResponse, data: bytes, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await response.write(data)
    except TimeoutError as e:
        raise _Stalled from e


def _cut(request: web.Request, response: web.StreamResponse, reason: str) -> web.StreamResponse:
    """Drop the connection without the final chunk: the client sees the stream break."""
    request.app[METRICS].streams_aborted.labels(reason).inc()
    if request.transport is not None:
        request.transport.abort()
    return response


def start_draining(app: web.Application) -> None:
    """From now on new speech requests get a 503 and /health says the sidecar is going."""
    app[_STATE].draining = True


def in_flight(app: web.Application) -> list[str]:
    """Request ids of the speech responses in progress."""
    return list(app[_STATE].streams)


async def _speech_request(request: web.Request) -> SpeechRequest:
    settings = request.app[SETTINGS]
    raw = await _json_body(request, settings.max_reference_body)
    if len(raw) > settings.max_speech_body and not any(k in raw for k in _REFERENCE_KEYS):
        raise TooLarge(_too_large(len(raw), settings.max_speech_body), "body_too_large")
    try:
        return SpeechRequest.model_validate_json(raw)
    except ValidationError as e:
        if any(err["type"] == "json_invalid" for err in e.errors()):
            raise BadRequest(f"the body is not valid JSON: {describe(e)}", "malformed_json") from e
        raise BadRequest(describe(e), "invalid_request") from e


_REFERENCE_KEYS = (b'"references"', b'"ref_audio"')
"""Only a request that carries a reference clip may be larger than `max_speech_body`."""


async def _voice(app: web.Application, req: SpeechRequest) -> StoredPersona | None:
    """The persona to speak with: a clip sent inline, else the named (or aliased) persona."""
    reference = _inline_reference(req)
    if reference is not None:
        audio, text = reference
        return await asyncio.to_thread(app[STORE].inline, audio, text)
    name = app[ALIASES].get(req.voice, req.voice)
    if name == DEFAULT_VOICE:
        return app[STORE].find(name)
    persona = app[STORE].find(name)
    if persona is None and name in OPENAI_VOICES:
        raise NotFound(
            f"{name!r} is an OpenAI voice name with no persona behind it on this sidecar; "
            f"start it with --voice-alias {name}=PERSONA, or name a persona as the voice",
            "unknown_voice",
        )
    return persona if persona is not None else app[STORE].get(name)


def _inline_reference(req: SpeechRequest) -> tuple[bytes, str] | None:
    """The clip and transcript of a reference sent in the request, if there is one."""
    refs = list(req.references or [])
    if req.ref_audio is not None:
        refs.append(SpeechReference(audio=req.ref_audio, text=req.ref_text))
    if not refs:
        return None
    if len(refs) > 1:
        raise BadRequest(
            "send one inline reference per request; register personas for several voices",
            "too_many_references",
        )
    ref = refs[0]
    if ref.vq_codes is not None:
        raise BadRequest("vq_codes are not accepted; send the clip as base64", "invalid_reference")
    value = ref.data or ref.audio or ref.ref_audio
    if ref.audio_path is not None or (value and value.startswith(_NOT_INLINE)):
        raise BadRequest(
            "references by path or URL are refused: the sidecar reads no local files and fetches "
            "nothing for a client; send the clip inline as base64 (data or a data: URL), or "
            "register it once (POST /v1/audio/voices)",
            "reference_not_inline",
        )
    if not value:
        raise BadRequest("the reference has no audio; send it as base64 in 'data'", "no_audio")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        audio = base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise BadRequest(f"the reference is not valid base64 ({e})", "invalid_reference") from e
    text = ref.text or req.ref_text
    if not text:
        raise BadRequest(
            "the reference needs its transcript ('text', or 'ref_text'): what the clip says",
            "invalid_reference",
        )
    return audio, text


_NOT_INLINE = ("/", "file:", "http:", "https:", "s3:", "gs:")


def _require_ready(engine: Engine) -> None:
    status, detail = engine.health()
    if status != "ready":
        raise Unavailable(f"the engine is {status} ({detail}); retry shortly", f"engine_{status}")


# --- personas ------------------------------------------------------------------------------


async def list_voices(request: web.Request) -> web.Response:
    personas = request.app[STORE].list()
    aliases: dict[str, str] = request.app[ALIASES]
    names = {p.name for p in personas} | aliases.keys()
    return _model_response(VoiceList(voices=sorted(names), uploaded_voices=personas))


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1/models` in OpenAI's shape: the one model this sidecar serves."""
    engine = request.app[ENGINE]
    model = {"id": engine.model, "object": "model", "created": 0, "owned_by": engine.name}
    return web.json_response({"object": "list", "data": [model]})


async def get_voice(request: web.Request) -> web.Response:
    return _model_response(request.app[STORE].get(request.match_info["name"]).info)


async def delete_voice(request: web.Request) -> web.Response:
    request.app[STORE].delete(request.match_info["name"])
    return web.Response(status=204)


async def upload_voice(request: web.Request) -> web.Response:
    """Multipart fields: name, audio (file), transcript, style (optional), replace (optional).

    SGLang-Omni's names work too: `audio_sample` for audio, `ref_text` for transcript;
    its `consent` and `speaker_description` are accepted and logged, not stored.
    """
    if request.content_type != "multipart/form-data":
        raise UnsupportedMedia(
            f"send personas as multipart/form-data, not {request.content_type!r}",
            "unsupported_media_type",
        )
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_timeout):
            form = await request.post()
    except TimeoutError as e:
        raise RequestTimeout(
            f"the upload took longer than {request.app[SETTINGS].body_timeout:g} s to arrive",
            "body_timeout",
        ) from e
    except (ValueError, AssertionError, KeyError, LookupError) as e:
        # aiohttp's multipart reader: no boundary, a part without a name, bytes that are not
        # text in a text field, an unknown charset.
        raise BadRequest(
            f"the multipart form could not be read ({type(e).__name__}: {e}); send "
            "multipart/form-data with a boundary, a name on every part and UTF-8 text fields",
            "malformed_form",
        ) from e
    audio = form.get("audio", form.get("audio_sample"))
    if isinstance(audio, web.FileField):
        data = audio.file.read()
    elif isinstance(audio, str | bytes) and audio:
        data = audio.encode() if isinstance(audio, str) else audio
    else:
        raise BadRequest("the 'audio' field is missing; attach the reference clip", "missing_audio")
    if len(data) > MAX_CLIP_BYTES:
        raise TooLarge(
            f"the clip is {len(data)} bytes; keep it under {MAX_CLIP_BYTES} "
            "(10-30 s of mono audio is plenty)",
            "audio_too_large",
        )
    app = request.app
    async with app[_REGISTER_LOCK]:
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
        _spawn(app, _warm(app, persona))
    return _model_response(persona.info, status=201 if changed else 200)


_LOGGED_FIELDS = ("consent", "speaker_description")


def _field(form: object, name: str) -> str:
    value = form.get(name, "")  # type: ignore[attr-defined]
    if not isinstance(value, str):
        raise BadRequest(f"the {name!r} field must be text, not a file", f"invalid_{name}")
    return value


async def _warm_all(app: web.Application) -> None:
    for persona in app[STORE].list():
        await _warm(app, app[STORE].get(persona.name))


async def _warm(app: web.Application, persona: StoredPersona) -> None:
    """A short generation so the persona's prefix sits in the engine's cache."""
    metrics = app[METRICS]
    try:
        request = SpeechRequest(input=WARMUP_TEXT, voice=persona.name, max_new_tokens=32)
        async for _ in app[ENGINE].generate(WARMUP_TEXT, persona, request):
            pass
    except Exception as e:
        metrics.warmups.labels("error").inc()
        log.warning("warm-up of persona %s failed: %s", persona.name, e)
    else:
        metrics.warmups.labels("ok").inc()


def _spawn(app: web.Application, coro: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coro)
    app[_TASKS].add(task)
    task.add_done_callback(app[_TASKS].discard)


# --- health and metrics --------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    status, detail = engine.health()
    if request.app[_STATE].draining:
        status, detail = "unhealthy", "shutting down"
    body = Health(
        status=status,
        engine=engine.name,
        model=engine.model,
        preview=engine.preview,
        personas=len(request.app[STORE].list()),
        detail=detail,
    )
    return _model_response(body, status=200 if status == "ready" else 503)


async def metrics_text(request: web.Request) -> web.Response:
    response = web.Response(body=request.app[METRICS].render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


# --- plumbing ------------------------------------------------------------------------------


async def _json_body(request: web.Request, limit: int) -> bytes:
    """A JSON request's raw body as UTF-8, within `limit` bytes."""
    if request.content_type != "application/json":
        raise UnsupportedMedia(
            f"send the request as application/json, not {request.content_type!r}",
            "unsupported_media_type",
        )
    raw = await _body(request, limit)
    charset = (request.charset or "utf-8").lower()
    if charset in ("utf-8", "utf8"):
        return raw
    try:
        return raw.decode(charset).encode()
    except LookupError as e:
        raise BadRequest(f"unknown charset {charset!r}; send UTF-8", "bad_charset") from e
    except UnicodeDecodeError as e:
        raise BadRequest(f"the body is not valid {charset} ({e})", "bad_charset") from e


async def _body(request: web.Request, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes before reading it all."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(_too_large(request.content_length, limit), "body_too_large")
    data = bytearray()
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_timeout):
            while chunk := await request.content.read(64 * 1024):
                data += chunk
                if len(data) > limit:
                    raise TooLarge(_too_large(len(data), limit), "body_too_large")
    except TimeoutError as e:
        raise RequestTimeout(
            f"the body took longer than {request.app[SETTINGS].body_timeout:g} s to arrive",
            "body_timeout",
        ) from e
    return bytes(data)


def _too_large(size: int, limit: int) -> str:
    return f"the body is {size} bytes or more; speech requests are limited to {limit} bytes"


def _model_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(),
        status=status,
        content_type="application/json",
    )


def error_response(status: int, message: str, type_: str, code: str | None) -> web.Response:
    """The JSON error every failure answers with."""
    body = ErrorBody(error=ErrorDetail(message=message, type=type_, code=code))
    return _model_response(body, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes `{"error": {...}}`; every response is counted."""
    metrics = request.app[METRICS]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    code: str | None = None
    try:
        response = await handler(request)
    except SidecarError as e:
        code = e.code
        response = error_response(e.status, e.message, e.type, code)
        response.headers.update(e.headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = "body_too_large" if e.status == 413 else f"http_{e.status}"
        message = e.text or e.reason
        if e.status == 413:
            message = f"{message}; keep uploads under {MAX_CLIP_BYTES} bytes"
        response = error_response(e.status, message, "invalid_request_error", code)
        if "Allow" in e.headers:  # a 405 says which methods the route takes
            response.headers["Allow"] = e.headers["Allow"]
    except (asyncio.CancelledError, ConnectionResetError):
        metrics.requests.labels(route, "499").inc()  # nginx's "client closed request"
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        code = "internal_error"
        response = error_response(500, "internal error; see the sidecar log", "server_error", code)
    if code is not None:
        metrics.errors.labels(code).inc()
    metrics.requests.labels(route, str(response.status)).inc()
    return response


def _auth(api_key: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = api_key.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in _PUBLIC_PATHS:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given:
                raise Unauthorized(
                    "this sidecar needs an API key; send 'Authorization: Bearer <key>'",
                    "missing_api_key",
                )
            if not hmac.compare_digest(given.encode(), expected):
                raise Unauthorized("the API key is wrong; check the key you send", "bad_api_key")
        return await handler(request)

    return middleware
