"""SGLang-Omni 0.1.9 as a subprocess the sidecar launches on loopback and keeps alive.

Rules taken from the 0.1.9 wheel (paths inside `sglang_omni/`):
- `serve/launcher.py` `run_server`: stages must start within `SGLANG_OMNI_STARTUP_TIMEOUT`
  (600 s unless set), weights loading included; the sidecar sets it to its own limit.
- `config/patch.py` `ConfigPatchSet.require_no_conflicts`: a dotted flag given twice with two
  values refuses the launch, so flags the sidecar sets are refused in `--sglang-args`.
- `models/fishaudio_s2_pro/engine_builder.py` `generation_defaults`: at most 64 running
  requests (`max_running_requests`) unless `--tts_engine.engine.max_running_requests` says.
- `serve/launcher.py` `handle_sigterm`: SIGTERM stops the stage processes; SIGKILL orphans them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from s2_sidecar.engines.sglang_link import Link
from s2_sidecar.metrics import Metrics

log = logging.getLogger(__name__)

MODEL_PATH = "fishaudio/s2-pro"
"""S2-Pro's Hugging Face id: what `serve`, `download` and `doctor` use unless told otherwise."""

STRIDE_FLAG = "--vocoder.factory.stream_stride"
FOLLOWUP_FLAG = "--vocoder.factory.stream_followup_stride"
MEDIA_FLAG = "--allowed-local-media-path"
RUNNING_FLAG = "--tts_engine.engine.max_running_requests"
DEFAULT_MAX_RUNNING = 64
"""0.1.9's `max_running_requests` for S2 on CUDA (`engine_builder.py` `generation_defaults`)."""

_OWN_FLAGS = {
    "--model-path": "--model-path",
    "--host": "nothing (SGLang-Omni listens on loopback only)",
    "--port": "--sglang-port",
    STRIDE_FLAG: "--stream-stride",
    FOLLOWUP_FLAG: "--stream-followup-stride",
    MEDIA_FLAG: "--store (the persona store is the allowed directory)",
}
"""Flags the sidecar passes itself, and the sidecar option that sets each instead."""


@dataclass
class Launch:
    """How to run SGLang-Omni.

    Streaming strides are in codec frames (2048 samples, ~46 ms of audio each). SGLang-Omni
    decodes the first chunk after `stream_stride` frames (default 40: ~1.9 s of audio before
    anything plays) and then every `stream_followup_stride` (45). A small first stride cuts
    time to first audio by ~1.5 s; small follow-ups keep the buffer fed but cost more vocoder
    passes, since each pass re-decodes 20 frames of overlap. The first chunk must last as long
    as it takes to generate the next: at S2's RTF of ~0.35 (H200, batch 1) 8 frames (370 ms)
    cover 16 more (740 ms of audio in ~260 ms), with slack for RTF up to 0.5 under load.
    """

    command: list[str] = field(default_factory=lambda: ["sgl-omni"])
    model_path: str = MODEL_PATH
    """A Hugging Face id (fetched into the local cache before launch) or a local directory."""
    port: int = 0
    """Loopback port for SGLang-Omni; 0 picks a free one at each launch."""
    stream_stride: int = 8
    stream_followup_stride: int = 16
    extra_args: list[str] = field(default_factory=list)
    media_dir: Path | None = None
    """The persona store: SGLang-Omni may read reference clips there and nowhere else."""
    startup_timeout: float = 900.0
    """Loading weights, capturing CUDA graphs and compiling take minutes on a cold GPU."""
    read_timeout: float = 30.0
    """Longest silence tolerated from SGLang-Omni inside a request before it is called stalled."""
    backoff: tuple[float, float] = (1.0, 60.0)
    """First and longest wait before relaunching a process that died."""
    health_interval: float = 10.0
    """How often a ready SGLang-Omni's /health is checked; a check slower than this fails."""
    health_failures: int = 3
    """Failed checks in a row after which a wedged process (alive, not answering) is relaunched."""

    def __post_init__(self) -> None:
        for arg in self.extra_args:
            flag = arg.split("=", 1)[0]
            if flag in _OWN_FLAGS:
                raise ValueError(
                    f"--sglang-args must not set {flag}: the sidecar sets it, and SGLang-Omni "
                    f"0.1.9 refuses to start when a flag is given twice with two values; "
                    f"use {_OWN_FLAGS[flag]} instead"
                )

    @property
    def max_running_requests(self) -> int:
        """SGLang-Omni's cap on requests generating at once, as this launch configures it."""
        args = self.extra_args
        for i, arg in enumerate(args):
            flag, _, value = arg.partition("=")
            if flag == RUNNING_FLAG:
                with contextlib.suppress(ValueError, IndexError):
                    return int(value or args[i + 1])
        return DEFAULT_MAX_RUNNING

    def argv(self, port: int, model_dir: str) -> list[str]:
        media = [MEDIA_FLAG, str(self.media_dir.resolve())] if self.media_dir else []
        return [
            *self.command,
            "serve",
            "--model-path",
            model_dir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            STRIDE_FLAG,
            str(self.stream_stride),
            FOLLOWUP_FLAG,
            str(self.stream_followup_stride),
            *media,
            *self.extra_args,
        ]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            # Fail on a busy port instead of moving to a random one (`find_available_port`).
            "SGLANG_OMNI_STRICT_PORT": "1",
            # The weights are local by now, but stage start still loads and compiles them.
            "SGLANG_OMNI_STARTUP_TIMEOUT": str(self.startup_timeout),
        }


