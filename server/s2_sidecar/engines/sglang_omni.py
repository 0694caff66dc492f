"""The S2-Pro engine: SGLang-Omni 0.1.9, launched and supervised here or reached at a URL.

Local (default): `sgl-omni serve` runs as a supervised subprocess on loopback
(`sglang_process`). Remote (`url=`, `--sglang-url`): a bare SGLang-Omni or `sgl-omni-router-py`
in front of many, which nothing here launches; health comes from its `/health`
(`sglang_router`).

Requests become 0.1.9's `CreateSpeechRequest` (`sglang_omni/serve/protocol.py`). A persona's
reference travels by path (`references=[{audio_path, text}]`) to the SGLang-Omni this engine
launched, which may read the persona store (`--allowed-local-media-path`), so no request
carries megabytes; to a remote one it travels inline, compressed to pass the router's 1 MiB
routing limit (`compact.py`). Each reference is serialised once per persona and reused byte for
byte: 0.1.9 keys its reference-encode cache on the reference (`cache_key.py`) and its radix
cache on the reference codes plus the identical prompt (`request_builders.py`).

Rules taken from the 0.1.9 wheel (paths inside `sglang_omni/`):
- `serve/speech_service.py` `validate_input_text`: at most `MAX_SPEECH_INPUT_CHARS` (4096)
  characters of `input`, counted after the sidecar adds a persona's style tag.
- `serve/openai_api.py` `speech_audio_response`: headers come with the first audio; the finish
  reason of a raw PCM stream is served afterwards at `GET /v1/audio/speech/{request_id}`
  (`serve/speech_stream_outcomes.py`), where `length` means `max_new_tokens` cut it short.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable

import aiohttp

from s2_plugin.client import S2ConnectionError, read_pcm
from s2_plugin.protocol import (
    HEADER_REQUEST_ID,
    HEADER_SAMPLE_RATE,
    MAX_INPUT_CHARS,
    SAMPLE_RATE,
    SPEECH_PATH,
    SpeechRequest,
)
from s2_sidecar.engines import compact
from s2_sidecar.engines.base import Status
from s2_sidecar.engines.sglang_link import Link, speech_body
from s2_sidecar.engines.sglang_process import Launch, Supervisor
from s2_sidecar.engines.sglang_router import Follower
from s2_sidecar.errors import BadRequest, EngineFailed, Unavailable
from s2_sidecar.metrics import Metrics
from s2_sidecar.store import StoredPersona
from s2_sidecar.tasks import Background

log = logging.getLogger(__name__)

ROUTE_WORKER_HEADER = "x-sglang-omni-route-worker"
WORKER_HEADER = "X-SGLang-Omni-Worker"
"""The router names the worker that served a request (`proxy.py` `diagnostic_headers`)."""

REMOTE_MAX_CONCURRENCY = 4096


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
        detail = f"waiting for SGLang-Omni at {self.url}" if self.url else "launching SGLang-Omni"
        self._link = Link(self.url or "", detail, self.launch.read_timeout)
        self._references: dict[str, tuple[str, bytes]] = {}
        """Persona name -> (content hash, its reference serialised once, reused byte for byte)."""
        self._supervisor = Supervisor(self.launch, self._link, metrics)
        self._follower = Follower(
            self._link,
            metrics,
            self._references,
            interval=self.launch.health_interval,
            failures=self.launch.health_failures,
        )
        self._watching: asyncio.Task[None] | None = None
        self._checks = Background()

    @property
    def on_ready(self) -> Callable[[], None] | None:
        return self._link.on_ready

    @on_ready.setter
    def on_ready(self, callback: Callable[[], None] | None) -> None:
        self._link.on_ready = callback

    def health(self) -> tuple[Status, str | None]:
        return self._link.status, self._link.detail

    async def start(self) -> None:
        self._link.open()
        keeper = self._follower.run() if self.url else self._supervisor.run()
        self._watching = asyncio.create_task(keeper)

    async def stop(self) -> None:
        if self._watching:
            self._watching.cancel()
            await asyncio.gather(self._watching, return_exceptions=True)
        await self._checks.close()
        await self._supervisor.terminate()
        await self._link.close()

    # --- requests ------------------------------------------------------------------------

    def payload(self, text: str, persona: StoredPersona | None, request: SpeechRequest) -> bytes:
        """The JSON body for SGLang-Omni; the persona's reference is the cached, same bytes."""
        if len(text) > MAX_INPUT_CHARS:
            raise BadRequest(
                f"with the style tag the input is {len(text)} characters; SGLang-Omni takes at "
                f"most {MAX_INPUT_CHARS}: send shorter text",
                "input_too_long",
            )
        return speech_body(text, request, self._reference(persona) if persona else None)

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
            self._follower.new_reference.set()
        return cached[1]

    async def generate(
        self, text: str, persona: StoredPersona | None, request: SpeechRequest
    ) -> AsyncGenerator[bytes, None]:
        body = self.payload(text, persona, request)
        link = self._link
        if link.status != "ready":
            raise Unavailable(f"SGLang-Omni is {link.status} ({link.detail}); retry shortly")
        self.metrics.engine_busy.inc()
        try:
            async with link.session.post(
                link.base_url + SPEECH_PATH,
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
                    self._checks.spawn(self._check_finish(request_id, worker))
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
        headers = {ROUTE_WORKER_HEADER: worker} if worker else {}
        try:
            async with self._link.session.get(
                f"{self._link.base_url}{SPEECH_PATH}/{request_id}",
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
