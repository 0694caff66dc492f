"""`/v1/pronunciations`: read and replace the sidecar's lexicons (see `pronunciations`)."""

from __future__ import annotations

import json

from aiohttp import web

from s2_plugin.phonemes import PhonemeError
from s2_sidecar import bodies
from s2_sidecar.errors import BadRequest
from s2_sidecar.state import PRONUNCIATIONS, STORE

PATH = "/v1/pronunciations"
_MAX_BODY = 256 * 1024
"""Bytes of a lexicon: some thousands of entries."""


async def get_pronunciations(request: web.Request) -> web.Response:
    return web.json_response(request.app[PRONUNCIATIONS].entries())


async def put_pronunciations(request: web.Request) -> web.Response:
    """Replace the global entries, or a persona's (`/v1/pronunciations/{persona}`)."""
    persona = request.match_info.get("persona")
    if persona is not None:
        request.app[STORE].get(persona)  # a 404 for a persona that is not registered
    raw = await bodies.read_json(request, _MAX_BODY)
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise BadRequest(f"the body is not valid JSON: {e}", "malformed_json") from e
    entries = body.get("pronunciations") if isinstance(body, dict) else None
    if not isinstance(entries, dict):
        raise BadRequest(
            'send {"pronunciations": {"word": "IPA or Arpabet", ...}}', "invalid_request"
        )
    try:
        request.app[PRONUNCIATIONS].replace(entries, persona)
    except PhonemeError as e:
        raise BadRequest(str(e), "invalid_pronunciation") from e
    return web.json_response(request.app[PRONUNCIATIONS].entries())