class Supervisor:
    """Launches SGLang-Omni, reports it ready, relaunches it (with backoff) when it dies or
    stops answering /health."""

    def __init__(self, launch: Launch, link: Link, metrics: Metrics) -> None:
        self.launch = launch
        self.link = link
        self.metrics = metrics
        self._proc: asyncio.subprocess.Process | None = None

    async def run(self) -> None:
        first, longest = self.launch.backoff
        delay = first
        link = self.link
        while True:
            ready_at: float | None = None
            model_dir = await self._weights()
            if model_dir is None:
                why = link.detail or "could not fetch the weights"
            else:
                port = self.launch.port or _free_port()
                link.base_url = f"http://127.0.0.1:{port}"
                link.status, link.detail = "starting", f"launching SGLang-Omni on port {port}"
                argv = self.launch.argv(port, model_dir)
                log.info("launching %s", " ".join(argv))
                # Its own session, so that stopping it also stops the stage processes it spawns;
                # and a parent-death signal, so that a SIGKILLed sidecar leaves no GPU held.
                self._proc = await asyncio.create_subprocess_exec(
                    *argv,
                    env=self.launch.env(),
                    start_new_session=True,
                    preexec_fn=_die_with_parent(os.getpid()),
                )
                ready_at = await self._wait_healthy(self._proc)
                if ready_at is not None:
                    link.ready()
                    why = await self._watch(self._proc)
                else:
                    why = f"exited with code {await self._proc.wait()}"
            if ready_at is not None and time.monotonic() - ready_at > longest:
                delay = first  # it ran well for a while: this is a fresh failure
            link.status = "unhealthy"
            link.detail = f"SGLang-Omni {why}; restarting in {delay:.1f} s"
            log.error(link.detail)
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)
            self.metrics.engine_restarts.inc()

    async def terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def _weights(self) -> str | None:
        """A local directory holding the weights, fetched first if need be; None if not possible.

        0.1.9 downloads inside stage start (`utils/checkpoint.py`), under its start-up timeout:
        a first download on a slow link would time out and be relaunched forever.
        """
        path = self.launch.model_path
        if Path(path).is_dir():
            return path
        self.link.status = "starting"
        self.link.detail = f"fetching the {path} weights (first start)"
        try:
            from huggingface_hub import snapshot_download

            return str(await asyncio.to_thread(snapshot_download, path))
        except Exception as e:  # the hub raises many kinds: offline, auth, disk full
            self.link.detail = (
                f"could not fetch the {path} weights ({type(e).__name__}: {e}); run "
                f"`s2-sidecar download --model {path}` or pass --model-path DIR"
            )
            return None

    async def _watch(self, proc: asyncio.subprocess.Process) -> str:
        """Wait for a ready process to end; kill it if it stops answering /health.

        A wedged SGLang-Omni (a stuck scheduler, a hung GPU) never exits by itself, and every
        request to it would stall until its read timeout: killing it lets the supervisor relaunch.
        """
        interval, limit = self.launch.health_interval, self.launch.health_failures
        loop = asyncio.get_running_loop()
        failures, next_check = 0, loop.time() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                code = await asyncio.wait_for(proc.wait(), max(0.0, next_check - loop.time()))
                return f"exited with code {code}"
            # A slow check eats into the next period, so a wedge is found within limit + 1 periods.
            next_check += interval
            failures = 0 if await self.link.healthy(timeout=interval) else failures + 1
            if failures >= limit:
                log.error("SGLang-Omni failed %d health checks in a row; killing it", failures)
                await self.terminate()
                return f"stopped answering /health ({failures} checks in a row)"

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> float | None:
        """Poll /health until 200; None if the process died or never became healthy."""
        deadline = time.monotonic() + self.launch.startup_timeout
        while proc.returncode is None:
            if await self.link.healthy(timeout=5):
                return time.monotonic()
            if time.monotonic() > deadline:
                log.error("SGLang-Omni not healthy after %.0f s", self.launch.startup_timeout)
                await self.terminate()
                return None
            await asyncio.sleep(0.2)
        return None


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A `preexec_fn` that makes the child get SIGTERM when the sidecar dies, however it dies.

    SIGTERM rather than SIGKILL: 0.1.9's `launch_server` handles SIGTERM by stopping its stage
    processes (`serve/launcher.py` `handle_sigterm`), which a SIGKILL would orphan on the GPU.
    """
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: nothing to load in the child

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the sidecar died before prctl took effect
            os._exit(1)

    return preexec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
