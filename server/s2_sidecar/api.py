"""The sidecar's HTTP API (aiohttp): speech, personas, health, metrics.

Run the app with `handler_cancellation=True` (as `serve` does): a client that disconnects then
cancels its handler at once, and the cancellation reaches the engine.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, ValidationError

from s2_plugin import tags
from s2_plugin.audio import wav_bytes
from s2_plugin.personas import MAX_CLIP_BYTES
from s2_plugin.protocol import (
    HEADER_ENGINE,
    HEADER_REQUEST_ID,
    HEADER_SAMPLE_RATE,
    HEALTH_PATH,
    METRICS_PATH,
    SAMPLE_RATE,
    SPEECH_PATH,
    VOICES_PATH,
    ErrorBody,
    ErrorDetail,
    Health,
    SpeechRequest,
    VoiceList,
    describe,
)
from s2_sidecar import cast, studio
from s2_sidecar.engines.base import Engine
from s2_sidecar.errors import (
    BadRequest,
    SidecarError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from s2_sidecar.metrics import CONTENT_TYPE, Metrics
from s2_sidecar.store import PersonaStore, StoredPersona

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", PersonaStore)
METRICS = web.AppKey("metrics", Metrics)
_TASKS = web.AppKey("tasks", set[asyncio.Task[None]])
_REGISTER_LOCK = web.AppKey("register_lock", asyncio.Lock)

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
) -> web.Application:
    """The sidecar as an aiohttp app; starting it starts the engine, cleanup stops it."""
    middlewares = [_errors] + ([_auth(api_key)] if api_key else [])
    app = web.Application(middlewares=middlewares, client_max_size=MAX_CLIP_BYTES + _FORM_OVERHEAD)
    app[ENGINE] = engine
    app[STORE] = store
    app[METRICS] = metrics or Metrics()
    app[_TASKS] = set()
    app[_REGISTER_LOCK] = asyncio.Lock()
    app.add_routes(
        [
            web.post(SPEECH_PATH, speech),
            web.get(VOICES_PATH, list_voices),
            web.post(VOICES_PATH, upload_voice),
            web.get(VOICES_PATH + "/{name}", get_voice),
            web.delete(VOICES_PATH + "/{name}", delete_voice),
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
    """Stream raw PCM (`stream: true`) or return a WAV; headers go out with the first audio."""
    body = await _json(request)
    try:
        req = SpeechRequest.model_validate(body)
    except ValidationError as e:
        raise BadRequest(describe(e), "invalid_request") from e
    app = request.app
    if req.cast:
        members = cast.resolve(app[STORE], req.cast)
        text = cast.for_cast(req.input, members, req)
        persona: StoredPersona | None = members
    else:
        persona = _persona_for(app[STORE], req.voice)
        style = req.style if req.style is not None else (persona.info.style if persona else None)
        text = tags.apply_style(req.input, style)
    engine, metrics = app[ENGINE], app[METRICS]
    _require_ready(engine)

    headers = {
        HEADER_SAMPLE_RATE: str(SAMPLE_RATE),
        HEADER_REQUEST_ID: request.headers.get(HEADER_REQUEST_ID) or uuid.uuid4().hex,
        HEADER_ENGINE: engine.name,
    }
    started = time.perf_counter()
    chunks = aiter(engine.generate(text, persona, req))
    metrics.active_streams.inc()
    sent = 0
    try:
        first = await anext(chunks, b"")  # an engine error here still becomes a JSON error
        metrics.ttfa.observe(time.perf_counter() - started)
        if not req.stream:
            pcm = first + b"".join([chunk async for chunk in chunks])
            sent = len(pcm)
            return web.Response(body=wav_bytes(pcm), content_type="audio/wav", headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_type = "audio/pcm"
        await response.prepare(request)
        await response.write(first)
        sent = len(first)
        async for chunk in chunks:
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        metrics.streams_cancelled.inc()
        raise
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
        metrics.active_streams.dec()
        metrics.audio_seconds.inc(sent / 2 / SAMPLE_RATE)


def _persona_for(store: PersonaStore, voice: str) -> StoredPersona | None:
    if voice == DEFAULT_VOICE:
        return store.find(voice)
    return store.get(voice)


def _require_ready(engine: Engine) -> None:
    status, detail = engine.health()
    if status != "ready":
        raise Unavailable(f"the engine is {status} ({detail}); retry shortly", f"engine_{status}")


# --- personas ------------------------------------------------------------------------------


async def list_voices(request: web.Request) -> web.Response:
    return _model_response(VoiceList(voices=request.app[STORE].list()))


async def get_voice(request: web.Request) -> web.Response:
    return _model_response(request.app[STORE].get(request.match_info["name"]).info)


async def delete_voice(request: web.Request) -> web.Response:
    request.app[STORE].delete(request.match_info["name"])
    return web.Response(status=204)


async def upload_voice(request: web.Request) -> web.Response:
    """Multipart fields: name, audio (file), transcript, style (optional), replace (optional)."""
    if request.content_type != "multipart/form-data":
        raise UnsupportedMedia(
            f"send personas as multipart/form-data, not {request.content_type!r}",
            "unsupported_media_type",
        )
    form = await request.post()
    audio = form.get("audio")
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
            _field(form, "transcript"),
            _field(form, "style") or None,
            replace=_field(form, "replace").lower() in ("1", "true", "yes"),
        )
    if changed:
        log.info("registered persona %s (%.1f s)", persona.name, persona.info.duration_s)
        for warning in persona.info.warnings:
            log.warning("persona %s: %s", persona.name, warning)
        _spawn(app, _warm(app, persona))
    return _model_response(persona.info, status=201 if changed else 200)


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


async def _json(request: web.Request) -> object:
    if request.content_type != "application/json":
        raise UnsupportedMedia(
            f"send the request as application/json, not {request.content_type!r}",
            "unsupported_media_type",
        )
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON ({e}); fix the JSON", "malformed_json") from e


def _model_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(),
        status=status,
        content_type="application/json",
    )


def _error_response(status: int, message: str, type_: str, code: str | None) -> web.Response:
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
        response = _error_response(e.status, e.message, e.type, code)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = "body_too_large" if e.status == 413 else f"http_{e.status}"
        message = e.text or e.reason
        if e.status == 413:
            message = f"{message}; keep uploads under {MAX_CLIP_BYTES} bytes"
        response = _error_response(e.status, message, "invalid_request_error", code)
    except (asyncio.CancelledError, ConnectionResetError):
        metrics.requests.labels(route, "499").inc()  # nginx's "client closed request"
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        code = "internal_error"
        response = _error_response(500, "internal error; see the sidecar log", "server_error", code)
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
