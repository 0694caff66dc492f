"""The sidecar as an aiohttp app: its routes, its lifetime, health and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from s2_plugin.personas import MAX_CLIP_BYTES
from s2_plugin.protocol import (
    HEALTH_PATH,
    METRICS_PATH,
    MODELS_PATH,
    SPEECH_PATH,
    VOICES_PATH,
    Health,
)
from s2_sidecar import persona_routes, pronunciation_routes, studio
from s2_sidecar.admission import Admission
from s2_sidecar.bodies import model_response
from s2_sidecar.budget import Budget
from s2_sidecar.engines.base import Engine
from s2_sidecar.metrics import CONTENT_TYPE, Metrics
from s2_sidecar.middleware import api_key as api_key_middleware
from s2_sidecar.middleware import errors, sites
from s2_sidecar.pronunciations import Pronunciations
from s2_sidecar.settings import Settings
from s2_sidecar.speech import speech
from s2_sidecar.state import (
    ADMISSION,
    ALIASES,
    BACKGROUND,
    BUDGET,
    ENGINE,
    METRICS,
    PRONUNCIATIONS,
    REGISTER_LOCK,
    SETTINGS,
    STORE,
    STREAMS,
    Streams,
)
from s2_sidecar.store import PersonaStore
from s2_sidecar.tasks import Background
from s2_sidecar.warmup import warm_all

_FORM_OVERHEAD = 64 * 1024
"""Room for the multipart fields around a clip of the largest accepted size."""


def create_app(
    engine: Engine,
    store: PersonaStore,
    *,
    metrics: Metrics | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
    aliases: dict[str, str] | None = None,
) -> web.Application:
    """The sidecar as an aiohttp app; starting it starts the engine, cleanup stops it."""
    settings = settings or Settings()
    middlewares = [errors, sites(settings.allowed_hosts, settings.allowed_origins)]
    middlewares += [api_key_middleware(api_key)] if api_key else []
    app = web.Application(middlewares=middlewares, client_max_size=MAX_CLIP_BYTES + _FORM_OVERHEAD)
    metrics = metrics or Metrics()
    limit = settings.max_concurrency or engine.max_concurrency
    queue = limit if settings.queue_size is None else settings.queue_size
    app[ENGINE] = engine
    app[STORE] = store
    app[METRICS] = metrics
    app[SETTINGS] = settings
    app[ALIASES] = dict(aliases or {})
    app[STREAMS] = Streams()
    app[ADMISSION] = Admission(
        limit,
        queue,
        settings.queue_wait,
        metrics,
        scheduling=settings.scheduling,
        lead_s=settings.lead,
    )
    app[BACKGROUND] = Background()
    app[REGISTER_LOCK] = asyncio.Lock()
    app[PRONUNCIATIONS] = Pronunciations(store.root)
    app[BUDGET] = Budget(settings.reference_budget)
    app.add_routes(
        [
            web.post(SPEECH_PATH, speech),
            web.get(VOICES_PATH, persona_routes.list_voices),
            web.post(VOICES_PATH, persona_routes.upload_voice),
            web.get(VOICES_PATH + "/{name}", persona_routes.get_voice),
            web.delete(VOICES_PATH + "/{name}", persona_routes.delete_voice),
            web.get(MODELS_PATH, list_models),
            web.get(HEALTH_PATH, health),
            web.get(METRICS_PATH, metrics_text),
            web.get(pronunciation_routes.PATH, pronunciation_routes.get_pronunciations),
            web.put(pronunciation_routes.PATH, pronunciation_routes.put_pronunciations),
            web.put(
                pronunciation_routes.PATH + "/{persona}", pronunciation_routes.put_pronunciations
            ),
        ]
    )
    studio.add_routes(app)
    app.cleanup_ctx.append(_engine_running)
    return app


async def _engine_running(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    engine.on_ready = lambda: app[BACKGROUND].spawn(warm_all(app))
    await engine.start()
    yield
    await app[BACKGROUND].close()
    await engine.stop()


def start_draining(app: web.Application) -> None:
    """From now on new speech requests get a 503 and /health says the sidecar is going."""
    app[STREAMS].draining = True


def in_flight(app: web.Application) -> list[str]:
    """Request ids of the speech responses in progress."""
    return list(app[STREAMS].started)


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    status, detail = engine.health()
    if request.app[STREAMS].draining:
        status, detail = "unhealthy", "shutting down"
    body = Health(
        status=status,
        engine=engine.name,
        model=engine.model,
        preview=engine.preview,
        personas=len(request.app[STORE].list()),
        detail=detail,
    )
    return model_response(body, status=200 if status == "ready" else 503)


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1/models` in OpenAI's shape: the one model this sidecar serves."""
    engine = request.app[ENGINE]
    model = {"id": engine.model, "object": "model", "created": 0, "owned_by": engine.name}
    return web.json_response({"object": "list", "data": [model]})


async def metrics_text(request: web.Request) -> web.Response:
    response = web.Response(body=request.app[METRICS].render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response
