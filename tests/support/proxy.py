"""A recording proxy in front of a sidecar: exactly what one test's requests sent and got.

The session's sidecar is shared by every test, so its counters also hold other tests' requests
(and any still finishing). A test that counts requests, uploads, samples or cancellations puts
its own proxy in front and counts there.

    async with RecordingProxy(sidecar.url).running() as proxy:
        S2TTSService(base_url=proxy.url, ...)
        await proxy.wait_until(lambda: len(proxy.speech()) == 2)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from s2_plugin.protocol import SPEECH_PATH, VOICES_PATH
from s2_plugin.tags import strip_tags
from support.changes import Changes

_HOP_BY_HOP = {"content-length", "transfer-encoding", "content-encoding", "connection"}


@dataclass
class Exchange:
    """One request through the proxy and what came back."""

    method: str
    path: str
    body: dict[str, Any] | None
    """The JSON body, for JSON requests."""
    status: int | None = None
    pcm_bytes: int = 0
    """Response bytes passed back, for speech requests."""
    complete: bool = False
    """The whole response reached the client (False: it hung up first, or it is running)."""
    done: bool = False
    """The proxy has finished with it, either way."""

    @property
    def samples(self) -> int:
        return self.pcm_bytes // 2

    @property
    def transcript(self) -> str:
        return strip_tags(str((self.body or {}).get("input", "")))


@dataclass
class RecordingProxy:
    target: str
    exchanges: list[Exchange] = field(default_factory=list)
    url: str = ""
    _changes: Changes = field(default_factory=Changes)

    def speech(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "POST" and e.path == SPEECH_PATH]

    def uploads(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "POST" and e.path == VOICES_PATH]

    def finished(self) -> bool:
        """Every request has been answered, or given up by its client."""
        return all(e.done for e in self.exchanges)

    async def wait_until(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until `ready()` holds; it is checked whenever a request starts or ends."""
        await self._changes.until(ready, timeout)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RecordingProxy]:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        # Cancel a handler when its client goes away, so the hang-up reaches the sidecar.
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        async with aiohttp.ClientSession(auto_decompress=False) as self._session:
            try:
                yield self
            finally:
                await runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = None
        if request.content_type == "application/json" and raw:
            body = json.loads(raw)
        exchange = Exchange(request.method, request.path, body)
        self.exchanges.append(exchange)
        self._changes.changed()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        try:
            async with self._session.request(
                request.method, self.target + request.path_qs, data=raw, headers=headers
            ) as upstream:
                exchange.status = upstream.status
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
                response = web.StreamResponse(status=upstream.status, headers=out)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    exchange.pcm_bytes += len(chunk)
                    await response.write(chunk)
                await response.write_eof()
                exchange.complete = True
                return response
        finally:
            exchange.done = True
            self._changes.changed()
