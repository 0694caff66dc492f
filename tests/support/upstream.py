"""The SGLang-Omni stand-in as the sidecar's engine: launch flags, weights, control endpoints."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import aiohttp
import psutil

from support.sidecar import PERSONAS_TOML, SidecarProcess, listening_port

STANDIN = Path(__file__).resolve().parent / "sglang_standin.py"


def standin_port(sidecar: SidecarProcess) -> int:
    """The port of the stand-in `sidecar` launched. The sidecar picks a free one at each launch
    (`--sglang-port 0`), so a port taken meanwhile costs a relaunch rather than the test."""
    assert sidecar.pid is not None, "start the sidecar first"
    children = psutil.Process(sidecar.pid).children()
    ports = [port for child in children if (port := listening_port(child.pid))]
    assert len(ports) == 1, f"the sidecar has {len(ports)} SGLang-Omni processes serving"
    return ports[0]


class Upstream:
    """Talks to the stand-in's control endpoints, wherever the sidecar launched it last."""

    def __init__(self, sidecar: SidecarProcess) -> None:
        self.sidecar = sidecar

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{standin_port(self.sidecar)}"

    async def control(self, **settings: object) -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.post(self.url + "/standin/control", json=settings),
        ):
            pass

    async def state(self) -> dict[str, object]:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/standin/state") as r:
            return dict(await r.json())

    async def raw_bodies(self) -> list[str]:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/standin/requests") as r:
            return list(await r.json())

    async def bodies(self) -> list[dict[str, object]]:
        return [json.loads(raw) for raw in await self.raw_bodies()]


def hub_cache(root: Path, model: str = "fishaudio/s2-pro") -> Path:
    """A Hugging Face cache holding `model`'s snapshot, as `s2-sidecar download` leaves it."""
    repo = root / ("models--" + model.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    return snapshot


def standin_args() -> list[str]:
    """`s2-sidecar serve` flags that launch the stand-in as SGLang-Omni, quickly."""
    return [
        "--sglang-command", shlex.join([sys.executable, str(STANDIN)]),
        "--sglang-read-timeout", "1",
        "--sglang-backoff", "0.2",
        "--sglang-health-interval", "0.3",
        "--stream-stride", "4",
    ]  # fmt: skip


def standin_sidecar(root: Path) -> tuple[SidecarProcess, Upstream]:
    """A sidecar on the `sglang_omni` engine, its SGLang-Omni the stand-in (not yet started)."""
    hub_cache(root / "hub")
    sidecar = SidecarProcess(
        root / "store",
        engine="sglang_omni",
        personas=PERSONAS_TOML,
        args=standin_args(),  # SGLang-Omni silent for 1 s counts as stalled
        env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root / "hub")},
    )
    return sidecar, Upstream(sidecar)
