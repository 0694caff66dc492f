"""One budget for the reference clips and uploads in flight, on the real sidecar."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

from support import raw_http
from support.sidecar import PERSONAS_TOML
from support.waiting import wait_for

CLIP = (PERSONAS_TOML.parent / "joe.wav").read_bytes()
TRANSCRIPT = "Hi, I'm Joe, the preview voice of this project."
BODY = json.dumps(
    {
        "input": "Hello.",
        "response_format": "wav",
        "references": [{"data": base64.b64encode(CLIP).decode(), "text": TRANSCRIPT}],
    }
).encode()
JSON = {"Content-Type": "application/json"}


def test_a_body_arriving_while_the_budget_is_held_is_a_503_then_passes(make_sidecar: Any) -> None:
    process = make_sidecar(args=["--reference-budget", str(len(BODY))])

    def speak() -> tuple[int, Any]:
        return raw_http.request(process.port, "POST", "/v1/audio/speech", headers=JSON, body=BODY)

    # A client that announces a 1.6 MB reference and sends it slowly holds its share meanwhile.
    slow = socket.create_connection(("127.0.0.1", process.port))
    try:
        slow.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(BODY)
            + BODY[:1000]
        )
        refused: list[Any] = []
        wait_for(lambda: refused.append(speak()) or refused[-1][0] == 503, "a 503 while held")
        assert refused[-1][1]["error"]["code"] == "busy_with_references"
        upload = raw_http.upload(process.port, {"name": "ava", "transcript": "x", "audio": CLIP})
        assert upload[0] == 503  # uploads share the budget
    finally:
        slow.close()
    wait_for(lambda: speak()[0] == 200, "the budget given back once the slow client left")
    assert process.metrics().value("s2_errors_total", code="busy_with_references") >= 2
