"""The sidecar's HTTP server under hostile clients, overload and shutdown (real process)."""

from __future__ import annotations

import inspect
import json
import socket

import pytest
from aiohttp import web
from aiohttp.http_writer import StreamWriter
from aiohttp.web_protocol import RequestHandler
from support.sidecar import SidecarProcess
from support.waiting import wait_for

# About 4 minutes of speech: far more than a socket's buffers hold, so an unread stream blocks.
ENDLESS = " ".join(["word"] * 700)

SPEECH = (
    b"POST /v1/audio/speech HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\n"
)


def exchange(port: int, data: bytes, timeout: float = 30) -> bytes:
    """Send raw bytes, return everything the server sends until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def stalled_reader(port: int, text: str = ENDLESS) -> socket.socket:
    """A client that asks for a long stream and never reads it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps({"input": text, "stream": True, "response_format": "pcm"}).encode()
    s.sendall(SPEECH + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return s


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n", "8190 bytes"),
        (b"G@T /health HTTP/1.1\r\n\r\n", "method"),
        (SPEECH + b"Content-Length: ten\r\n\r\n", "Content-Length"),
    ],
    ids=["10KB-header", "bad-method", "bad-content-length"],
)
def test_parser_errors_are_json(sidecar: SidecarProcess, raw: bytes, says: str) -> None:
    status, headers, body = split(exchange(sidecar.port, raw))
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == "http_400" and says in error["message"]
    assert "Traceback" not in sidecar.log()


def test_405_says_which_methods(sidecar: SidecarProcess) -> None:
    status, headers, body = split(exchange(sidecar.port, b"PUT /v1/audio/speech HTTP/1.0\r\n\r\n"))
    assert status == 405 and headers["allow"] == "POST"
    assert json.loads(body)["error"]["code"] == "http_405"


def test_401_names_the_scheme(make_sidecar) -> None:  # type: ignore[no-untyped-def]
    process: SidecarProcess = make_sidecar(api_key="a-long-enough-test-key")
    status, headers, _ = split(exchange(process.port, b"GET /v1/audio/voices HTTP/1.0\r\n\r\n"))
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")


def test_half_a_header_is_closed_with_a_408(make_sidecar) -> None:  # type: ignore[no-untyped-def]
    process: SidecarProcess = make_sidecar(args=["--header-timeout", "0.5"])
    status, _, body = split(exchange(process.port, b"GET /health HTTP/1.1\r\nHost: t\r\n"))
    assert status == 408 and json.loads(body)["error"]["code"] == "header_timeout"
    # A connection that never sends anything is closed too.
    assert split(exchange(process.port, b""))[0] == 408
    # A client stalled for 0.5 s between connecting and sending would get a 408 here too.
    wait_for(lambda: process.health()[0] == 200, "health answers a whole request")


def test_connections_past_the_cap_get_a_503(make_sidecar) -> None:  # type: ignore[no-untyped-def]
    process: SidecarProcess = make_sidecar(args=["--max-connections", "3"])
    idle = [socket.create_connection(("127.0.0.1", process.port)) for _ in range(3)]
    try:
        status, headers, body = split(exchange(process.port, b"GET /health HTTP/1.0\r\n\r\n"))
        assert status == 503 and headers["retry-after"] == "1"
        assert json.loads(body)["error"]["code"] == "too_many_connections"
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: process.health()[0] == 200, "health answers once the idle ones are gone")


def test_a_client_that_never_reads_is_cut(make_sidecar) -> None:  # type: ignore[no-untyped-def]
    process: SidecarProcess = make_sidecar(args=["--write-timeout", "0.5"])
    with stalled_reader(process.port):
        wait_for(
            lambda: (
                process.metrics().value("s2_streams_aborted_total", reason="write_timeout") == 1
            ),
            "the stalled stream is cut",
        )
        wait_for(lambda: process.metrics()["s2_active_streams"] == 0, "its generation stopped")


def test_overload_is_refused_at_once_with_retry_after(make_sidecar) -> None:  # type: ignore[no-untyped-def]
    process: SidecarProcess = make_sidecar(args=["--max-concurrency", "1", "--queue-size", "0"])
    with stalled_reader(process.port):
        wait_for(lambda: process.metrics()["s2_active_streams"] == 1, "the first stream runs")
        body = json.dumps({"input": "Hello there.", "response_format": "pcm"}).encode()
        raw = exchange(process.port, SPEECH + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        status, headers, body = split(raw)
        assert status == 503 and headers["retry-after"] == "1"
        assert json.loads(body)["error"]["code"] == "overloaded"
        metrics = process.metrics()
        assert metrics.value("s2_rejected_total", reason="queue_full") == 1
        assert metrics["s2_admission_limit"] == 1


def test_sigterm_drains_then_cuts_stalled_streams(make_sidecar) -> None:  # type: ignore[no-untyped-def]
    process: SidecarProcess = make_sidecar(args=["--drain-timeout", "0.5"])
    clients = [stalled_reader(process.port) for _ in range(2)]
    try:
        wait_for(lambda: process.metrics()["s2_active_streams"] == 2, "both streams run")
        # SIGTERM; a SIGKILL follows after 30 s (exit code -9) if the drain hangs.
        assert process.stop() == 0, process.log()
        assert "cutting 2 streams" in process.log()
    finally:
        for s in clients:
            s.close()


def test_the_aiohttp_members_the_server_builds_on_are_still_there() -> None:
    """httpserver.py relies on RequestHandler members aiohttp does not document; pyproject pins
    aiohttp below the next minor, and this names what changed when a new one is let in."""
    handle_error = inspect.signature(RequestHandler.handle_error).parameters
    assert list(handle_error) == ["self", "request", "status", "exc", "message"]
    assert list(inspect.signature(RequestHandler.data_received).parameters) == ["self", "data"]
    assert "keepalive_timeout" in inspect.signature(RequestHandler.__init__).parameters
    for member in ("connection_made", "connection_lost", "close", "transport"):
        assert hasattr(RequestHandler, member), member
    assert isinstance(inspect.getattr_static(web.Server, "connections"), property)
    assert isinstance(inspect.getattr_static(StreamWriter, "output_size"), int)
