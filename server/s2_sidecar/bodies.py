"""Request and response bodies: read within limits and time, JSON out."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel

from s2_sidecar.errors import BadRequest, RequestTimeout, TooLarge, UnsupportedMedia, error_json
from s2_sidecar.state import SETTINGS


async def read_json(request: web.Request, limit: int) -> bytes:
    """A JSON request's raw body as UTF-8, within `limit` bytes."""
    if request.content_type != "application/json":
        raise UnsupportedMedia(
            f"send the request as application/json, not {request.content_type!r}",
            "unsupported_media_type",
        )
    raw = await read(request, limit)
    charset = (request.charset or "utf-8").lower()
    if charset in ("utf-8", "utf8"):
        return raw
    try:
        return raw.decode(charset).encode()
    except LookupError as e:
        raise BadRequest(f"unknown charset {charset!r}; send UTF-8", "bad_charset") from e
    except UnicodeDecodeError as e:
        raise BadRequest(f"the body is not valid {charset} ({e})", "bad_charset") from e


async def read(request: web.Request, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes before reading it all."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(too_large(request.content_length, limit), "body_too_large")
    data = bytearray()
    timeout = request.app[SETTINGS].body_timeout
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.read(64 * 1024):
                data += chunk
                if len(data) > limit:
                    raise TooLarge(too_large(len(data), limit), "body_too_large")
    except TimeoutError as e:
        raise RequestTimeout(
            f"the body took longer than {timeout:g} s to arrive", "body_timeout"
        ) from e
    return bytes(data)


def too_large(size: int, limit: int) -> str:
    return f"the body is {size} bytes or more; speech requests are limited to {limit} bytes"


def model_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def error_response(
    status: int, message: str, code: str | None, type_: str | None = None
) -> web.Response:
    return web.Response(
        text=error_json(status, message, code, type_),
        status=status,
        content_type="application/json",
    )
