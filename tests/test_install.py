"""Every documented install works: the wheel, installed (not editable) into a clean venv with
each extra set the README and the sidecar image name, serves speech and the studio and imports
its adapter. A dependency missing from an extra fails here, not on a user's machine.

The wheel is built once from the committed files; each venv takes pip's cache, so a rerun
installs without downloading (about 40 s a venv on 2 cores).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from support.checkout import ROOT, clean_copy
from support.sidecar import PERSONAS_TOML, SidecarProcess
from support.upstream import hub_cache, standin_args

from s2_plugin.protocol import SPEECH_PATH

pytestmark = pytest.mark.install

README = ROOT / "README.md"
IMAGE = ROOT / "deploy" / "images" / "sidecar.Dockerfile"
ADAPTERS = {"pipecat": "import pipecat_s2", "livekit": "from livekit.plugins import s2"}
GPU_ONLY = {"sglang"}
"""Extras that do not install on a CPU machine (CUDA builds)."""


def readme_extra_sets() -> list[str]:
    """The extras of every `pip install '.[...]'` the README shows."""
    return sorted(set(re.findall(r"pip install (?:-e )?'\.\[([a-z,]+)\]'", README.read_text())))


def image_extra_sets() -> list[str]:
    return re.findall(r'"/src\[([a-z,]+)\]"', IMAGE.read_text())


def test_the_readme_and_the_image_name_the_extra_sets_tested_here() -> None:
    assert {"pipecat,server,preview", "livekit,server,preview"} <= set(readme_extra_sets())
    assert image_extra_sets() == ["server"]


CPU_SETS = sorted(
    {s for s in readme_extra_sets() + image_extra_sets() if not GPU_ONLY & set(s.split(","))}
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    source = clean_copy(root / "src")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root), str(source)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    (built,) = root.glob("s2_plugin-*.whl")
    return built


def make_venv(path: Path, wheel: Path, extras: str) -> Path:
    """A venv from the bare interpreter holding only the wheel with `extras`; its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    install = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    done = subprocess.run(
        [*install, f"{wheel}[{extras}]"], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return path / "bin"


@pytest.fixture(params=CPU_SETS)
def installed(request: pytest.FixtureRequest, wheel: Path, tmp_path: Path) -> Iterator[Path]:
    yield make_venv(tmp_path / "venv", wheel, request.param)


def sidecar_for(extras: str, bin_dir: Path, root: Path) -> SidecarProcess:
    """The sidecar from the venv's own `s2-sidecar` script, nothing of this checkout on its path.

    With `preview` it speaks with the CPU voice; without (the image: a GPU box or a router
    behind it) it runs the sglang_omni engine against the SGLang-Omni stand-in.
    """
    env = {"PYTHONPATH": ""}
    args: list[str] = []
    engine = "preview"
    if "preview" not in extras.split(","):
        engine = "sglang_omni"
        args = standin_args()
        env |= {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root / "hub")}
        hub_cache(root / "hub")
    return SidecarProcess(
        root / "store",
        engine=engine,
        personas=PERSONAS_TOML,
        args=args,
        env=env,
        program=[str(bin_dir / "s2-sidecar")],
    )


def test_each_documented_install_serves_speech_the_studio_and_imports_its_adapter(
    installed: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    extras: str = request.node.callspec.params["installed"]
    python = str(installed / "python")
    where = subprocess.run(
        [python, "-c", "import s2_sidecar; print(s2_sidecar.__file__)"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ""},
        cwd=tmp_path,
        check=True,
    ).stdout
    assert str(tmp_path / "venv") in where  # the wheel's copy, not this checkout
    for name in extras.split(","):
        if name in ADAPTERS:
            subprocess.run([python, "-c", ADAPTERS[name]], check=True, env={"PYTHONPATH": ""})

    with sidecar_for(extras, installed, tmp_path) as sidecar:
        with urllib.request.urlopen(sidecar.url + "/", timeout=10) as page:
            assert page.headers["Content-Type"].startswith("text/html")
            assert b"studio.js" in page.read()
        body = {"input": "Hello there, this is a test.", "voice": "joe", "response_format": "mp3"}
        speech = urllib.request.Request(
            sidecar.url + SPEECH_PATH,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(speech, timeout=60) as r:
            assert r.headers["Content-Type"] == "audio/mpeg"
            audio, rate = sf.read(io.BytesIO(r.read()))
        assert len(audio) / rate > 0.5, sidecar.log()
