"""A SGLang-Omni the sidecar did not start (`--sglang-url`): its health, and, behind
`sgl-omni-router-py`, a warm-up of every persona on every routable worker.

Behind a router every worker has its own caches, so each persona is warmed on each routable
worker listed at the router's `/workers` (`sglang_omni_router/python/app.py`), and again when
one comes back (a worker that leaves the list may have restarted with empty caches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from s2_plugin.protocol import SPEECH_PATH
from s2_sidecar.engines.base import WARMUP
from s2_sidecar.engines.sglang_link import Link, speech_body
from s2_sidecar.metrics import Metrics

log = logging.getLogger(__name__)


class Follower:
    """Tracks a remote SGLang-Omni's health; warms new references on the router's workers."""

    def __init__(
        self,
        link: Link,
        metrics: Metrics,
        references: dict[str, tuple[str, bytes]],
        *,
        interval: float,
        failures: int,
    ) -> None:
        self.link = link
        self.metrics = metrics
        self.references = references
        """Persona name -> (content hash, serialised reference): the engine's own cache."""
        self.new_reference = asyncio.Event()
        """Set by the engine when it serialises a reference, so it is warmed without delay."""
        self.interval = interval
        self.failures = failures
        self._warmed: dict[str, set[str]] = {}
        """Worker URL -> hashes of the personas warmed on it since it last became routable."""

    async def run(self) -> None:
        link = self.link
        failures = 0
        workers_known = True
        while True:
            if await link.healthy(timeout=self.interval):
                failures = 0
                if link.status != "ready":
                    link.ready()
                workers = await self._routable_workers()
                if workers is None and workers_known:
                    log.info(
                        "%s lists no /workers (not a router): each persona is warmed by its "
                        "first request, and with several workers the first per worker is cold",
                        link.base_url,
                    )
                workers_known = workers is not None
                await self._warm_workers(workers or [])
            else:
                failures += 1
                if failures >= self.failures and link.status != "unhealthy":
                    link.status = "unhealthy"
                    link.detail = f"SGLang-Omni at {link.base_url} failed {failures} health checks"
                    log.error(link.detail)
            self.new_reference.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.new_reference.wait(), self.interval)

    async def _routable_workers(self) -> list[str] | None:
        """The URLs of the router's routable workers; None if the URL is not a router."""
        try:
            async with self.link.session.get(
                f"{self.link.base_url}/workers", timeout=aiohttp.ClientTimeout(total=5)
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
            for sha, reference in list(self.references.values())
            if sha not in self._warmed.setdefault(url, set())
        ]
        await asyncio.gather(*jobs)

    async def _warm_one(self, worker: str, sha: str, reference: bytes) -> None:
        body = speech_body(WARMUP.input, WARMUP, reference)
        try:
            async with self.link.session.post(
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
