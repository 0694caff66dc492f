"""The sidecar's HTTP client: streaming PCM, personas, typed errors.

One pooled aiohttp session per client. `speech()` yields int16 PCM as it arrives; leaving the
loop early (or cancelling the task) closes the connection, which is how the sidecar, and
SGLang-Omni behind it, learn to stop generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from pydantic import ValidationError

from s2_plugin.audio import AudioError, SampleAligner, StreamResampler, check_rate
from s2_plugin.personas import Persona
from s2_plugin.protocol import (
    DEFAULT_URL,
    DEFAULT_VOICE,
    HEADER_DUE_IN,
    HEADER_REQUEST_ID,
    HEADER_SAMPLE_RATE,
    HEALTH_PATH,
    SAMPLE_RATE,
    SPEECH_PATH,
    VOICES_PATH,
    ErrorBody,
    Health,
    SpeechRequest,
    VoiceInfo,
    VoiceList,
    describe,
)

__all__ = [
    "ConnectionTiming",
    "S2Client",
    "S2ConnectionError",
    "S2Error",
    "S2StatusError",
    "S2TimeoutError",
    "S2UnreachableError",
]


class S2Error(Exception):
    """Anything that went wrong talking to the sidecar."""

    retryable = True


class S2ConnectionError(S2Error):
    """The sidecar could not be reached, or dropped the connection."""


class S2UnreachableError(S2ConnectionError):
    """Nothing accepts connections at the sidecar's address: it is not running, or the URL is
    wrong. Not worth an immediate retry; the frameworks fail over to another voice at once."""

    retryable = False


class S2TimeoutError(S2ConnectionError):
    """The sidecar accepted the request but sent nothing for too long."""


class S2StatusError(S2Error):
    """The sidecar answered with an error status; `message` says what to change (4xx)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "error",
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"sidecar returned {status}: {message}")
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.request_id = request_id

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        # Server errors are worth a retry, except when the sidecar says the engine failed on
        # this very request (`engine_error`): the same request would fail the same way.
        if self.status >= 500:
            return self.type != "engine_error"
        return self.status in (408, 429)


@dataclass
class ConnectionTiming:
    """How one speech request got its HTTP connection: what connection metrics report."""

    acquire_s: float = 0.0
    """From the request's start until aiohttp handed it a connection, pooled or new."""
    reused: bool = False
    """A pooled keep-alive connection rather than a new one."""


_Hook = Callable[[aiohttp.ClientSession, SimpleNamespace, Any], Coroutine[Any, Any, None]]


def _connection_tracing() -> aiohttp.TraceConfig:
    """aiohttp's tracing hooks, filling the `ConnectionTiming` a request passes as its context."""

    async def started(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: Any) -> None:
        ctx.started = time.perf_counter()

    def acquired(reused: bool) -> _Hook:
        async def hook(_: aiohttp.ClientSession, ctx: SimpleNamespace, __: Any) -> None:
            if isinstance(connection := ctx.trace_request_ctx, ConnectionTiming):
                connection.acquire_s = time.perf_counter() - ctx.started
                connection.reused = reused

        return hook

    config = aiohttp.TraceConfig()
    config.on_request_start.append(started)
    config.on_connection_create_end.append(acquired(False))
    config.on_connection_reuseconn.append(acquired(True))
    config.freeze()
    return config


_TRACING = _connection_tracing()


