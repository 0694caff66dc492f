"""SGLang-Omni's real router (`sgl-omni-router-py`) over stand-in workers, as processes on loopback.

with Fleet(3, tmp_path) as fleet:
    fleet.router_url, fleet.workers[0].kill(), fleet.workers[0].start(), fleet.wait_routable(3)

A worker binds port 0 on its first start and its port is read off its listening socket
(nothing can take it between choosing and binding); started again, it keeps its port. The
router refuses `--port 0`: it gets a `free_port()`, which another process may take first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support.sidecar import free_port, listening_port

STANDIN = Path(__file__).resolve().parent / "sglang_standin.py"
ROUTER = shutil.which("sgl-omni-router-py", path=str(Path(sys.executable).parent))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def post_json(url: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=30).close()


def _serving(proc: subprocess.Popen[bytes], port: int, path: str, what: str) -> int:
    """Wait until `proc` answers `path`; return its port (read off the process if `port` is 0)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        port = port or listening_port(proc.pid)
        try:
            if port:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).close()
                return port
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not answer {path} on port {port} in 60 s")


class Worker:
    """One stand-in S2 worker on a fixed port, so it can be killed and started again."""

    def __init__(self, log: Path, stride: int = 4) -> None:
        self.port = 0
        self.log = log
        self.stride = stride
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Worker:
        argv = [sys.executable, str(STANDIN), "serve", "--model-path", "m", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--vocoder.factory.stream_stride", str(self.stride)]
        env = {**os.environ, "SGLANG_OMNI_STRICT_PORT": "1", "STANDIN_STARTING_S": "0"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.port = _serving(self.proc, self.port, "/health", "stand-in worker")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def control(self, **settings: object) -> None:
        post_json(self.url + "/standin/control", settings)

    def state(self) -> dict[str, Any]:
        return dict(get_json(self.url + "/standin/state"))

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in get_json(self.url + "/standin/requests")]


class Fleet:
    """`n` stand-in workers behind one real router (least_request, fast health checks)."""

    def __init__(self, n: int, root: Path, *router_args: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.workers = [Worker(root / f"worker-{i}.log") for i in range(n)]
        self.port = free_port()
        self.router_args = list(router_args)
        self.router: subprocess.Popen[bytes] | None = None

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Fleet:
        assert ROUTER, "sgl-omni-router-py is missing: make install"
        for worker in self.workers:
            worker.start()
        argv = [ROUTER, "--host", "127.0.0.1", "--port", str(self.port), "--worker-urls"]
        argv += [w.url for w in self.workers]
        argv += ["--policy", "least_request", "--health-check-interval-secs", "1"]
        argv += ["--health-failure-threshold", "1", "--health-success-threshold", "1"]
        argv += ["--health-check-timeout-secs", "1", "--log-level", "warning"]
        with (self.root / "router.log").open("ab") as out:
            self.router = subprocess.Popen(
                argv + self.router_args, stdout=out, stderr=subprocess.STDOUT
            )
        self.port = _serving(self.router, self.port, "/live", "router")
        self.wait_routable(len(self.workers))
        return self

    def routable(self) -> list[str]:
        listing = get_json(self.router_url + "/workers")
        return [w["url"] for w in listing["workers"] if w["routable"]]

    def routed(self, worker: Worker) -> int:
        """How many requests the router has sent to `worker` so far."""
        listing = get_json(self.router_url + "/workers")
        return sum(w["routed_requests"] for w in listing["workers"] if w["url"] == worker.url)

    def wait_routable(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.routable()) != n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the router never had {n} routable workers: {self.routable()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.router and self.router.poll() is None:
            self.router.terminate()
            try:
                self.router.wait(10)
            except subprocess.TimeoutExpired:
                self.router.kill()
        for worker in self.workers:
            worker.kill()

    def __enter__(self) -> Fleet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *_: object) -> None:
        self.stop()
