"""How the sidecar's HTTP server bounds its clients: timeouts, sizes, admission, shutdown.

Every number is a `s2-sidecar serve` flag; docs/api.md ("Limits and timeouts") says why each
default is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers (from its first byte, or from
    connecting); slower ones get a 408 and are closed."""
    body_timeout: float = 30.0
    """Seconds to receive a request body (a 20 MB upload at 8 Mbit/s fits)."""
    write_timeout: float = 15.0
    """Seconds a client may leave audio unread before its stream is cut and its generation
    stopped (longer than any player's buffer, shorter than a client's read timeout)."""
    keepalive_timeout: float = 75.0
    """Seconds an idle keep-alive connection stays open; longer than the plugin's 30 s pool."""
    max_connections: int = 256
    """Open connections at most; more get a 503 at once (well under a 1024-file limit)."""
    max_speech_body: int = 64 * 1024
    """Bytes of a speech request without inline reference audio (text is at most 4096
    characters: 16 KiB of UTF-8 plus its JSON)."""
    max_reference_body: int = 16 * 1024 * 1024
    """Bytes of a speech request that carries inline reference audio (base64)."""
    reference_budget: int = 32 * 1024 * 1024
    """Bytes of large bodies (inline reference clips, persona uploads) being read and decoded at
    once, across all requests; more get a 503. A 16 MiB body costs about 90 MB while it is
    parsed and its clip decoded: two of the largest at once, or thirty of 1 MiB."""
    max_concurrency: int | None = None
    """Generations at once; None takes the engine's own limit."""
    queue_size: int | None = None
    """Requests that may wait for a generation slot; None is as many as run at once."""
    queue_wait: float = 1.0
    """Seconds a queued request waits for a slot before its 503 (a look-ahead request from
    when it became ready)."""
    scheduling: str = "deadline"
    """Which request goes to the engine next: `deadline` (earliest due first, look-ahead held
    until `lead` before its due time) or `arrival` (first come, first served)."""
    lead: float = 0.75
    """Seconds before its due time a look-ahead request goes to the engine."""
    drain_timeout: float = 10.0
    """Seconds after SIGTERM for streams in flight to finish before they are cut."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names served besides this machine's own (`middleware.served_hosts`); "*": any."""
    allowed_origins: tuple[str, ...] = ()
    """Web page origins (`https://app.example`) besides the sidecar's own that may send
    requests that change something."""