class S2Client:
    """Talks to an `s2-sidecar` (or a bare SGLang-Omni server) over HTTP.

    `read_timeout` bounds every read, so a stalled server raises `S2TimeoutError` instead of
    hanging a voice call; each call may pass its own `timeout` (connect and read) instead.
    Pass `session` to share an aiohttp session's connection pool; the session itself is
    neither changed nor closed here.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._shared = session
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._registered: dict[str, VoiceInfo] = {}
        self._register_lock = asyncio.Lock()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is not None and not self._session.closed:
            return self._session
        connector: aiohttp.BaseConnector | None
        if self._shared is None:
            # Keep-alive shorter than the sidecar's, so a pooled socket is never stale.
            connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=30)
        elif self._shared.closed:
            raise S2Error("the aiohttp session given to S2Client is closed")
        else:
            # The shared session's pool, through a session of our own that carries the tracing
            # hooks: the shared one (a LiveKit job's) is left as its owner made it. Ours
            # closes with that pool (aiohttp's `closed` reads the connector), so an owner that
            # closes its session leaves nothing of ours open.
            connector = self._shared.connector
        self._session = aiohttp.ClientSession(
            connector=connector,
            connector_owner=self._shared is None,
            timeout=self._timeout,
            trace_configs=[_TRACING],
        )
        return self._session

    def _timeouts(self, timeout: float | None) -> aiohttp.ClientTimeout:
        if timeout is None:
            return self._timeout
        return aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)

    async def aclose(self) -> None:
        """Close the pooled connections (a shared session's pool stays open)."""
        if self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> S2Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def speech(
        self,
        text: str,
        *,
        voice: str = DEFAULT_VOICE,
        connection: ConnectionTiming | None = None,
        timeout: float | None = None,
        due_in: float | None = None,
        **params: Any,
    ) -> AsyncIterator[bytes]:
        """Stream `text` spoken by persona `voice` as int16 mono PCM at 44.1 kHz.

        Extra keyword arguments are `SpeechRequest` fields (style, temperature, seed...).
        Every chunk holds whole samples. `connection`, if given, is filled in once the request
        has its connection. `timeout` bounds the connect and every read (the client's default
        if None). `due_in`: seconds until its audio must play (a look-ahead segment), so the
        sidecar can generate more urgent audio first; None is now.
        """
        try:
            request = SpeechRequest(
                input=text, voice=voice, stream=True, response_format="pcm", **params
            )
        except ValidationError as e:
            raise ValueError(describe(e)) from None
        body = request.model_dump(exclude_none=True)
        url = self.base_url + SPEECH_PATH
        headers = self._headers
        if due_in:
            headers = {**headers, HEADER_DUE_IN: f"{due_in:.3f}"}
        with self._errors(f"no audio from {url} for too long"):
            async with self._http().post(
                url,
                json=body,
                headers=headers,
                timeout=self._timeouts(timeout),
                trace_request_ctx=connection,
            ) as response:
                await _raise_for_status(response)
                # Honour the rate that arrives (S2 servers send 44.1 kHz), so callers get S2's.
                rate = _rate(response.headers.get(HEADER_SAMPLE_RATE))
                resampler = StreamResampler(rate, SAMPLE_RATE)
                async with contextlib.aclosing(read_pcm(response)) as chunks:
                    async for pcm in chunks:
                        yield resampler.process(pcm)
                if tail := resampler.flush():
                    yield tail

    async def synthesize(self, text: str, *, voice: str = DEFAULT_VOICE, **params: Any) -> bytes:
        """The whole of `text` as PCM, for callers that don't stream."""
        return b"".join([chunk async for chunk in self.speech(text, voice=voice, **params)])

    async def health(self, *, timeout: float | None = None) -> Health:
        """The sidecar's state; a 503 while it is starting still returns its body."""
        data = await self._json("GET", HEALTH_PATH, ok=(200, 503), timeout=timeout)
        return Health.model_validate(data)

    async def list_voices(self) -> list[VoiceInfo]:
        data = await self._json("GET", VOICES_PATH)
        return VoiceList.model_validate(data).uploaded_voices

    async def get_voice(self, name: str, *, timeout: float | None = None) -> VoiceInfo | None:
        """The persona called `name`, or None if the sidecar has none."""
        try:
            data = await self._json("GET", f"{VOICES_PATH}/{name}", timeout=timeout)
        except S2StatusError as e:
            if e.status == 404:
                return None
            raise
        return VoiceInfo.model_validate(data)

    async def delete_voice(self, name: str) -> None:
        await self._json("DELETE", f"{VOICES_PATH}/{name}")

    async def register(
        self, persona: Persona, *, replace: bool = False, timeout: float | None = None
    ) -> VoiceInfo:
        """Upload a persona; the sidecar validates and stores its clip and warms it up."""
        form = aiohttp.FormData()
        form.add_field("name", persona.name)
        form.add_field("transcript", persona.transcript)
        if persona.style:
            form.add_field("style", persona.style)
        if replace:
            form.add_field("replace", "true")
        form.add_field(
            "audio", persona.clip_bytes(), filename="clip", content_type="application/octet-stream"
        )
        data = await self._json("POST", VOICES_PATH, data=form, timeout=timeout)
        return VoiceInfo.model_validate(data)

    async def ensure_persona(
        self, persona: Persona, *, replace: bool = False, timeout: float | None = None
    ) -> VoiceInfo:
        """Register `persona` unless the sidecar already holds the same content.

        Uploads at most once per content hash and client, however many streams ask at once.
        A different persona under the same name is an error unless `replace` is set.
        """
        digest = persona.content_hash()
        async with self._register_lock:
            if digest in self._registered:
                return self._registered[digest]
            current = await self.get_voice(persona.name, timeout=timeout)
            if current is None or current.sha256 != digest:
                current = await self.register(persona, replace=replace, timeout=timeout)
            self._registered[digest] = current
            return current

    async def _json(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200, 201),
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        url = self.base_url + path
        with self._errors(f"{method} {url} timed out"):
            async with self._http().request(
                method, url, headers=self._headers, timeout=self._timeouts(timeout), **kwargs
            ) as response:
                if response.status not in ok:
                    await _raise_for_status(response)
                if response.status == 204:
                    return None
                return await response.json(content_type=None)

    @contextlib.contextmanager
    def _errors(self, timed_out: str) -> Iterator[None]:
        """aiohttp's exceptions as ours; `timed_out` says what took too long."""
        try:
            yield
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise S2TimeoutError(f"{timed_out}: {e}") from None
        except aiohttp.ClientConnectorError as e:
            raise S2UnreachableError(_connection_message(self.base_url, e)) from None
        except aiohttp.ClientError as e:
            raise S2ConnectionError(_connection_message(self.base_url, e)) from None


async def read_pcm(response: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
    """The PCM of a streaming response as it arrives, in chunks of whole samples.

    Leaving early (a cancel, a break, an error) closes the connection rather than returning it
    to the pool: that is how an S2 server learns to stop generating.
    """
    aligner = SampleAligner()
    try:
        async for data in response.content.iter_any():
            if pcm := aligner.push(data):
                yield pcm
    except BaseException:
        response.close()
        raise
    if aligner.pending:
        raise S2ConnectionError("the stream ended inside a sample; the server broke off")


def _rate(header: str | None) -> int:
    try:
        return check_rate(int(header)) if header is not None else SAMPLE_RATE
    except (ValueError, AudioError) as e:
        raise S2Error(f"the server sent unusable audio (X-Sample-Rate: {header}): {e}") from None


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    raw = await response.read()
    request_id = response.headers.get(HEADER_REQUEST_ID)
    try:
        detail = ErrorBody.model_validate(json.loads(raw)).error
    except (ValueError, ValidationError):
        message = raw.decode(errors="replace").strip()[:500] or response.reason or "no detail"
        raise S2StatusError(response.status, message, request_id=request_id) from None
    raise S2StatusError(
        response.status, detail.message, type=detail.type, code=detail.code, request_id=request_id
    )


def _connection_message(base_url: str, error: aiohttp.ClientError) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return (
            f"cannot reach the S2 sidecar at {base_url} ({error.os_error.strerror or error}); "
            "start it with `s2-sidecar serve` or pass the right base_url"
        )
    return f"connection to the S2 sidecar at {base_url} failed: {type(error).__name__}: {error}"
