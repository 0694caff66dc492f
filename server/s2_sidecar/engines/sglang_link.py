"""The sglang_omni engine's view of SGLang-Omni: where it is, whether it serves, one session.

The engine, the process supervisor (`sglang_process`) and the router follower
(`sglang_router`) all read and set this one state, so /health reports what any of them saw.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import aiohttp

from s2_plugin.protocol import HEALTH_PATH, SAMPLING_FIELDS, SpeechRequest
from s2_sidecar.engines.base import Status

log = logging.getLogger(__name__)


class Link:
    def __init__(self, base_url: str, detail: str, read_timeout: float) -> None:
        self.base_url = base_url
        self.status: Status = "starting"
        self.detail: str | None = detail
        self.on_ready: Callable[[], None] | None = None
        self._read_timeout = read_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Link.open() first"
        return self._session

    def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=self._read_timeout)
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        )

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    def ready(self) -> None:
        self.status, self.detail = "ready", None
        log.info("SGLang-Omni ready at %s", self.base_url)
        if self.on_ready:
            self.on_ready()

    async def healthy(self, timeout: float, base_url: str | None = None) -> bool:
        try:
            async with self.session.get(
                (base_url or self.base_url) + HEALTH_PATH,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False


def speech_body(text: str, request: SpeechRequest, reference: bytes | None) -> bytes:
    """0.1.9's `CreateSpeechRequest` as JSON, raw PCM streamed, with a serialised reference.

    The reference is spliced in as the same bytes every time: SGLang-Omni keys its caches on
    it (see `sglang_omni.py`).
    """
    fields: dict[str, object] = {"input": text, "response_format": "pcm", "stream": True}
    for name in SAMPLING_FIELDS:
        value = getattr(request, name)
        if value is not None:
            fields[name] = value
    body = json.dumps(fields).encode()
    if reference is None:
        return body
    return body[:-1] + b', "references": [' + reference + b"]}"
