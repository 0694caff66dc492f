"""Middlewares: every failure as a JSON error, who may reach the sidecar, and the API key.

A keyless sidecar on 127.0.0.1 sits beside a browser, so any page the browser opens can send
it requests. As Jupyter and Ollama do since their DNS-rebinding and CSRF advisories:
- Only Host names of this machine (and those the operator names) are served: a page on a
  name rebound to 127.0.0.1 sends its own name as Host and is refused (421).
- A request that changes something (any method but GET/HEAD/OPTIONS) and comes from a browser
  (it carries `Origin` or `Sec-Fetch-*`, which only browsers send) must come from the sidecar's
  own origin (or one the operator allows) and carry `X-S2-Client`. No cross-site form or
  `no-cors` fetch can add that header; a fetch that adds it must be preflighted, and the
  sidecar answers no preflight. Clients outside a browser (this package's, curl, OpenAI's and
  SGLang-Omni's) send neither header and are not affected.
docs/security.md says what is refused and the flags.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from s2_plugin.personas import MAX_CLIP_BYTES
from s2_plugin.protocol import HEADER_CLIENT, HEALTH_PATH, METRICS_PATH
from s2_sidecar import studio
from s2_sidecar.bodies import error_response
from s2_sidecar.errors import Forbidden, Misdirected, SidecarError, Unauthorized
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


ANY = "*"
"""As an allowed host: every Host is served."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def served_hosts(bind: str, configured: Iterable[str]) -> tuple[str, ...]:
    """The Host names to serve besides this machine's own, for a sidecar listening on `bind`.

    On loopback, only the configured ones. On any other address (which needs an API key) the
    names clients use are not known here, and the key already keeps a rebound page out of the
    API, so every Host is served unless names are configured (then those and `bind` itself).
    """
    names = [name.strip().lower() for name in configured if name.strip()]
    if is_local(bind):
        return tuple(names)
    return (*names, bind.lower()) if names else (ANY,)


def is_local(host: str) -> bool:
    """Whether a host name (no port) is this machine: `localhost` or a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    """The name in a Host header, without its port: `[::1]:8421` is `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


def sites(allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> Middleware:
    """Refuse requests from browsers on other sites (see the module docstring)."""
    hosts = frozenset(h.lower() for h in allowed_hosts)
    origins = frozenset(o.strip().lower().rstrip("/") for o in allowed_origins)

    def host_allowed(host: str) -> bool:
        name = _hostname(host)
        # No Host at all (HTTP/1.0) is no browser's request.
        return not name or ANY in hosts or is_local(name) or name in hosts

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if not host_allowed(host):
            raise Misdirected(
                f"this sidecar does not serve the host name {_hostname(host)!r}: a web page on a "
                "name that resolves here could use it; use 127.0.0.1 or localhost, or start it "
                f"with --allowed-host {_hostname(host) or 'NAME'}",
                "host_not_allowed",
            )
        if request.method not in _SAFE_METHODS:
            _check_browser(request, host, origins)
        return await handler(request)

    return middleware


def _check_browser(request: web.Request, host: str, origins: frozenset[str]) -> None:
    headers = request.headers
    origin = headers.get("Origin")
    if origin is None and not any(k.lower().startswith("sec-fetch-") for k in headers):
        return  # not a browser
    given = (origin or "").strip().lower().rstrip("/")
    allowed = given in origins or ANY in origins
    same = origin is not None and urlsplit(given).netloc == host.strip().lower()
    if origin is not None and not (same or allowed):
        raise Forbidden(
            f"requests from web pages at {origin} are refused; start the sidecar with "
            f"--allowed-origin {origin} to allow that page",
            "origin_not_allowed",
        )
    if headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site") and not allowed:
        raise Forbidden(
            "requests from web pages on other sites are refused; start the sidecar with "
            "--allowed-origin ORIGIN to allow a page",
            "cross_site",
        )
    if not headers.get(HEADER_CLIENT):
        raise Forbidden(
            f"a browser's request that changes something must carry an {HEADER_CLIENT} header "
            "(any value), which no form on another site can send; the studio sends it",
            "client_header_missing",
        )
