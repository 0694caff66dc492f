"""Shared fixtures: the real sidecar, as a process, for every test that needs one.

- `sidecar` (session): one preview-engine sidecar with the test persona `joe` registered from
  `examples/personas/personas.toml`, which OpenAI's voice names `alloy` and `ash` stand for.
  Use `sidecar.url`, `sidecar.persona`, `sidecar.metrics()` (see support/metrics.py),
  `sidecar.health()`, `sidecar.log()`. Don't restart or delete `joe`
  on it: other tests share it.
- `cast_sidecar` (session): a preview sidecar with the three-person test cast of
  support/cast.py (`ava`, `ben`, `cy`, told apart by pitch).
- `make_sidecar` (function): starts private sidecars for tests that restart, stop or
  reconfigure one: `make_sidecar(engine="preview", personas=None, api_key=None, args=())`.
  Each gets its own store in the test's tmp_path and is stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import cast
from support.sidecar import PERSONAS_TOML, SidecarProcess


@pytest.fixture(scope="session")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    root = tmp_path_factory.mktemp("sidecar")
    aliases = ["--voice-alias", "alloy=joe", "--voice-alias", "ash=joe"]
    with SidecarProcess(root / "store", personas=PERSONAS_TOML, args=aliases) as process:
        yield process


@pytest.fixture(scope="session")
def cast_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    root = tmp_path_factory.mktemp("cast")
    with SidecarProcess(root / "store", personas=cast.write_personas(root / "clips")) as process:
        yield process


@pytest.fixture
def make_sidecar(tmp_path: Path) -> Iterator[Callable[..., SidecarProcess]]:
    started: list[SidecarProcess] = []

    def make(*, start: bool = True, store: Path | None = None, **kwargs: Any) -> SidecarProcess:
        process = SidecarProcess(store or tmp_path / f"store{len(started)}", **kwargs)
        started.append(process)
        return process.start() if start else process

    yield make
    for process in started:
        process.stop()
