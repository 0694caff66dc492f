"""An in-process HTTP server speaking the sidecar's wire protocol, with faults on demand.

It answers `POST /v1/audio/speech` with deterministic PCM: `SAMPLES_PER_CHAR` samples per
character of input, every sample of a request set to `level(text)`, so a test can tell which
request a chunk came from. The `voice` field picks a behaviour: "ok", "error400", "error503",
"garbage500", "stall" (one chunk, then silence), "drop" (one chunk, then the socket is cut),
"odd" (chunks of odd byte counts), "slow" (first chunk after `first_delay_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from dataclasses import dataclass, field

from aiohttp import web

SAMPLES_PER_CHAR = 441
CHUNK_SAMPLES = 2048


def level(text: str) -> int:
    """The sample value every sample of `text`'s audio carries (never 0)."""
    return zlib.crc32(text.encode()) % 20000 + 100


def expected_samples(text: str) -> int:
    return len(text) * SAMPLES_PER_CHAR


@dataclass
class PcmServer:
    first_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    requests: list[dict[str, object]] = field(default_factory=list)
    due: list[str | None] = field(default_factory=list)
    """Each request's `X-Audio-Due-In` header."""
    disconnects: int = 0
    open_streams: int = 0
    max_open_streams: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> PcmServer:
        app = web.Application()
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_get("/health", self._health)
        # Cancel handlers when the client goes away, as the real sidecar does.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ready", "engine": "fake", "model": "fake", "preview": True, "personas": 0}
        )

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.due.append(request.headers.get("X-Audio-Due-In"))
        voice = body.get("voice", "ok")
        if voice == "error400":
            return web.json_response(
                {
                    "error": {
                        "message": "unknown persona 'x'",
                        "type": "invalid_request",
                        "code": "unknown_persona",
                    }
                },
                status=400,
            )
        if voice == "error503":
            return web.json_response(
                {"error": {"message": "engine starting", "type": "unavailable", "code": None}},
                status=503,
            )
        if voice == "garbage500":
            return web.Response(status=500, text="<html>oops</html>")
        text = body["input"]
        pcm = level(text).to_bytes(2, "little", signed=True) * expected_samples(text)
        response = web.StreamResponse(
            headers={"Content-Type": "audio/pcm", "X-Sample-Rate": "44100", "X-Request-Id": "r1"}
        )
        self.open_streams += 1
        self.max_open_streams = max(self.max_open_streams, self.open_streams)
        try:
            delay = self.first_delay_s if voice == "slow" or self.first_delay_s else 0.0
            await asyncio.sleep(delay)
            await response.prepare(request)
            step = CHUNK_SAMPLES * 2 + (1 if voice == "odd" else 0)
            for i in range(0, len(pcm), step):
                await response.write(pcm[i : i + step])
                if voice == "stall":
                    await asyncio.sleep(3600)
                if voice == "drop":
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await asyncio.sleep(self.chunk_delay_s)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        finally:
            self.open_streams -= 1
        return response


@contextlib.asynccontextmanager
async def pcm_server(**kwargs: float):  # type: ignore[no-untyped-def]
    server = await PcmServer(**kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        await server.stop()
