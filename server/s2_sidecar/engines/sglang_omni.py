"""The S2-Pro engine: SGLang-Omni 0.1.9, launched and supervised here or reached at a URL.

Local (default): `sgl-omni serve` runs as a supervised subprocess on loopback. Remote
(`url=`, `--sglang-url`): a bare SGLang-Omni or `sgl-omni-router-py` in front of many, which
nothing here launches; health comes from its `/health`.

Requests become 0.1.9's `CreateSpeechRequest` (`sglang_omni/serve/protocol.py`). A persona's
reference travels by path (`references=[{audio_path, text}]`) to the SGLang-Omni this engine
launched, which may read the persona store (`--allowed-local-media-path`), so no request
carries megabytes; to a remote one it travels inline, compressed to pass the router's 1 MiB
routing limit (`compact.py`). Each reference is serialised once per persona and reused byte for
byte: 0.1.9 keys its reference-encode cache on the reference (`cache_key.py`) and its radix
cache on the reference codes plus the identical prompt (`request_builders.py`). Behind a router
every worker has its own caches, so each persona is warmed on each routable worker listed at
the router's `/workers` (`sglang_omni_router/python/app.py`), again when one comes back.

Rules taken from the 0.1.9 wheel (paths inside `sglang_omni/`):
- `serve/launcher.py` `run_server`: stages must start within `SGLANG_OMNI_STARTUP_TIMEOUT`
  (600 s unless set), weights loading included; the sidecar sets it to its own limit.
- `config/patch.py` `ConfigPatchSet.require_no_conflicts`: a dotted flag given twice with two
  values refuses the launch, so flags the sidecar sets are refused in `--sglang-args`.
- `serve/speech_service.py` `validate_input_text`: at most `MAX_SPEECH_INPUT_CHARS` (4096)
  characters of `input`, counted after the sidecar adds a persona's style tag.
- `serve/openai_api.py` `speech_audio_response`: headers come with the first audio; the finish
  reason of a raw PCM stream is served afterwards at `GET /v1/audio/speech/{request_id}`
  (`serve/speech_stream_outcomes.py`), where `length` means `max_new_tokens` cut it short.
- `models/fishaudio_s2_pro/engine_builder.py` `generation_defaults`: at most 64 running
  requests (`max_running_requests`) unless `--tts_engine.engine.max_running_requests` says.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from s2_plugin.client import S2ConnectionError, read_pcm
from s2_plugin.protocol import (
    HEADER_REQUEST_ID,
    HEADER_SAMPLE_RATE,
    HEALTH_PATH,
    MAX_INPUT_CHARS,
    SAMPLE_RATE,
    SAMPLING_FIELDS,
    SPEECH_PATH,
    SpeechRequest,
)
from s2_sidecar.engines import compact
from s2_sidecar.engines.base import Status
from s2_sidecar.errors import BadRequest, EngineFailed, Unavailable
from s2_sidecar.metrics import Metrics
from s2_sidecar.store import StoredPersona

log = logging.getLogger(__name__)

WARMUP_TEXT = "Hello."
ROUTE_WORKER_HEADER = "x-sglang-omni-route-worker"
WORKER_HEADER = "X-SGLang-Omni-Worker"
"""The router names the worker that served a request (`proxy.py` `diagnostic_headers`)."""

STRIDE_FLAG = "--vocoder.factory.stream_stride"
FOLLOWUP_FLAG = "--vocoder.factory.stream_followup_stride"
MEDIA_FLAG = "--allowed-local-media-path"
RUNNING_FLAG = "--tts_engine.engine.max_running_requests"
REMOTE_MAX_CONCURRENCY = 4096
DEFAULT_MAX_RUNNING = 64
"""0.1.9's `max_running_requests` for S2 on CUDA (`engine_builder.py` `generation_defaults`)."""

