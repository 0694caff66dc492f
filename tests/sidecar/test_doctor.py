"""`s2-sidecar doctor`: for real on this CPU machine, and with probes faked as GPU machines."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from s2_sidecar import doctor
from s2_sidecar.doctor import Gpu, Probes
from support.sidecar import SidecarProcess

H200 = Gpu("NVIDIA H200", "9.0", 141.0, "580.65")


def weights(tmp_path: Path, shards: int = 2) -> Path:
    """A checkpoint folder as Hugging Face leaves it: config, index and its shards."""
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    (tmp_path / "config.json").write_text("{}")
    index = {"weight_map": {f"layer.{i}": name for i, name in enumerate(names)}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def probes(tmp_path: Path, **changes: object) -> Probes:
    good = Probes(
        gpus=lambda: [H200],
        cuda_version=lambda: "13.0",
        version=lambda dist: "0.1.9",
        has_module=lambda name: True,
        weights=lambda model: weights(tmp_path),
        free_gb=lambda path: 500.0,
        port_free=lambda host, port: True,
        sidecar_engine=lambda host, port: None,
        writable=lambda path: True,
    )
    for name, value in changes.items():
        setattr(good, name, value)
    return good


def run(p: Probes, capsys: pytest.CaptureFixture[str], port: int = 8421) -> tuple[int, str]:
    args = argparse.Namespace(
        model_path="fishaudio/s2-pro", store=Path("store"), host="127.0.0.1", port=port
    )
    code = doctor.run(args, p)
    return code, capsys.readouterr().out


def test_a_good_gpu_machine_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(probes(tmp_path), capsys)
    assert code == 0, out
    assert "FAIL" not in out
    assert "GPU 0: NVIDIA H200, compute 9.0, 141 GB" in out
    assert "This machine can run S2-Pro" in out


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"gpus": lambda: [Gpu("NVIDIA A100", "8.0", 80.0, "580")]}, "only on compute 8.9"),
        ({"gpus": lambda: [Gpu("NVIDIA L4", "8.9", 16.0, "580")]}, "at least 24 GB"),
        ({"gpus": lambda: None}, "no NVIDIA GPU"),
        ({"cuda_version": lambda: "12.4"}, "built for CUDA 13"),
        ({"version": lambda dist: None}, "sglang-omni is not installed"),
        ({"version": lambda dist: "0.1.8"}, "checked against 0.1.9"),
        ({"has_module": lambda name: name != "sglang"}, "only holds the schema"),
        ({"weights": lambda model: None}, "s2-sidecar download --model fishaudio/s2-pro"),
        ({"free_gb": lambda path: 1.0}, "free at least"),
        ({"port_free": lambda host, port: False}, "pass --port"),
        ({"writable": lambda path: False}, "not writable"),
    ],
)
def test_each_problem_fails_and_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], says: str
) -> None:
    code, out = run(probes(tmp_path, **change), capsys)
    assert code == 1
    assert says in out
    assert "1 problem(s): S2-Pro cannot run here" in out


def test_the_users_own_sidecar_on_the_port_is_fine_and_anything_else_is_not(
    sidecar: SidecarProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = doctor.real_probes()
    ports = probes(tmp_path, port_free=real.port_free, sidecar_engine=real.sidecar_engine)
    code, out = run(ports, capsys, sidecar.port)
    assert code == 0, out
    assert f"an s2-sidecar already serves on 127.0.0.1:{sidecar.port} (preview engine)" in out
    with socket.socket() as other:  # a listener that is no sidecar
        other.bind(("127.0.0.1", 0))
        other.listen()
        code, out = run(ports, capsys, other.getsockname()[1])
    assert code == 1 and "is in use" in out and "pass --port" in out


def test_incomplete_weights_name_a_missing_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "w").mkdir()
    folder = weights(tmp_path / "w", shards=3)
    (folder / "model-00002-of-00003.safetensors").unlink()
    code, out = run(probes(tmp_path, weights=lambda model: folder), capsys)
    assert code == 1
    assert "incomplete (1 files missing, e.g. model-00002-of-00003.safetensors)" in out


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine")
def test_on_this_cpu_machine_it_says_so_and_exits_non_zero(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "s2_sidecar", "doctor", "--store", str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard: a loaded machine starts Python slowly
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  no NVIDIA GPU" in done.stdout
    assert "--engine preview" in done.stdout
    assert not (tmp_path / "store").exists()  # looking creates nothing
