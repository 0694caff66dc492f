"""`POST /v1/audio/speech`: text in, audio out in any format, streamed as it is generated.

The app runs with `handler_cancellation=True` (as `httpserver.serve` does): a client that
disconnects cancels its handler at once, and the cancellation reaches the engine.

Once a stream's headers are out, a failure can no longer become a JSON error: the connection
is cut without the final chunk, so the client sees a broken stream (and raises) instead of
audio that just ends, or an error document inside the audio.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator

from aiohttp import web
from pydantic import ValidationError

from s2_plugin import phonemes, script, segment, tags
from s2_plugin.audio import duration_s
from s2_plugin.protocol import (
    DEFAULT_VOICE,
    HEADER_DUE_IN,
    HEADER_ENGINE,
    HEADER_REQUEST_ID,
    HEADER_SAMPLE_RATE,
    OPENAI_PCM_RATE,
    OPENAI_VOICES,
    SAMPLE_RATE,
    SpeechRequest,
    describe,
    parse_due_in,
)
from s2_sidecar import bodies, cast, encoders
from s2_sidecar.budget import Hold
from s2_sidecar.encoders import Encoder
from s2_sidecar.engines.base import Engine
from s2_sidecar.errors import BadRequest, NotFound, TooLarge, Unavailable
from s2_sidecar.references import carries_reference, inline_reference
from s2_sidecar.state import (
    ADMISSION,
    ALIASES,
    BUDGET,
    ENGINE,
    METRICS,
    PRONUNCIATIONS,
    REGISTER_LOCK,
    SETTINGS,
    STORE,
    STREAMS,
)
from s2_sidecar.store import StoredPersona

log = logging.getLogger(__name__)

_ENCODE_SLICE = 4096 * 2
"""Bytes of PCM (4096 samples, 93 ms) a compressing encoder gets at a time."""


async def speech(request: web.Request) -> web.StreamResponse:
    """Speech in any format, streamed as it is generated; headers go out with the first audio."""
    app = request.app
    if app[STREAMS].draining:
        app[METRICS].rejected.labels("draining").inc()
        raise Unavailable("the sidecar is shutting down; retry on another one", "draining")
    try:
        due_in = parse_due_in(request.headers.get(HEADER_DUE_IN))
    except ValueError as e:
        raise BadRequest(str(e), "invalid_due_in") from e
    engine = app[ENGINE]
    with app[BUDGET].hold() as hold:  # the body and its clip, until the clip is decoded
        req = await _speech_request(request, hold)
        persona: StoredPersona | None
        if req.cast:
            members = cast.members(app[STORE], req.cast)
            # A `NAME: line` script as S2's own form; each turn with its speaker's lexicon.
            text = app[PRONUNCIATIONS].apply(script.tagged(req.input, req.cast), req.cast)
            # Checked against S2's context before the members' clips are joined.
            parts = [cast.speaker_text(t, members, req) for t in _texts(text, engine)]
            directory = app[STORE].root / cast.CASTS_DIR
            persona = await asyncio.to_thread(cast.reference, members, directory)
        else:
            persona = await _persona(app, req)
            voice = persona.name if persona is not None else app[ALIASES].get(req.voice, req.voice)
            texts = _texts(app[PRONUNCIATIONS].apply(req.input, [voice]), engine)
            style = req.style_tag
            if style is None and persona is not None:
                style = persona.info.style
            parts = [tags.apply_style(t, style) for t in texts]
        req = req.model_copy(update={"references": None, "ref_audio": None})  # decoded: let go
    _require_ready(engine)
    try:
        encoder = Encoder(req.response_format, _rate(req))
    except ValueError as e:
        raise BadRequest(str(e), "invalid_sample_rate") from e
    async with app[ADMISSION].slot(due_in):
        return await _respond(request, parts, persona, req, encoder)


def _texts(text: str, engine: Engine) -> list[str]:
    """`text` cut into the engine's generations, its phoneme markup as S2 reads it (the words
    it keeps, for transcripts, dropped)."""
    return [phonemes.to_s2(t) for t in segment.split(text, engine.max_text_chars)]


async def _speech_request(request: web.Request, hold: Hold) -> SpeechRequest:
    settings = request.app[SETTINGS]
    raw = await bodies.read_json(
        request, settings.max_reference_body, hold, free=settings.max_speech_body
    )
    # Only a request that carries a clip may pass the small limit: one that cannot (no key
    # for one) is refused unparsed, one that names the key but sends no clip once parsed.
    over = len(raw) > settings.max_speech_body
    if over and not any(key in raw for key in _REFERENCE_KEYS):
        raise TooLarge(bodies.too_large(len(raw), settings.max_speech_body), "body_too_large")
    try:
        req = SpeechRequest.model_validate_json(raw)
    except ValidationError as e:
        if any(err["type"] == "json_invalid" for err in e.errors()):
            raise BadRequest(f"the body is not valid JSON: {describe(e)}", "malformed_json") from e
        raise BadRequest(describe(e), "invalid_request") from e
    if over and not carries_reference(req):
        raise TooLarge(bodies.too_large(len(raw), settings.max_speech_body), "body_too_large")
    return req


_REFERENCE_KEYS = (b'"references"', b'"ref_audio"')


async def _persona(app: web.Application, req: SpeechRequest) -> StoredPersona | None:
    """The persona to speak with: a clip sent inline, else the named (or aliased) persona."""
    reference = inline_reference(req)
    if reference is not None:
        audio, text = reference
        # One decode at a time, uploads' and these: each may hold up to 120 s of float32 audio.
        async with app[REGISTER_LOCK]:
            return await asyncio.to_thread(app[STORE].inline, audio, text)
    name = app[ALIASES].get(req.voice, req.voice)
    persona = app[STORE].find(name)
    if persona is not None or name == DEFAULT_VOICE:
        return persona
    if name in OPENAI_VOICES:
        raise NotFound(
            f"{name!r} is an OpenAI voice name with no persona behind it on this sidecar; "
            f"start it with --voice-alias {name}=PERSONA, or name a persona as the voice",
            "unknown_voice",
        )
    return app[STORE].get(name)


def _rate(req: SpeechRequest) -> int:
    """The output rate. `pcm` has no header, so each kind of client gets the rate it assumes:
    SGLang-Omni's streaming clients (`stream: true`) 44.1 kHz, as SGLang-Omni sends; OpenAI's
    (which never send `stream`) 24 kHz, as OpenAI defines `pcm`. `sample_rate` overrides both,
    and `X-Sample-Rate` always tells the truth."""
    if req.response_format == "pcm" and req.sample_rate is None:
        return SAMPLE_RATE if req.stream else OPENAI_PCM_RATE
    return encoders.rate_for(req.response_format, req.sample_rate)


def _require_ready(engine: Engine) -> None:
    status, detail = engine.health()
    if status != "ready":
        raise Unavailable(f"the engine is {status} ({detail}); retry shortly", f"engine_{status}")


def _headers(
    req: SpeechRequest, encoder: Encoder, request_id: str, engine: Engine
) -> dict[str, str]:
    headers = {
        HEADER_SAMPLE_RATE: str(encoder.rate),
        HEADER_REQUEST_ID: request_id,
        HEADER_ENGINE: engine.name,
        "X-Channels": "1",
        "Content-Type": "text/event-stream" if req.stream_format == "sse" else encoder.content_type,
    }
    if req.response_format in ("pcm", "wav"):
        headers["X-Bit-Depth"] = "16"
    return headers


async def _respond(
    request: web.Request,
    parts: list[str],
    persona: StoredPersona | None,
    req: SpeechRequest,
    encoder: Encoder,
) -> web.StreamResponse:
    app = request.app
    engine, metrics, streams = app[ENGINE], app[METRICS], app[STREAMS]
    request_id = request.headers.get(HEADER_REQUEST_ID) or uuid.uuid4().hex
    started = time.perf_counter()
    metrics.active_streams.inc()
    streams.started[request_id] = started
    sent = 0
    try:
        async with contextlib.aclosing(_generate(engine, parts, persona, req)) as chunks:
            first = await anext(chunks, b"")  # an engine error here still becomes a JSON error
            metrics.ttfa.observe(time.perf_counter() - started)
            response = web.StreamResponse(headers=_headers(req, encoder, request_id, engine))
            await response.prepare(request)
            out = _Output(
                response, encoder, req.stream_format == "sse", app[SETTINGS].write_timeout
            )
            try:
                await out.audio(first)
                sent = len(first)
                async for pcm in chunks:
                    await out.audio(pcm)
                    sent += len(pcm)
                await out.finish()
            except _Stalled:
                log.warning(
                    "request %s: the client read nothing for %g s; cut its stream",
                    request_id,
                    out.timeout,
                )
                return _cut(request, response, "write_timeout")
            except (asyncio.CancelledError, ConnectionResetError):
                raise
            except Exception as e:
                log.warning(
                    "request %s: the engine failed mid-stream, cutting it: %s", request_id, e
                )
                return _cut(request, response, "engine_error")
            return response
    except (asyncio.CancelledError, ConnectionResetError):
        metrics.streams_cancelled.inc()
        raise
    finally:
        encoder.close()
        streams.started.pop(request_id, None)
        metrics.active_streams.dec()
        metrics.audio_seconds.inc(duration_s(sent))


class _Output:
    """The response body: encoded audio, as raw bytes or as SSE events, each write bounded."""

    def __init__(
        self, response: web.StreamResponse, encoder: Encoder, sse: bool, timeout: float
    ) -> None:
        self.response = response
        self.encoder = encoder
        self.sse = sse
        self.timeout = timeout

    async def audio(self, pcm: bytes) -> None:
        # A compressing encoder takes 10-30 ms per second of audio: fed a whole sentence at once
        # it would hold the first bytes back for that long, so it is fed in slices.
        step = len(pcm) if self.encoder.format in ("pcm", "wav") else _ENCODE_SLICE
        for i in range(0, len(pcm), step or 1):
            await self._send(self.encoder.encode(pcm[i : i + step]))

    async def finish(self) -> None:
        await self._send(self.encoder.finish())
        if self.sse:
            # No usage: the engines report no token counts (and LiveKit's client fails on a null).
            await self._write(_sse({"type": "speech.audio.done", "finish_reason": "stop"}))
        await self.response.write_eof()

    async def _send(self, data: bytes) -> None:
        if data:
            audio = base64.b64encode(data).decode()
            await self._write(
                _sse({"type": "speech.audio.delta", "audio": audio}) if self.sse else data
            )

    async def _write(self, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.response.write(data)
        except TimeoutError as e:
            raise _Stalled from e


def _sse(event: dict[str, str]) -> bytes:
    """One event of OpenAI's and SGLang-Omni's SSE speech stream."""
    return b"data: " + json.dumps(event).encode() + b"\n\n"


class _Stalled(Exception):
    """The client left the audio unread for longer than `write_timeout`."""


async def _generate(
    engine: Engine, parts: list[str], persona: StoredPersona | None, req: SpeechRequest
) -> AsyncGenerator[bytes, None]:
    """The parts' audio, one generation after the other, as one stream."""
    for part in parts:
        async with contextlib.aclosing(engine.generate(part, persona, req)) as chunks:
            async for chunk in chunks:
                yield chunk


def _cut(request: web.Request, response: web.StreamResponse, reason: str) -> web.StreamResponse:
    """Drop the connection without the final chunk: the client sees the stream break."""
    request.app[METRICS].streams_aborted.labels(reason).inc()
    if request.transport is not None:
        request.transport.abort()
    return response