_OWN_FLAGS = {
    "--model-path": "--model-path",
    "--host": "nothing (SGLang-Omni listens on loopback only)",
    "--port": "--sglang-port",
    STRIDE_FLAG: "--stream-stride",
    FOLLOWUP_FLAG: "--stream-followup-stride",
    MEDIA_FLAG: "--store (the persona store is the allowed directory)",
}
"""Flags the sidecar passes itself, and the sidecar option that sets each instead."""


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
    """A Hugging Face id (fetched into the local cache before launch) or a local directory."""
    port: int = 0
    """Loopback port for SGLang-Omni; 0 picks a free one at each launch."""
    stream_stride: int = 8
    stream_followup_stride: int = 16
    extra_args: list[str] = field(default_factory=list)
    media_dir: Path | None = None
    """The persona store: SGLang-Omni may read reference clips there and nowhere else."""
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

    def __post_init__(self) -> None:
        for arg in self.extra_args:
            flag = arg.split("=", 1)[0]
            if flag in _OWN_FLAGS:
                raise ValueError(
                    f"--sglang-args must not set {flag}: the sidecar sets it, and SGLang-Omni "
                    f"0.1.9 refuses to start when a flag is given twice with two values; "
                    f"use {_OWN_FLAGS[flag]} instead"
                )

    @property
    def max_running_requests(self) -> int:
        """SGLang-Omni's cap on requests generating at once, as this launch configures it."""
        args = self.extra_args
        for i, arg in enumerate(args):
            flag, _, value = arg.partition("=")
            if flag == RUNNING_FLAG:
                with contextlib.suppress(ValueError, IndexError):
                    return int(value or args[i + 1])
        return DEFAULT_MAX_RUNNING

    def argv(self, port: int, model_dir: str) -> list[str]:
        media = [MEDIA_FLAG, str(self.media_dir.resolve())] if self.media_dir else []
        return [
            *self.command,
            "serve",
            "--model-path",
            model_dir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            STRIDE_FLAG,
            str(self.stream_stride),
            FOLLOWUP_FLAG,
            str(self.stream_followup_stride),
            *media,
            *self.extra_args,
        ]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            # Fail on a busy port instead of moving to a random one (`find_available_port`).
            "SGLANG_OMNI_STRICT_PORT": "1",
            # The weights are local by now, but stage start still loads and compiles them.
            "SGLANG_OMNI_STARTUP_TIMEOUT": str(self.startup_timeout),
        }


