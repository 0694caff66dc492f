"""The persona studio: a page at `/` for making personas and hearing them, in any browser.

The page is three static files in the package (`static/`: no build step, nothing from a CDN)
and one JSON document of the numbers it shows, taken from the code that enforces them. They
are served without the API key on purpose: they are the same bytes for everyone and hold no
persona, no audio and no secret, and a browser cannot attach a bearer key to a page load (a
key in a cookie instead would be sent by any other site's forms too). The page asks for the
key when the API refuses it, keeps it in the tab's sessionStorage, and sends it as
`Authorization: Bearer` on every API call, which stays behind the key as for any client.
"""

from __future__ import annotations

import typing
from importlib import resources

from aiohttp import web

from s2_plugin.prompt import EXAMPLE_TAGS
from s2_plugin.protocol import VOICES_PATH, SpeechRequest
from s2_sidecar import clips
from s2_sidecar.state import STORE

PAGE_PATH = "/"
ASSETS = {
    "studio.js": "text/javascript",
    "studio.css": "text/css",
    "icon.svg": "image/svg+xml",
}
CONFIG_PATH = "/studio/config.json"
CLIP_PATH = VOICES_PATH + "/{name}/clip"
"""A stored persona's canonical clip as WAV, to play back; behind the key like all persona data."""
PATHS = frozenset({PAGE_PATH, CONFIG_PATH, *(f"/studio/{name}" for name in ASSETS)})
"""Every path the studio serves; the API key rule leaves exactly these open."""

PALETTE = (
    *EXAMPLE_TAGS,
    "[laughing]",
    "[sad]",
    "[angry]",
    "[surprised]",
    "[shouting]",
    "[low voice]",
    "[speaking slowly]",
    "[emphasis]",
    "[professional broadcast tone]",
)
"""Cues the page offers as buttons; S2 takes any short description, these are common ones."""

_HEADERS = {
    # Only the page's own files, audio it made itself (blob:) and the sidecar's API; no framing,
    # so no other site can overlay the key field.
    "Content-Security-Policy": (
        "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_routes(app: web.Application) -> None:
    """Serve the studio from `app`; call once from the app factory."""
    static = resources.files("s2_sidecar") / "static"
    files = {PAGE_PATH: (static.joinpath("index.html").read_bytes(), "text/html")}
    for name, content_type in ASSETS.items():
        files[f"/studio/{name}"] = (static.joinpath(name).read_bytes(), content_type)

    async def serve_file(request: web.Request) -> web.Response:
        body, content_type = files[request.path]
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_HEADERS)

    async def serve_config(request: web.Request) -> web.Response:
        return web.json_response(_config(), headers=_HEADERS)

    async def serve_clip(request: web.Request) -> web.Response:
        persona = request.app[STORE].get(request.match_info["name"])  # NotFound: a 404
        return web.Response(body=persona.wav, content_type="audio/wav", headers=_HEADERS)

    app.add_routes([web.get(path, serve_file) for path in files])
    app.add_routes([web.get(CONFIG_PATH, serve_config), web.get(CLIP_PATH, serve_clip)])


def _config() -> dict[str, object]:
    """The limits the page guides by, from the modules that enforce them."""
    formats = typing.get_args(SpeechRequest.model_fields["response_format"].annotation)
    return {
        "palette": list(PALETTE),
        "formats": list(formats),
        "cast": "cast" in SpeechRequest.model_fields,
        "clip_s": {
            "min": clips.MIN_S,
            "good_min": clips.GOOD_MIN_S,
            "good_max": clips.GOOD_MAX_S,
            "max": clips.MAX_S,
        },
    }
