"""Proxies in front of a sidecar: one that records, one that breaks the network on demand.

`RecordingProxy` (HTTP): exactly what one test's requests sent and got. The session's sidecar
is shared by every test, so its counters also hold other tests' requests (and any still
finishing). A test that counts requests, uploads, samples or cancellations puts its own proxy
in front and counts there.

    async with RecordingProxy(sidecar.url).running() as proxy:
        S2TTSService(base_url=proxy.url, ...)
        await proxy.wait_until(lambda: len(proxy.speech()) == 2)

`FaultProxy` (TCP): passes bytes through, or fails the way a network or a dead server does,
switched at any time and applied to open connections too (as LiveKit's own TTS tests do with
toxiproxy):

    async with FaultProxy(sidecar.url).running() as proxy:
        await proxy.set(Fault.BLACKHOLE)  # connections are accepted, nothing ever comes back
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from s2_plugin.protocol import SPEECH_PATH, VOICES_PATH
from s2_plugin.tags import strip_tags
from support.changes import Changes
from support.sidecar import free_port
from support.waiting import LIMIT_S

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
    """The whole response reached the client (False: it hung up first, or it is running).
    Set just after the last byte is written, so the client may see the end first: read it
    once `done` (`await proxy.wait_until(proxy.finished)`)."""
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

    async def wait_until(self, ready: Callable[[], bool], timeout: float = LIMIT_S) -> None:
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


PROXY_TASK = "fault-proxy"
"""The name of each connection's task (for tests that count what is left running)."""


class Fault(enum.Enum):
    PASS = "pass"
    """Bytes go through both ways."""
    REFUSE = "refuse"
    """Nothing listens: a connect is refused, open connections are reset."""
    BLACKHOLE = "blackhole"
    """Connections are accepted and bytes are swallowed: nothing ever comes back."""
    RESET = "reset"
    """A connection is reset (TCP RST) as soon as it is made or next carries a byte."""


class FaultProxy:
    """A TCP proxy on a fixed loopback port in front of `target`, failing as `fault` says.

    `connections` counts the client connections open now; `accepted` all made so far.
    `bytes_per_s`, if set, paces what comes back (an engine generating at that speed).
    """

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.fault = Fault.PASS
        self.bytes_per_s: float | None = None
        self.connections = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changes = Changes()

    async def set(self, fault: Fault) -> None:
        """Fail from now on as `fault` says; open connections follow at their next byte."""
        self.fault = fault
        if fault is Fault.REFUSE:
            await self._stop_listening()
            for writer in list(self._open):
                _reset(writer)
        elif self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def wait_until(self, ready: Callable[[], bool], timeout: float = LIMIT_S) -> None:
        """Wait until `ready()` holds; checked whenever a connection opens or closes."""
        await self._changes.until(ready, timeout)

    @contextlib.asynccontextmanager
    async def running(self, fault: Fault = Fault.PASS) -> AsyncIterator[FaultProxy]:
        await self.set(fault)
        try:
            yield self
        finally:
            await self._stop_listening()
            for writer in list(self._open):
                _reset(writer)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.set_name(PROXY_TASK)
        self._tasks.add(task)
        self.accepted += 1
        self.connections += 1
        self._open.add(writer)
        self._changes.changed()
        try:
            if self.fault is Fault.RESET:
                _reset(writer)
                return
            if self.fault is Fault.BLACKHOLE:
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            try:
                await asyncio.gather(
                    self._pipe(reader, up_writer, writer),
                    self._pipe(up_reader, writer, writer, paced=True),
                )
            finally:
                up_writer.close()
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is stopping; asyncio's server would log a cancelled handler
        finally:
            self._open.discard(writer)
            writer.close()
            self.connections -= 1
            self._tasks.discard(task)
            self._changes.changed()

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        *,
        paced: bool = False,
    ) -> None:
        size = 4096 if paced else 65536
        while data := await src.read(size):
            if self.fault is Fault.RESET:
                _reset(client)
                return
            if self.fault is Fault.PASS:
                if paced and self.bytes_per_s:
                    await asyncio.sleep(len(data) / self.bytes_per_s)
                dst.write(data)
                await dst.drain()
        if self.fault is Fault.BLACKHOLE:
            return  # nothing comes back, not even the other side's hang-up
        # One side hung up: so does the other (a half-close would keep a pooled socket alive).
        dst.close()
        client.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer gets a TCP reset rather than an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
