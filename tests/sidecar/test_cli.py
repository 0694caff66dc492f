"""The `s2-sidecar` command line."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from support.sidecar import PERSONAS_TOML, SidecarProcess, closed_port


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s2_sidecar", *args],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard: a loaded machine starts Python slowly
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


@pytest.mark.parametrize("suffix", [".ogg", ".aac"])
def test_say_writes_the_format_its_output_names(
    sidecar: SidecarProcess, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"out{suffix}"
    done = cli("say", "Good morning.", "--persona", "joe", "-o", str(out), "--url", sidecar.url)
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        codec = container.streams.audio[0].codec_context.name
        seconds = sum(f.samples / f.sample_rate for f in container.decode(audio=0))
    assert codec == {".ogg": "opus", ".aac": "aac"}[suffix] and 0.5 < seconds < 3


def test_say_refuses_an_output_it_cannot_write_before_speaking(tmp_path: Path) -> None:
    # No sidecar at this URL: the suffix is refused before any request.
    out = tmp_path / "out.aiff"
    done = cli("say", "Hi.", "--url", "http://127.0.0.1:9", "-o", str(out))
    assert done.returncode == 2 and "name the output *.wav, *.flac, *.mp3" in done.stderr
    assert not out.exists()


def test_a_name_taken_by_another_clip_tells_a_cli_user_about_replace(
    sidecar: SidecarProcess,
) -> None:
    clip = str(PERSONAS_TOML.parent / "joe.wav")
    done = cli("personas", "--url", sidecar.url, "add", "joe", clip, "--transcript", "Not it.")
    assert done.returncode == 2
    assert "add --replace to overwrite it" in done.stderr and "replace=true" not in done.stderr


def test_an_empty_persona_list_says_so(make_sidecar) -> None:  # type: ignore[no-untyped-def]
    empty = make_sidecar()
    done = cli("personas", "--url", empty.url, "list")
    assert done.returncode == 0 and done.stdout == ""
    assert "no personas on" in done.stderr and "s2-sidecar personas add" in done.stderr


def test_a_busy_port_is_one_clear_line(sidecar: SidecarProcess, tmp_path: Path) -> None:
    done = cli(
        "--log-level", "error", "serve", "--engine", "preview", "--port", str(sidecar.port),
        "--store", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"s2-sidecar: port {sidecar.port} on 127.0.0.1 is in use (is an s2-sidecar already "
        "running? `s2-sidecar doctor` says); stop what uses it, or pass --port"
    ]


def test_personas_add_list_rm(sidecar: SidecarProcess) -> None:
    clip = str(PERSONAS_TOML.parent / "joe.wav")
    url = ["--url", sidecar.url]
    added = cli("personas", *url, "add", "joe-cli", clip, "--transcript", "Hi, I'm Joe.")
    assert added.returncode == 0, added.stderr
    assert "joe-cli" in cli("personas", *url, "list").stdout
    assert cli("personas", *url, "rm", "joe-cli").returncode == 0
    assert "joe-cli" not in cli("personas", *url, "list").stdout


def test_unreachable_sidecar_is_a_clear_error(tmp_path: Path) -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        done = cli("say", "Hi.", "--url", url, "-o", str(tmp_path / "x.wav"))
    assert done.returncode == 1 and "s2-sidecar serve" in done.stderr


def test_download_without_a_reachable_hub_says_what_to_do(tmp_path: Path) -> None:
    # A hub on a closed loopback port and an empty cache: offline, whatever this machine reaches.
    with closed_port() as port:
        hub = {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
        done = cli("download", env=hub)
    assert done.returncode == 2, done.stderr
    assert "cannot download fishaudio/s2-pro" in done.stderr
    assert "connect to the internet" in done.stderr
    assert "Traceback" not in done.stderr


def test_narrate_writes_the_story_with_a_progress_bar(
    cast_sidecar: SidecarProcess, tmp_path: Path
) -> None:
    script = tmp_path / "story.txt"
    script.write_text("AVA: Good evening, and welcome.\nBEN: Thank you, it is good to be here.\n")
    out = tmp_path / "story.flac"
    done = cli(
        "narrate", str(script), "--cast", "ava,ben", "-o", str(out), "--url", cast_sidecar.url
    )
    assert done.returncode == 0, done.stderr
    assert "[" + "#" * 30 + "] 1/1 parts" in done.stderr
    x, rate = sf.read(out, dtype="int16")
    assert rate == 44100
    reported = float(done.stderr.rsplit(", ", 1)[1].removesuffix(" s\n"))
    assert abs(len(x) / rate - reported) < 0.01  # every sample it received is in the file


def test_narrate_reads_s2s_own_script_form_as_the_same_story(
    cast_sidecar: SidecarProcess, tmp_path: Path
) -> None:
    forms = {
        "names": "AVA: Good evening, and welcome.\nBEN: Thank you, it is good to be here.\n",
        "tags": "<|speaker:0|> Good evening, and welcome.\n<|speaker:1|> Thank you, it is good"
        " to be here.\n",
    }
    audio = {}
    for form, text in forms.items():
        script = tmp_path / f"{form}.txt"
        script.write_text(text)
        out = tmp_path / f"{form}.wav"
        args = ["narrate", str(script), "--cast", "ava,ben", "-o", str(out)]
        done = cli(*args, "--url", cast_sidecar.url)
        assert done.returncode == 0, done.stderr
        audio[form] = sf.read(out, dtype="int16")[0]
    assert len(audio["names"]) > 44100 and np.array_equal(audio["names"], audio["tags"])


def test_narrate_refuses_bad_scripts_and_casts_and_leaves_no_file(
    cast_sidecar: SidecarProcess, tmp_path: Path
) -> None:
    out = tmp_path / "story.wav"
    cases = [
        ("", "ava", "the script has no lines to speak"),
        ("AVA: Hi.\nthen silence", "ava", "line 2 names no speaker"),
        ("AVA: Hi.\nZED: Yo.", "ava", "line 2: 'ZED' is not in the cast (ava)"),
        ("AVA: Hi.\nZED: Yo.", "ava,zed", "cast member 'zed' is not a registered persona"),
    ]
    for text, cast, message in cases:
        script = tmp_path / "story.txt"
        script.write_text(text)
        done = cli(
            "narrate", str(script), "--cast", cast, "-o", str(out), "--url", cast_sidecar.url
        )
        assert done.returncode != 0 and message in done.stderr, (message, done.stderr)
        assert not out.exists()
    done = cli("narrate", str(script), "--cast", "ava", "-o", str(tmp_path / "x.aiff"))
    assert done.returncode == 2 and "name the output *.wav, *.flac, *.mp3" in done.stderr


def test_a_blank_api_key_is_refused(tmp_path: Path) -> None:
    done = cli(
        "serve", "--engine", "preview", "--store", str(tmp_path), env={"S2_SIDECAR_API_KEY": " "}
    )
    assert done.returncode == 2 and "is blank" in done.stderr


def test_the_api_key_can_come_from_a_file(make_sidecar, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "key"
    key.write_text("a-key-kept-out-of-ps-1234\n")
    process: SidecarProcess = make_sidecar(args=["--api-key-file", str(key)])
    url = process.url + "/v1/audio/voices"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=30)
    assert e.value.code == 401
    request = urllib.request.Request(
        url, headers={"Authorization": "Bearer a-key-kept-out-of-ps-1234"}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 200
    assert "visible to every user" not in process.log()  # no warning: the key is not in argv


def test_serve_logs_where_the_studio_is(sidecar: SidecarProcess) -> None:
    assert f"persona studio: open http://127.0.0.1:{sidecar.port}/ in a browser" in sidecar.log()
