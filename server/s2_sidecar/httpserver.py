"""The sidecar's HTTP server: aiohttp's, with every connection bounded and a drained shutdown.

aiohttp alone has no header timeout, no connection cap, a keep-alive of an hour, and answers
what its parser rejects in plain text. Each connection here is a `RequestHandler` that also
- closes a connection whose request headers take longer than `header_timeout` (a 408),
- answers a connection over `max_connections` with a 503 at once,
- answers parser errors (bad request line, oversized header, bad Content-Length) in the
  API's JSON error shape.
`serve()` runs the app until SIGTERM/SIGINT, then drains: no new connections, idle ones
closed, streams in flight get `drain_timeout` to finish, then whatever is left is cut and logged.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from s2_sidecar import app as sidecar_app
from s2_sidecar.bodies import error_response
from s2_sidecar.errors import error_json
from s2_sidecar.settings import Settings
from s2_sidecar.state import METRICS

log = logging.getLogger(__name__)

_LINGER_S = 1.0
"""How long a refused connection is read (and discarded) before it is closed."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _canned(status: int, message: str, code: str, extra: str = "") -> bytes:
    """A whole HTTP response for a connection that never reaches the app."""
    body = error_json(status, message, code)
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n{body}"
    ).encode()


class _Connection(RequestHandler):
    """One client connection, with the bounds aiohttp lacks (see the module docstring)."""

    def __init__(self, manager: web.Server, settings: Settings, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._settings = settings
        self._manager_ref = manager
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if len(self._manager_ref.connections) > self._settings.max_connections:
            self._refuse(transport)
            return
        self._arm()

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        """Answer 503 without parsing; close once the request is in (closing on unread bytes
        would send a reset, which can destroy the answer before the client reads it)."""
        assert isinstance(transport, asyncio.Transport)
        self._refused = True
        transport.write(
            _canned(
                503,
                f"the sidecar has {self._settings.max_connections} connections open; "
                "retry shortly, or reuse connections (keep-alive)",
                "too_many_connections",
                "Retry-After: 1\r\n",
            )
        )
        asyncio.get_running_loop().call_later(_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            if b"\r\n\r\n" in data and self.transport is not None:
                self.transport.close()
            return
        if not self.busy and self._header_timer is None:
            self._arm()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def request_started(self) -> None:
        self._disarm()
        self.busy = True

    def request_finished(self) -> None:
        self.busy = False

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._settings.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        transport = self.transport
        if self.busy or not isinstance(transport, asyncio.Transport):
            return
        transport.write(
            _canned(
                408,
                f"the request headers took longer than {self._settings.header_timeout:g} s",
                "header_timeout",
            )
        )
        transport.close()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """What aiohttp's parser rejects, as the API's JSON error (no traceback in the log)."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response is partly sent; the connection is broken")
        text = message or (str(exc) if exc else "") or HTTPStatus(status).phrase
        log.info("rejected a malformed request from %s: %s %s", request.remote, status, text)
        response = error_response(status, f"malformed HTTP request: {text}", f"http_{status}")
        response.force_close()
        return response


@web.middleware
async def _track(request: web.Request, handler: _Handler) -> web.StreamResponse:
    connection = request.protocol
    if isinstance(connection, _Connection):
        connection.request_started()
    try:
        return await handler(request)
    finally:
        if isinstance(connection, _Connection):
            connection.request_finished()


async def serve(app: web.Application, host: str, port: int, settings: Settings) -> None:
    """Serve `app` until SIGTERM or SIGINT, then drain within `settings.drain_timeout`."""
    app.middlewares.insert(0, _track)
    # handler_cancellation: a client that hangs up cancels its handler, which stops the engine.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    loop = asyncio.get_running_loop()
    server = runner.server
    assert server is not None

    def connection() -> _Connection:
        return _Connection(
            server,
            settings,
            loop=loop,
            keepalive_timeout=settings.keepalive_timeout,
            access_log=None,
        )

    try:
        listener = await loop.create_server(connection, host, port, backlog=128)
    except OSError:  # a busy port: the engine the app started must not outlive the refusal
        await runner.cleanup()
        raise
    port = listener.sockets[0].getsockname()[1]  # the one bound, for `--port 0` too
    try:
        log.info("s2-sidecar listening on http://%s:%d", _url_host(host), port)
        log.info("persona studio: open http://%s:%d/ in a browser", _local_host(host), port)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        listener.close()
        await _drain(app, server, settings.drain_timeout)
    finally:
        listener.close()
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _local_host(host: str) -> str:
    """How a browser on this machine reaches a sidecar listening on `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else _url_host(host)


async def _drain(app: web.Application, server: web.Server, limit: float) -> None:
    sidecar_app.start_draining(app)
    started = time.monotonic()
    log.info("shutting down: draining streams for up to %g s", limit)
    while True:
        for conn in server.connections:
            if not (isinstance(conn, _Connection) and conn.busy):
                conn.close()  # idle keep-alive: closes now; busy ones after their response
        busy = [c for c in server.connections if isinstance(c, _Connection) and c.busy]
        if not busy or time.monotonic() - started >= limit:
            break
        await asyncio.sleep(0.05)
    cut = sidecar_app.in_flight(app)
    app[METRICS].streams_aborted.labels("shutdown").inc(len(cut))
    if cut:
        log.warning(
            "drain limit of %g s reached: cutting %d streams (request ids %s)",
            limit,
            len(cut),
            ", ".join(cut),
        )
    for conn in server.connections:
        if conn.transport is not None:
            conn.transport.abort()
    # Let the aborts land: each cancels its handler, which stops its generation.
    while server.connections and time.monotonic() - started < limit + 0.5:
        await asyncio.sleep(0.01)
    log.info("drained in %.1f s", time.monotonic() - started)
