"""The S2-Pro engine: SGLang-Omni's `sgl-omni serve` as a supervised subprocess on loopback.

Requests are translated into SGLang-Omni 0.1.9's `CreateSpeechRequest` with the persona's
canonical clip inline (`references=[{data, media_type, text}]`). That reference is serialised
once per persona and reused byte for byte, because SGLang's radix cache reuses a persona's
prefix only when the reference codes and the prompt text are identical.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp

from s2_plugin.client import S2ConnectionError, read_pcm
from s2_plugin.protocol import HEALTH_PATH, SPEECH_PATH, SpeechRequest
from s2_sidecar.engines.base import Status
from s2_sidecar.errors import BadRequest, Unavailable
from s2_sidecar.metrics import Metrics
from s2_sidecar.store import StoredPersona

log = logging.getLogger(__name__)

_SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "seed", "max_new_tokens")


@dataclass
class Launch:
    """How to run SGLang-Omni.

    Streaming strides are in codec frames (2048 samples, ~46 ms of audio each). SGLang-Omni
    decodes the first chunk after `stream_stride` frames (default 40: ~1.9 s of audio before
    anything plays) and then every `stream_followup_stride` (45). A small first stride cuts
    time to first audio by ~1.5 s; small follow-ups keep the buffer fed but cost more vocoder
    passes, since each pass re-decodes 20 frames of overlap. The first chunk must last as long
    as it takes to generate the next: at S2's RTF of ~0.35 (H200, batch 1) 8 frames (370 ms)
    cover 16 more (740 ms of audio in ~260 ms), with slack for RTF up to 0.5 under load.
    """

    command: list[str] = field(default_factory=lambda: ["sgl-omni"])
    model_path: str = "fishaudio/s2-pro"
    port: int = 0
    """Loopback port for SGLang-Omni; 0 picks a free one at each launch."""
    stream_stride: int = 8
    stream_followup_stride: int = 16
    extra_args: list[str] = field(default_factory=list)
    startup_timeout: float = 900.0
    """Loading weights, capturing CUDA graphs and compiling take minutes on a cold GPU."""
    read_timeout: float = 30.0
    """Longest silence tolerated from SGLang-Omni inside a request before it is called stalled."""
    backoff: tuple[float, float] = (1.0, 60.0)
    """First and longest wait before relaunching a process that died."""
    health_interval: float = 10.0
    """How often a ready SGLang-Omni's /health is checked; a check slower than this fails."""
    health_failures: int = 3
    """Failed checks in a row after which a wedged process (alive, not answering) is relaunched."""

    def argv(self, port: int) -> list[str]:
        return [
            *self.command,
            "serve",
            "--model-path",
            self.model_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--vocoder.factory.stream_stride",
            str(self.stream_stride),
            "--vocoder.factory.stream_followup_stride",
            str(self.stream_followup_stride),
            *self.extra_args,
        ]


