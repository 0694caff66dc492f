"""Run the real `s2-sidecar serve` as a subprocess for tests.

with SidecarProcess(store=tmp_path / "store", personas=PERSONAS_TOML) as sidecar:
    sidecar.url, sidecar.metrics()["s2_active_streams"], sidecar.restart()
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from s2_sidecar.cli import API_KEY_ENV

from s2_plugin.protocol import HEALTH_PATH, METRICS_PATH
from support.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PERSONAS_TOML = ROOT / "examples" / "personas" / "personas.toml"
"""The shipped test persona `joe` (synthetic, made with the preview voice)."""
TEST_PERSONA = "joe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SidecarProcess:
    """One sidecar process on a free loopback port; `start()`, `stop()`, `restart()`.

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
        self.port = free_port()
        self.log_path = store.parent / f"sidecar-{self.port}.log"
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
            try:
                with urllib.request.urlopen(self.url + HEALTH_PATH, timeout=2) as r:
                    return dict(json.load(r))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sidecar was not ready in {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def health(self) -> tuple[int, dict[str, object]]:
        """/health's status code and body, whatever the state."""
        try:
            with urllib.request.urlopen(self.url + HEALTH_PATH, timeout=5) as r:
                return r.status, dict(json.load(r))
        except urllib.error.HTTPError as e:
            return e.code, dict(json.load(e))

    def metrics(self) -> Metrics:
        with urllib.request.urlopen(self.url + METRICS_PATH, timeout=5) as r:
            return Metrics(r.read().decode())

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        proc.terminate()
        try:
            return proc.wait(10)
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
