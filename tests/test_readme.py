"""The README's Quickstart, run as written against a real sidecar (only its address changes)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import soundfile as sf
from s2_sidecar.cli import URL_ENV, _parser
from support.checkout import ROOT
from support.sidecar import SidecarProcess

DOCUMENTED_URL = "http://127.0.0.1:8421"


def quickstart_blocks() -> list[str]:
    """The shell blocks of the README's Quickstart, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [block.replace("\\\n", " ") for block in blocks]


def test_the_quickstart_serves_with_flags_serve_takes() -> None:
    start, _ = quickstart_blocks()
    (serve,) = [line for line in start.splitlines() if line.startswith("s2-sidecar serve")]
    args = _parser().parse_args(shlex.split(serve, comments=True)[1:])
    assert args.personas == Path("examples/personas/personas.toml")
    assert (ROOT / args.personas).is_file()
    assert ". .venv/bin/activate" in start  # what puts s2-sidecar on PATH after `make demo`


def test_the_quickstart_speaks_through_curl_and_the_cli(
    sidecar: SidecarProcess, tmp_path: Path
) -> None:
    _, speak = quickstart_blocks()
    env = {
        **os.environ,
        URL_ENV: sidecar.url,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-euc", speak.replace(DOCUMENTED_URL, sidecar.url)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name, kind in (("hello.mp3", "MP3"), ("hello.wav", "WAV")):
        info = sf.info(tmp_path / name)
        assert info.format == kind and info.duration > 1.0, name
