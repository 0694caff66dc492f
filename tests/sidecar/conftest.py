"""Fixtures of the sidecar tests that run the sglang_omni engine against the SGLang-Omni stand-in.

- `s2` (module): a sidecar on the `sglang_omni` engine and the stand-in it launched.
- `upstream`: that stand-in, ready, reset to plain streaming.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.sidecar import SidecarProcess
from support.upstream import Upstream, standin_sidecar


@pytest.fixture(scope="module")
def s2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SidecarProcess, Upstream]]:
    sidecar, upstream = standin_sidecar(tmp_path_factory.mktemp("sglang"))
    with sidecar:
        yield sidecar, upstream


@pytest.fixture
async def upstream(s2: tuple[SidecarProcess, Upstream]) -> Upstream:
    sidecar, up = s2
    sidecar.wait_ready()
    await up.control(mode="ok", frame_s=0.0, stamp=False, rate=44100)
    return up