class SGLangOmniEngine:
    name = "sglang_omni"
    preview = False
    max_text_chars = 500
    """About 33 s of speech: within the 1024 tokens (about 47 s) of S2's default max_new_tokens
    (`request_builders.py`), so no part is cut off."""

    def __init__(
        self, metrics: Metrics, launch: Launch | None = None, *, url: str | None = None
    ) -> None:
        self.metrics = metrics
        self.launch = launch or Launch()
        self.url = url.rstrip("/") if url else None
        self.model = self.launch.model_path
        # A remote SGLang-Omni or router admits on its own (the router's --max-inflight answers
        # 503 at once): the sidecar then only keeps to the router's ceiling (`config.py`
        # `MAX_AUTO_CONNECTIONS`), rather than guess how many workers stand behind it.
        self.max_concurrency = REMOTE_MAX_CONCURRENCY if url else self.launch.max_running_requests
        self.on_ready: Callable[[], None] | None = None
        self._status: Status = "starting"
        self._detail: str | None = (
            f"waiting for SGLang-Omni at {self.url}" if self.url else "launching SGLang-Omni"
        )
        self._base_url = self.url or ""
        self._warmed: dict[str, set[str]] = {}
        """Worker URL -> hashes of the personas warmed on it since it last became routable."""
        self._new_reference = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._references: dict[str, tuple[str, bytes]] = {}
        self._checks: set[asyncio.Task[None]] = set()

    def health(self) -> tuple[Status, str | None]:
        return self._status, self._detail

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=5, sock_read=self.launch.read_timeout
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        )
        self._supervisor = asyncio.create_task(self._follow() if self.url else self._supervise())

    async def stop(self) -> None:
        tasks = [t for t in (self._supervisor, *self._checks) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._terminate()
        if self._session:
            await self._session.close()

    # --- requests ------------------------------------------------------------------------

    def payload(self, text: str, persona: StoredPersona | None, request: SpeechRequest) -> bytes:
        """The JSON body for SGLang-Omni; the persona's reference is the cached, same bytes."""
        if len(text) > MAX_INPUT_CHARS:
            raise BadRequest(
                f"with the style tag the input is {len(text)} characters; SGLang-Omni takes at "
                f"most {MAX_INPUT_CHARS}: send shorter text",
                "input_too_long",
            )
        fields: dict[str, object] = {"input": text, "response_format": "pcm", "stream": True}
        for name in SAMPLING_FIELDS:
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
            text = persona.info.transcript
            reference: dict[str, str]
            if self.url:
                fits = compact.REFERENCE_BUDGET - len(json.dumps(text))
                data, media_type = compact.encode(persona.wav, fits)
                reference = {"data": base64.b64encode(data).decode(), "media_type": media_type}
            else:
                # By path: SGLang-Omni's API process only stats the file, its preprocessing
                # stage reads it and caches the codes by content (`cache_key.py`, `file:` keys).
                reference = {"audio_path": str(persona.path.resolve())}
            cached = (persona.info.sha256, json.dumps({**reference, "text": text}).encode())
            self._references[persona.name] = cached
            self._new_reference.set()
        return cached[1]

    async def generate(
        self, text: str, persona: StoredPersona | None, request: SpeechRequest
    ) -> AsyncIterator[bytes]:
        body = self.payload(text, persona, request)
        if self._status != "ready" or self._session is None:
            raise Unavailable(f"SGLang-Omni is {self._status} ({self._detail}); retry shortly")
        self.metrics.engine_busy.inc()
        try:
            async with self._session.post(
                self._base_url + SPEECH_PATH,
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status >= 400:
                    raise await _upstream_error(response)
                _check_format(response)
                # Leaving early drops the connection: SGLang-Omni's cancel, it aborts the request.
                async with contextlib.aclosing(read_pcm(response)) as chunks:
                    async for pcm in chunks:
                        yield pcm
                if request_id := response.headers.get(HEADER_REQUEST_ID):
                    worker = response.headers.get(WORKER_HEADER)
                    self._spawn(self._check_finish(request_id, worker))
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise Unavailable(
                f"SGLang-Omni sent nothing for {self.launch.read_timeout} s; retry shortly",
                "engine_stalled",
            ) from e
        except (aiohttp.ClientError, S2ConnectionError) as e:
            raise Unavailable(f"SGLang-Omni is unreachable ({e}); retry shortly") from e
        finally:
            self.metrics.engine_busy.dec()

    async def _check_finish(self, request_id: str, worker: str | None) -> None:
        """Count a generation that `max_new_tokens` cut short: raw PCM cannot say so in-band.

        Behind a router the outcome lives on the worker that streamed: it is named by echoing
        the response's `X-SGLang-Omni-Worker` (`route_metadata.py` `extract_route_metadata`).
        """
        assert self._session is not None
        headers = {ROUTE_WORKER_HEADER: worker} if worker else {}
        try:
            async with self._session.get(
                f"{self._base_url}{SPEECH_PATH}/{request_id}",
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=5),
            ) as r:
                outcome = await r.json() if r.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.debug("no outcome for %s: %s", request_id, e)
            return
        if outcome.get("finish_reason") == "length":
            self.metrics.truncated.inc()
            log.warning(
                "SGLang-Omni request %s stopped at max_new_tokens: its audio ends early; raise "
                "max_new_tokens or send shorter segments",
                request_id,
            )

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    # --- a remote SGLang-Omni or router -------------------------------------------------

    async def _follow(self) -> None:
        """Track a server this engine did not start: its health, and the router's workers."""
        interval, limit = self.launch.health_interval, self.launch.health_failures
        failures = 0
        workers_known = True
        while True:
            if await self._healthy(timeout=interval):
                failures = 0
                if self._status != "ready":
                    self._status, self._detail = "ready", None
                    log.info("SGLang-Omni ready at %s", self.url)
                    if self.on_ready:
                        self.on_ready()
                workers = await self._routable_workers()
                if workers is None and workers_known:
                    log.info(
                        "%s lists no /workers (not a router): each persona is warmed by its "
                        "first request, and with several workers the first per worker is cold",
                        self.url,
                    )
                workers_known = workers is not None
                await self._warm_workers(workers or [])
            else:
                failures += 1
                if failures >= limit and self._status != "unhealthy":
                    self._status = "unhealthy"
                    self._detail = f"SGLang-Omni at {self.url} failed {failures} health checks"
                    log.error(self._detail)
            self._new_reference.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_reference.wait(), interval)

    async def _routable_workers(self) -> list[str] | None:
        """The URLs of the router's routable workers; None if the URL is not a router."""
        assert self._session is not None
        try:
            async with self._session.get(
                f"{self.url}/workers", timeout=aiohttp.ClientTimeout(total=5)
            ) as r:
                listing = await r.json() if r.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        if not isinstance(listing, dict) or not isinstance(listing.get("workers"), list):
            return None
        urls = [w["url"] for w in listing["workers"] if w.get("routable")]
        for gone in set(self._warmed) - set(urls):  # drained or restarting: caches are suspect
            del self._warmed[gone]
        return urls

    async def _warm_workers(self, workers: list[str]) -> None:
        """Send each persona's warm-up straight to every routable worker that lacks it."""
        jobs = [
            self._warm_one(url, sha, reference)
            for url in workers
            for sha, reference in list(self._references.values())
            if sha not in self._warmed.setdefault(url, set())
        ]
        await asyncio.gather(*jobs)

    async def _warm_one(self, worker: str, sha: str, reference: bytes) -> None:
        assert self._session is not None
        body = json.dumps(
            {"input": WARMUP_TEXT, "response_format": "pcm", "stream": True, "max_new_tokens": 32}
        ).encode()
        body = body[:-1] + b', "references": [' + reference + b"]}"
        try:
            async with self._session.post(
                worker + SPEECH_PATH, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                await r.read()
                ok = r.status == 200
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("warm-up on worker %s failed: %s", worker, e)
            ok = False
        self.metrics.warmups.labels("ok" if ok else "error").inc()
        if ok:
            self._warmed.setdefault(worker, set()).add(sha)

    # --- supervision ---------------------------------------------------------------------

    async def _supervise(self) -> None:
        first, longest = self.launch.backoff
        delay = first
        while True:
            ready_at: float | None = None
            model_dir = await self._weights()
            if model_dir is None:
                why = self._detail or "could not fetch the weights"
            else:
                port = self.launch.port or _free_port()
                self._base_url = f"http://127.0.0.1:{port}"
                self._status, self._detail = "starting", f"launching SGLang-Omni on port {port}"
                argv = self.launch.argv(port, model_dir)
                log.info("launching %s", " ".join(argv))
                # Its own session, so that stopping it also stops the stage processes it spawns;
                # and a parent-death signal, so that a SIGKILLed sidecar leaves no GPU held.
                self._proc = await asyncio.create_subprocess_exec(
                    *argv,
                    env=self.launch.env(),
                    start_new_session=True,
                    preexec_fn=_die_with_parent(os.getpid()),
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

    async def _weights(self) -> str | None:
        """A local directory holding the weights, fetched first if need be; None if not possible.

        0.1.9 downloads inside stage start (`utils/checkpoint.py`), under its start-up timeout:
        a first download on a slow link would time out and be relaunched forever.
        """
        path = self.launch.model_path
        if Path(path).is_dir():
            return path
        self._status, self._detail = "starting", f"fetching the {path} weights (first start)"
        try:
            from huggingface_hub import snapshot_download

            return str(await asyncio.to_thread(snapshot_download, path))
        except Exception as e:  # the hub raises many kinds: offline, auth, disk full
            self._detail = (
                f"could not fetch the {path} weights ({type(e).__name__}: {e}); run "
                f"`s2-sidecar download --model {path}` or pass --model-path DIR"
            )
            return None

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


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A `preexec_fn` that makes the child get SIGTERM when the sidecar dies, however it dies.

    SIGTERM rather than SIGKILL: 0.1.9's `launch_server` handles SIGTERM by stopping its stage
    processes (`serve/launcher.py` `handle_sigterm`), which a SIGKILL would orphan on the GPU.
    """
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: nothing to load in the child

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the sidecar died before prctl took effect
            os._exit(1)

    return preexec


def _check_format(response: aiohttp.ClientResponse) -> None:
    rate = response.headers.get(HEADER_SAMPLE_RATE)
    if rate != str(SAMPLE_RATE):
        raise EngineFailed(
            f"SGLang-Omni streams PCM at X-Sample-Rate {rate!r}, not {SAMPLE_RATE}: it is not "
            "serving S2-Pro as expected; check --model-path and its version (0.1.9)",
            "engine_format",
        )


async def _upstream_error(response: aiohttp.ClientResponse) -> Exception:
    raw = await response.read()
    try:
        data = json.loads(raw)
        message = data.get("error", {}).get("message") or data.get("detail") or raw.decode()
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")[:500]
    if 400 <= response.status < 500:
        return BadRequest(f"SGLang-Omni refused the request: {message}", "engine_rejected")
    if response.status == 503:  # starting, its queue is full, or the router's admission
        return Unavailable(f"SGLang-Omni is busy ({message}); retry shortly")
    if response.status in (502, 504):  # the router lost the worker (`proxy.py` `open_upstream`)
        return Unavailable(f"SGLang-Omni's router could not reach a worker ({message}); retry")
    # A 500 from 0.1.9 is a fault on this request (e.g. a ValueError in a request builder):
    # the same request would fail the same way, so it is not a "retry shortly".
    return EngineFailed(
        f"SGLang-Omni failed on this request ({response.status}: {message}); see its log",
        "engine_error",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
