"""`s2-sidecar bench` against the real preview sidecar and against the bare SGLang-Omni stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.router import Worker
from support.sidecar import SidecarProcess
from support.upstream import standin_sidecar


def bench(url: str, *args: str) -> tuple[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "s2_sidecar", "bench", "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table, _, last = done.stdout.rstrip().rpartition("\n")
    return table, json.loads(last)


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[str]:
    worker = Worker(tmp_path / "standin.log", stride=8)
    try:
        yield worker.start().url
    finally:
        worker.kill()


def test_bench_against_the_preview_sidecar(tmp_path: Path) -> None:
    with SidecarProcess(tmp_path / "store") as sidecar:
        table, report = bench(sidecar.url, "--streams", "1,2", "--rounds", "1", "--warm-runs", "2")
        voices = urllib.request.urlopen(sidecar.url + "/v1/audio/voices").read()
    assert report["target"] == "sidecar"
    assert report["cold_ttfa_ms"] > 0 and report["warm_ttfa_ms"] > 0 and report["rtf"] > 0
    sweep = report["sweep"]
    assert [(lv["streams"], lv["requests"], lv["errors"]) for lv in sweep] == [(1, 1, 0), (2, 2, 0)]
    assert all(0 <= lv["gap_free"] <= 1 and lv["ttfa_p95_ms"] >= lv["ttfa_p50_ms"] for lv in sweep)
    assert report["engine"] == "preview"
    # Labelled loudly, and never printed beside S2's published numbers.
    assert table.startswith("PREVIEW ENGINE") and "not S2-Pro" in table
    assert "TTFA p50 ms" in table and "Fish Audio" not in table
    assert b"bench-" not in voices  # its persona is removed afterwards


def test_bench_against_a_bare_sglang_omni(standin: str) -> None:
    table, report = bench(standin, "--streams", "1,4", "--rounds", "2", "--warm-runs", "2")
    assert report["target"] == "sglang-omni"
    assert "Fish Audio ~100 ms" in table and "PREVIEW" not in table
    assert [(lv["streams"], lv["requests"], lv["errors"]) for lv in report["sweep"]] == [
        (1, 2, 0),
        (4, 8, 0),
    ]
    # The stand-in sends all its audio at once, yet a reader stalled for a chunk's length (a
    # loaded machine) counts as a gap: how many are gap-free is a measurement, not asserted.
    assert all(0 <= lv["gap_free"] <= 1 for lv in report["sweep"])
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
