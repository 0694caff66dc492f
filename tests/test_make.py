"""The Makefile: `make demo` installs the demo's packages only, and an old Python is refused
with what to do, before anything is installed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.checkout import clean_copy


def make(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_an_old_python_is_refused_with_what_to_do(tmp_path: Path) -> None:
    repo = clean_copy(tmp_path / "repo")
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "Python 3.10.12" && exit 0\nexit 1\n')
    old.chmod(0o755)
    done = make(repo, f"PYTHON={old}", "demo")
    assert done.returncode != 0
    assert f"needs Python 3.11 or newer; '{old}' is Python 3.10.12." in done.stderr
    assert "make PYTHON=python3.12 demo" in done.stderr
    assert not (repo / ".venv").exists()


def test_the_demo_installs_neither_the_test_stack_nor_a_browser(tmp_path: Path) -> None:
    repo = clean_copy(tmp_path / "repo")
    plan = make(repo, "-n", "demo").stdout  # what it would run, nothing run
    installs = [line for line in plan.splitlines() if " install " in line and "echo" not in line]
    assert installs == [
        ".venv/bin/python -m pip install -q --upgrade pip",
        ".venv/bin/python -m pip install -q -e '.[pipecat,server,preview]' "
        "'pipecat-ai[websocket]==1.14.0'",
    ]
    assert "chromium" not in plan and "playwright" not in plan
