"""Warm-ups: a short generation per persona, so its prefix sits in the engine's cache."""

from __future__ import annotations

import logging

from aiohttp import web

from s2_plugin.protocol import SpeechRequest
from s2_sidecar.state import ENGINE, METRICS, STORE
from s2_sidecar.store import StoredPersona

log = logging.getLogger(__name__)

REQUEST = SpeechRequest(input="Hello.", max_new_tokens=32)
"""The one warm-up request: short text, few tokens; the persona's reference is the point."""


async def warm(app: web.Application, persona: StoredPersona) -> None:
    metrics = app[METRICS]
    try:
        request = REQUEST.model_copy(update={"voice": persona.name})
        async for _ in app[ENGINE].generate(REQUEST.input, persona, request):
            pass
    except Exception as e:
        metrics.warmups.labels("error").inc()
        log.warning("warm-up of persona %s failed: %s", persona.name, e)
    else:
        metrics.warmups.labels("ok").inc()


async def warm_all(app: web.Application) -> None:
    for info in app[STORE].list():
        await warm(app, app[STORE].get(info.name))