class SGLangOmniEngine:
    name = "sglang_omni"
    preview = False

    def __init__(self, metrics: Metrics, launch: Launch | None = None) -> None:
        self.metrics = metrics
        self.launch = launch or Launch()
        self.model = self.launch.model_path
        self.on_ready: Callable[[], None] | None = None
        self._status: Status = "starting"
        self._detail: str | None = "launching SGLang-Omni"
        self._base_url = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._references: dict[str, tuple[str, bytes]] = {}

    def health(self) -> tuple[Status, str | None]:
        return self._status, self._detail

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=5, sock_read=self.launch.read_timeout
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        )
        self._supervisor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        if self._supervisor:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await self._terminate()
        if self._session:
            await self._session.close()

    # --- requests ------------------------------------------------------------------------

    def payload(self, text: str, persona: StoredPersona | None, request: SpeechRequest) -> bytes:
        """The JSON body for SGLang-Omni; the persona's reference is the cached, same bytes."""
        fields: dict[str, object] = {"input": text, "response_format": "pcm", "stream": True}
        for name in _SAMPLING_FIELDS:
            value = getattr(request, name)
            if value is not None:
                fields[name] = value
        body = json.dumps(fields).encode()
        if persona is None:
            return body
        return body[:-1] + b', "references": [' + self._reference(persona) + b"]}"

    def _reference(self, persona: StoredPersona) -> bytes:
        cached = self._references.get(persona.name)
        if cached is None or cached[0] != persona.info.sha256:
            reference = {
                "data": base64.b64encode(persona.wav).decode(),
                "media_type": "audio/wav",
                "text": persona.info.transcript,
            }
            cached = (persona.info.sha256, json.dumps(reference).encode())
            self._references[persona.name] = cached
        return cached[1]

    async def generate(
        self, text: str, persona: StoredPersona | None, request: SpeechRequest
    ) -> AsyncIterator[bytes]:
        if self._status != "ready" or self._session is None:
            raise Unavailable(f"SGLang-Omni is {self._status} ({self._detail}); retry shortly")
        body = self.payload(text, persona, request)
        self.metrics.engine_busy.inc()
        try:
            async with self._session.post(
                self._base_url + SPEECH_PATH,
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status >= 400:
                    raise await _upstream_error(response)
                # Leaving early drops the connection: SGLang-Omni's cancel, it aborts the request.
                async with contextlib.aclosing(read_pcm(response)) as chunks:
                    async for pcm in chunks:
                        yield pcm
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise Unavailable(
                f"SGLang-Omni sent nothing for {self.launch.read_timeout} s; retry shortly",
                "engine_stalled",
            ) from e
        except (aiohttp.ClientError, S2ConnectionError) as e:
            raise Unavailable(f"SGLang-Omni is unreachable ({e}); retry shortly") from e
        finally:
            self.metrics.engine_busy.dec()

    # --- supervision ---------------------------------------------------------------------

    async def _supervise(self) -> None:
        first, longest = self.launch.backoff
        delay = first
        while True:
            port = self.launch.port or _free_port()
            self._base_url = f"http://127.0.0.1:{port}"
            self._status, self._detail = "starting", f"launching SGLang-Omni on port {port}"
            argv = self.launch.argv(port)
            log.info("launching %s", " ".join(argv))
            # Strict port: SGLang-Omni would otherwise move to a random port on a clash.
            env = {**os.environ, "SGLANG_OMNI_STRICT_PORT": "1"}
            # Its own session, so that stopping it also stops the stage processes it spawns.
            self._proc = await asyncio.create_subprocess_exec(
                *argv, env=env, start_new_session=True
            )
            ready_at = await self._wait_healthy(self._proc)
            if ready_at is not None:
                self._status, self._detail = "ready", None
                log.info("SGLang-Omni ready at %s", self._base_url)
                if self.on_ready:
                    self.on_ready()
                why = await self._watch(self._proc)
            else:
                why = f"exited with code {await self._proc.wait()}"
            if ready_at is not None and time.monotonic() - ready_at > longest:
                delay = first  # it ran well for a while: this is a fresh failure
            self._status = "unhealthy"
            self._detail = f"SGLang-Omni {why}; restarting in {delay:.1f} s"
            log.error(self._detail)
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)
            self.metrics.engine_restarts.inc()

    async def _watch(self, proc: asyncio.subprocess.Process) -> str:
        """Wait for a ready process to end; kill it if it stops answering /health.

        A wedged SGLang-Omni (a stuck scheduler, a hung GPU) never exits by itself, and every
        request to it would stall until its read timeout: killing it lets the supervisor relaunch.
        """
        interval, limit = self.launch.health_interval, self.launch.health_failures
        loop = asyncio.get_running_loop()
        failures, next_check = 0, loop.time() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                code = await asyncio.wait_for(proc.wait(), max(0.0, next_check - loop.time()))
                return f"exited with code {code}"
            # A slow check eats into the next period, so a wedge is found within limit + 1 periods.
            next_check += interval
            failures = 0 if await self._healthy(timeout=interval) else failures + 1
            if failures >= limit:
                log.error("SGLang-Omni failed %d health checks in a row; killing it", failures)
                await self._terminate()
                return f"stopped answering /health ({failures} checks in a row)"

    async def _healthy(self, timeout: float) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(
                self._base_url + HEALTH_PATH, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> float | None:
        """Poll /health until 200; None if the process died or never became healthy."""
        deadline = time.monotonic() + self.launch.startup_timeout
        while proc.returncode is None:
            if await self._healthy(timeout=5):
                return time.monotonic()
            if time.monotonic() > deadline:
                log.error("SGLang-Omni not healthy after %.0f s", self.launch.startup_timeout)
                await self._terminate()
                return None
            await asyncio.sleep(0.2)
        return None

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def _upstream_error(response: aiohttp.ClientResponse) -> Exception:
    raw = await response.read()
    try:
        data = json.loads(raw)
        message = data.get("error", {}).get("message") or data.get("detail") or raw.decode()
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")[:500]
    if 400 <= response.status < 500:
        return BadRequest(f"SGLang-Omni refused the request: {message}", "engine_rejected")
    return Unavailable(f"SGLang-Omni failed ({response.status}: {message}); retry shortly")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
