"""HTTP requests with exactly the headers given (`Host` included), for the sidecar's guards.

request(sidecar.port, "GET", "/v1/audio/voices", host="evil.example") -> (421, {...})
"""

from __future__ import annotations

import http.client
import json
import uuid
from typing import Any


def request(
    port: int,
    method: str,
    path: str,
    *,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 60,
) -> tuple[int, Any]:
    """One request to 127.0.0.1:`port`; its status and body: parsed if JSON, None if empty."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        all_headers = {"Host": host or f"127.0.0.1:{port}", **(headers or {})}
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        if response.headers.get_content_type() == "application/json":
            return response.status, json.loads(data)
        return response.status, data or None
    finally:
        conn.close()


def multipart(fields: dict[str, str | bytes]) -> tuple[str, bytes]:
    """A multipart/form-data body, as a browser's form sends it: its Content-Type and bytes.
    Bytes values are sent as files."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'name="{name}"; filename="{name}.bin"\r\nContent-Type: application/octet-stream'
            data = value
        else:
            head, data = f'name="{name}"', value.encode()
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; {head}\r\n\r\n".encode() + data
        )
    body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def upload(
    port: int, fields: dict[str, str | bytes], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """`POST /v1/audio/voices` with `fields`."""
    content_type, body = multipart(fields)
    return request(
        port,
        "POST",
        "/v1/audio/voices",
        headers={"Content-Type": content_type, **(headers or {})},
        body=body,
    )
