"""Run the real `s2-sidecar serve` as a subprocess for tests.

with SidecarProcess(store=tmp_path / "store", personas=PERSONAS_TOML) as sidecar:
    sidecar.url, sidecar.metrics()["s2_active_streams"], sidecar.restart()
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
from s2_sidecar.cli import API_KEY_ENV

from s2_plugin.protocol import HEALTH_PATH, METRICS_PATH
from support.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PERSONAS_TOML = ROOT / "examples" / "personas" / "personas.toml"
"""The shipped test persona `joe` (synthetic, made with the preview voice)."""
TEST_PERSONA = "joe"

_LOGS = itertools.count()


def free_port() -> int:
    """A port free now. Whoever binds it later may find it taken by then: for a process a test
    starts, prefer `--port 0` and `listening_port` (as `SidecarProcess` does)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port where a server is dead, for the block: a connect is refused. The port stays bound
    (never listening) meanwhile, so no other process can start listening on it, as it could on
    a `free_port()`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def listening_port(pid: int) -> int:
    """The TCP port process `pid` listens on; 0 while it listens on none (yet)."""
    try:
        sockets = psutil.Process(pid).net_connections("tcp")
    except psutil.Error:
        return 0
    ports = {c.laddr.port for c in sockets if c.status == psutil.CONN_LISTEN}
    assert len(ports) <= 1, f"process {pid} listens on several ports: {ports}"
    return ports.pop() if ports else 0


class SidecarProcess:
    """One sidecar process on a free loopback port; `start()`, `stop()`, `restart()`.

    The first start binds port 0 and `port` is read off the process's listening socket, so no
    other process can take the port between choosing and binding it; a restart keeps the port.
    Its output goes to `log_path`; `log()` reads it (handy in assertion messages).
    """

    def __init__(
        self,
        store: Path,
        *,
        engine: str = "preview",
        personas: Path | None = None,
        api_key: str | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        program: Sequence[str] = (sys.executable, "-m", "s2_sidecar"),
    ) -> None:
        self.store = store
        self.engine = engine
        self.personas = personas
        self.api_key = api_key
        self.args = list(args)
        self.env = env or {}
        self.program = list(program)
        self.port = 0
        """0 until the first start has bound one."""
        self.log_path = store.parent / f"sidecar-{next(_LOGS)}.log"
        self.persona = TEST_PERSONA if personas == PERSONAS_TOML else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        cmd = [*self.program, "serve", "--engine", self.engine]
        cmd += ["--port", str(self.port), "--store", str(self.store)]
        if self.personas:
            cmd += ["--personas", str(self.personas)]
        return cmd + self.args

    def start(self, timeout: float = 60.0) -> SidecarProcess:
        """Start the process and wait until /health says ready."""
        self.store.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._environment(),
            cwd=ROOT,
        )
        log.close()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()  # a sidecar that never got ready must not outlive the test
            raise
        return self

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
        if self.api_key:
            env[API_KEY_ENV] = self.api_key  # not --api-key: that shows in `ps`
        return {**env, **self.env}

    def wait_ready(self, timeout: float = 60.0) -> dict[str, object]:
        """Poll /health until it answers 200; return its body."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"the sidecar exited during start:\n{self.log()}")
            self.port = self.port or listening_port(self._proc.pid)
            try:
                if self.port:
                    with urllib.request.urlopen(self.url + HEALTH_PATH, timeout=10) as r:
                        return dict(json.load(r))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sidecar was not ready in {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def health(self) -> tuple[int, dict[str, object]]:
        """/health's status code and body, whatever the state."""
        try:
            with urllib.request.urlopen(self.url + HEALTH_PATH, timeout=30) as r:
                return r.status, dict(json.load(r))
        except urllib.error.HTTPError as e:
            return e.code, dict(json.load(e))

    def metrics(self) -> Metrics:
        with urllib.request.urlopen(self.url + METRICS_PATH, timeout=30) as r:
            return Metrics(r.read().decode())

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it is still running 30 s later (a hang guard: a drain takes
        its `--drain-timeout`); returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        proc.terminate()
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def restart(self, timeout: float = 60.0) -> SidecarProcess:
        self.stop()
        return self.start(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
