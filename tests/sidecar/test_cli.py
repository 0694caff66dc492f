"""The `s2-sidecar` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf
from support.sidecar import PERSONAS_TOML, SidecarProcess, free_port


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s2_sidecar", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_refuses_a_public_address_without_an_api_key(tmp_path: Path) -> None:
    done = cli("serve", "--host", "0.0.0.0", "--engine", "preview", "--store", str(tmp_path))
    assert done.returncode == 2
    assert "without an API key" in done.stderr and "--api-key" in done.stderr


def test_say_writes_a_44k_wav(sidecar: SidecarProcess, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    done = cli("say", "Good morning.", "--persona", "joe", "-o", str(out), "--url", sidecar.url)
    assert done.returncode == 0, done.stderr
    x, rate = sf.read(out, dtype="int16")
    assert rate == 44100 and 0.5 < len(x) / rate < 3


def test_personas_add_list_rm(sidecar: SidecarProcess) -> None:
    clip = str(PERSONAS_TOML.parent / "joe.wav")
    url = ["--url", sidecar.url]
    added = cli("personas", *url, "add", "joe-cli", clip, "--transcript", "Hi, I'm Joe.")
    assert added.returncode == 0, added.stderr
    assert "joe-cli" in cli("personas", *url, "list").stdout
    assert cli("personas", *url, "rm", "joe-cli").returncode == 0
    assert "joe-cli" not in cli("personas", *url, "list").stdout


def test_unreachable_sidecar_is_a_clear_error(tmp_path: Path) -> None:
    done = cli("say", "Hi.", "--url", "http://127.0.0.1:9", "-o", str(tmp_path / "x.wav"))
    assert done.returncode == 1 and "s2-sidecar serve" in done.stderr


def test_download_without_a_reachable_hub_says_what_to_do(tmp_path: Path) -> None:
    # A hub on a closed loopback port and an empty cache: offline, whatever this machine reaches.
    hub = {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HOME": str(tmp_path / "hf")}
    done = cli("download", env=hub)
    assert done.returncode == 2, done.stderr
    assert "cannot download fishaudio/s2-pro" in done.stderr
    assert "connect to the internet" in done.stderr
    assert "Traceback" not in done.stderr
