"""A budget of bytes that requests hold while they read and decode large bodies."""

from __future__ import annotations

from types import TracebackType

from s2_sidecar.errors import Unavailable


class Budget:
    """Bytes of large request bodies (inline reference clips, persona uploads) held at once,
    across all requests: each costs several times its size while it is parsed and its clip
    decoded, and 256 connections of 16 MiB each would otherwise take gigabytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def hold(self) -> Hold:
        return Hold(self)


class Hold:
    """One request's share of a `Budget`, given back when its `with` block ends."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.bytes = 0

    def grow(self, size: int) -> None:
        """Hold `size` bytes in all; a 503 when the budget has no room."""
        more = size - self.bytes
        if more <= 0:
            return
        budget = self.budget
        # One body always fits, however large: the limit is on how many arrive at once.
        if budget.used and budget.used + more > budget.limit:
            raise Unavailable(
                f"{budget.used} bytes of reference clips are arriving at once, this sidecar's "
                f"limit is {budget.limit}; retry shortly, or register the voice once "
                "(POST /v1/audio/voices) and name it",
                "busy_with_references",
            )
        budget.used += more
        self.bytes = size

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.budget.used -= self.bytes
        self.bytes = 0
