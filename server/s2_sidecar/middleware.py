"""Middlewares: every failure as a JSON error, and the API key."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from s2_plugin.personas import MAX_CLIP_BYTES
from s2_plugin.protocol import HEALTH_PATH, METRICS_PATH
from s2_sidecar import studio
from s2_sidecar.bodies import error_response
from s2_sidecar.errors import SidecarError, Unauthorized
from s2_sidecar.state import METRICS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_PATHS = frozenset({HEALTH_PATH, METRICS_PATH, *studio.PATHS})
"""What answers without the API key."""


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes `{"error": {...}}`; every response is counted."""
    metrics = request.app[METRICS]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    code: str | None = None
    try:
        response = await handler(request)
    except SidecarError as e:
        code = e.code
        response = error_response(e.status, e.message, code, e.type)
        response.headers.update(e.headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = "body_too_large" if e.status == 413 else f"http_{e.status}"
        message = e.text or e.reason
        if e.status == 413:
            message = f"{message}; keep uploads under {MAX_CLIP_BYTES} bytes"
        response = error_response(e.status, message, code)
        if "Allow" in e.headers:  # a 405 says which methods the route takes
            response.headers["Allow"] = e.headers["Allow"]
    except (asyncio.CancelledError, ConnectionResetError):
        metrics.requests.labels(route, "499").inc()  # nginx's "client closed request"
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        code = "internal_error"
        response = error_response(500, "internal error; see the sidecar log", code)
    if code is not None:
        metrics.errors.labels(code).inc()
    metrics.requests.labels(route, str(response.status)).inc()
    return response


def api_key(key: str) -> Middleware:
    """Every path but `PUBLIC_PATHS` needs `Authorization: Bearer <key>`."""
    expected = key.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS:
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given:
                raise Unauthorized(
                    "this sidecar needs an API key; send 'Authorization: Bearer <key>'",
                    "missing_api_key",
                )
            if not hmac.compare_digest(given.encode(), expected):
                raise Unauthorized("the API key is wrong; check the key you send", "bad_api_key")
        return await handler(request)

    return middleware
