"""`s2-sidecar bench` against the real preview sidecar and against the bare SGLang-Omni stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.sidecar import SidecarProcess, free_port
from support.upstream import standin_sidecar

STANDIN = Path(__file__).resolve().parents[1] / "support" / "sglang_standin.py"


def bench(url: str, *args: str) -> tuple[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "s2_sidecar", "bench", "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table, _, last = done.stdout.rstrip().rpartition("\n")
    return table, json.loads(last)


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, str(STANDIN), "serve", "--model-path", "m", "--port", str(port)]
    argv += ["--host", "127.0.0.1", "--vocoder.factory.stream_stride", "8"]
    env = {**os.environ, "SGLANG_OMNI_STRICT_PORT": "1", "STANDIN_STARTING_S": "0"}
    proc = subprocess.Popen(argv, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_bench_against_the_preview_sidecar(tmp_path: Path) -> None:
    with SidecarProcess(tmp_path / "store") as sidecar:
        table, report = bench(sidecar.url, "--streams", "1,2", "--rounds", "1", "--warm-runs", "2")
        voices = urllib.request.urlopen(sidecar.url + "/v1/audio/voices").read()
    assert report["target"] == "sidecar"
    assert report["cold_ttfa_ms"] > 0 and report["warm_ttfa_ms"] > 0 and report["rtf"] > 0
    sweep = report["sweep"]
    assert [(lv["streams"], lv["requests"], lv["errors"]) for lv in sweep] == [(1, 1, 0), (2, 2, 0)]
    assert all(0 <= lv["gap_free"] <= 1 and lv["ttfa_p95_ms"] >= lv["ttfa_p50_ms"] for lv in sweep)
    assert "TTFA p50 ms" in table and "Fish Audio ~100 ms" in table
    assert b"bench-" not in voices  # its persona is removed afterwards


def test_bench_against_a_bare_sglang_omni(standin: str) -> None:
    _, report = bench(standin, "--streams", "1,4", "--rounds", "2", "--warm-runs", "2")
    assert report["target"] == "sglang-omni"
    assert [(lv["streams"], lv["requests"], lv["errors"]) for lv in report["sweep"]] == [
        (1, 2, 0),
        (4, 8, 0),
    ]
    # The stand-in sends audio far faster than real time: no stream runs dry.
    assert all(lv["gap_free"] == 1.0 for lv in report["sweep"])
    with urllib.request.urlopen(standin + "/standin/requests") as r:
        bodies = [json.loads(b) for b in json.load(r)]
    (reference,) = bodies[0]["references"]
    assert reference["media_type"] == "audio/flac"  # inline, and it decoded (else a 500)
    assert len(bodies) == 1 + 2 + 2 + 8


async def test_bench_runs_the_call_load_through_a_sidecar(tmp_path: Path) -> None:
    sidecar, _ = standin_sidecar(tmp_path)
    with sidecar:
        sidecar.wait_ready()
        args = ["--streams", "1", "--rounds", "1", "--warm-runs", "1"]
        table, report = bench(sidecar.url, *args, "--calls", "2,3", "--call-seconds", "1")
    loads = report["calls"]
    assert isinstance(loads, list)
    assert [(load["calls"], load["errors"], load["refused"]) for load in loads] == [
        (2, 0, 0),
        (3, 0, 0),
    ]
    assert all(load["replies"] >= load["calls"] and load["played_s"] > 0 for load in loads)
    assert "call load" in table
