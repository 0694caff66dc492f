"""`s2-sidecar doctor`: can this machine run S2-Pro on SGLang-Omni 0.1.9, and if not, why.

Each check prints one verdict (ok, warn, FAIL) and what to do; any FAIL exits 1. The rules
come from the 0.1.9 wheel (paths inside `sglang_omni/`):
- compute capability 8.9, 9.0, 10.0 or 12.0: `models/fishaudio_s2_pro/engine_builder.py`
  `resolve_fast_ar_attention_backend` raises for any other GPU;
- CUDA 13: the wheel pins CUDA-13 builds (`flashinfer_python[cu13]`, `nixl-cu13`);
- 24 GB of GPU memory: fish-speech's figure for S2-Pro (0.1.9 documents none).
Every probe of the machine is a field of `Probes`, so tests can stand in for a GPU box.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from s2_plugin.protocol import DEFAULT_PORT, HEALTH_PATH
from s2_sidecar.engines.sglang_process import MODEL_PATH

SUPPORTED_CAPABILITIES = ("8.9", "9.0", "10.0", "12.0")
_SUPPORTED = ", ".join(SUPPORTED_CAPABILITIES)
MIN_GPU_GB = 24.0
CUDA_MAJOR = 13
SGLANG_OMNI_VERSION = "0.1.9"
WEIGHTS_GB = 12.0
"""Room the S2-Pro weights need on disk (about 4.4B parameters in bf16 plus the codec)."""


@dataclass
class Gpu:
    name: str
    capability: str
    memory_gb: float
    driver: str


@dataclass
class Probes:
    """How the doctor looks at the machine; each returns None when there is nothing to find."""

    gpus: Callable[[], list[Gpu] | None]
    cuda_version: Callable[[], str | None]
    version: Callable[[str], str | None]
    """An installed distribution's version."""
    has_module: Callable[[str], bool]
    weights: Callable[[str], Path | None]
    """The local directory holding a model's weights (no download)."""
    free_gb: Callable[[Path], float]
    port_free: Callable[[str, int], bool]
    sidecar_engine: Callable[[str, int], str | None]
    """The engine of the s2-sidecar answering on a host and port, if one does."""
    writable: Callable[[Path], bool]


@dataclass
class Verdict:
    level: str  # "ok", "warn", "FAIL"
    what: str
    todo: str = ""

    def line(self) -> str:
        return f"{self.level:4s}  {self.what}" + (f"\n      -> {self.todo}" if self.todo else "")


def check(probes: Probes, model: str, store: Path, host: str, port: int) -> list[Verdict]:
    out: list[Verdict] = []
    gpus = probes.gpus()
    if not gpus:
        out.append(
            Verdict(
                "FAIL",
                "no NVIDIA GPU (nvidia-smi is missing or lists none)",
                "run S2 on a machine with an L4, L40S, RTX 4090, H100, H200, H20, B200 or "
                "RTX 5090; here only the CPU preview engine runs (`--engine preview`)",
            )
        )
    for i, gpu in enumerate(gpus or []):
        label = f"GPU {i}: {gpu.name}, compute {gpu.capability}, {gpu.memory_gb:.0f} GB"
        if gpu.capability not in SUPPORTED_CAPABILITIES:
            out.append(
                Verdict(
                    "FAIL",
                    label,
                    f"SGLang-Omni 0.1.9 runs S2-Pro only on compute {_SUPPORTED} (A100, A10, "
                    "RTX 3090 and B300 are refused); use a supported GPU",
                )
            )
        elif gpu.memory_gb < MIN_GPU_GB:
            out.append(
                Verdict("FAIL", label, f"S2-Pro needs at least {MIN_GPU_GB:.0f} GB of GPU memory")
            )
        else:
            out.append(Verdict("ok", label))
    if gpus:
        out.append(_cuda(probes.cuda_version(), gpus[0].driver))
    out.append(_sglang(probes))
    out.append(_weights(probes, model))
    out.append(_disk(probes, model))
    out.append(_port(probes, host, port))
    if probes.writable(store):
        out.append(Verdict("ok", f"persona store {store} is writable"))
    else:
        out.append(
            Verdict(
                "FAIL",
                f"persona store {store} is not writable",
                "fix its permissions or pass --store",
            )
        )
    return out


def _port(probes: Probes, host: str, port: int) -> Verdict:
    if probes.port_free(host, port):
        return Verdict("ok", f"port {host}:{port} is free for the sidecar")
    engine = probes.sidecar_engine(host, port)
    if engine is not None:
        return Verdict("ok", f"an s2-sidecar already serves on {host}:{port} ({engine} engine)")
    return Verdict("FAIL", f"port {host}:{port} is in use", "stop what uses it, or pass --port")


def _cuda(cuda: str | None, driver: str) -> Verdict:
    if cuda is None:
        return Verdict("warn", f"driver {driver}, CUDA version unknown", "check `nvidia-smi`")
    label = f"driver {driver}, CUDA {cuda}"
    major = int(cuda.split(".")[0]) if cuda.split(".")[0].isdigit() else 0
    if major < CUDA_MAJOR:
        return Verdict(
            "FAIL",
            label,
            f"SGLang-Omni 0.1.9 is built for CUDA {CUDA_MAJOR}: install an NVIDIA driver that "
            f"supports CUDA {CUDA_MAJOR}",
        )
    return Verdict("ok", label)


def _sglang(probes: Probes) -> Verdict:
    version = probes.version("sglang-omni")
    install = "pip install 's2-plugin[server,sglang]' (uv: --prerelease=allow) on the GPU machine"
    if version is None:
        return Verdict("FAIL", "sglang-omni is not installed", install)
    if version != SGLANG_OMNI_VERSION:
        return Verdict(
            "FAIL",
            f"sglang-omni {version} is installed",
            f"this sidecar is checked against {SGLANG_OMNI_VERSION}: pip install "
            f"sglang-omni[fishaudio]=={SGLANG_OMNI_VERSION}",
        )
    if not probes.has_module("sglang") or not probes.has_module("dac"):
        return Verdict(
            "FAIL",
            f"sglang-omni {version} is installed without its engine (sglang, descript-audio-codec)",
            f"a --no-deps install only holds the schema; {install}",
        )
    return Verdict("ok", f"sglang-omni {version} with sglang and the fishaudio codec")


def _weights(probes: Probes, model: str) -> Verdict:
    path = probes.weights(model)
    if path is None:
        return Verdict(
            "FAIL",
            f"the {model} weights are not on this machine",
            f"run `s2-sidecar download --model {model}` (or pass --model-path DIR)",
        )
    missing = missing_weight_files(path)
    if missing:
        return Verdict(
            "FAIL",
            f"the {model} weights at {path} are incomplete ({len(missing)} files missing, "
            f"e.g. {missing[0]})",
            f"run `s2-sidecar download --model {model}` again to finish them",
        )
    return Verdict("ok", f"{model} weights complete at {path}")


def missing_weight_files(path: Path) -> list[str]:
    """Files a checkpoint names (config, the safetensors index and its shards) that are absent."""
    missing = [name for name in ("config.json",) if not (path / name).is_file()]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
    else:
        shards = {"model.safetensors"}
    missing += sorted(
        s for s in shards if not (path / s).is_file() or not (path / s).stat().st_size
    )
    return missing


def _disk(probes: Probes, model: str) -> Verdict:
    cache = _hf_cache()
    free = probes.free_gb(cache)
    need = 2.0 if probes.weights(model) else WEIGHTS_GB
    label = f"{free:.0f} GB free at {cache}"
    if free < need:
        return Verdict("FAIL", label, f"free at least {need:.0f} GB (or set HF_HOME elsewhere)")
    return Verdict("ok", label)


def _hf_cache() -> Path:
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    path = Path(os.environ.get("HF_HUB_CACHE") or Path(home) / "hub")
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# --- the real probes -------------------------------------------------------------------------


def _nvidia_smi(*args: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _gpus() -> list[Gpu] | None:
    query = "--query-gpu=name,compute_cap,memory.total,driver_version"
    out = _nvidia_smi(query, "--format=csv,noheader,nounits")
    if not out:
        return None
    gpus = []
    for row in out.strip().splitlines():
        name, cap, mem, driver = (c.strip() for c in row.split(","))
        gpus.append(Gpu(name, cap, float(mem) / 1024, driver))
    return gpus


def _cuda_version() -> str | None:
    out = _nvidia_smi() or ""
    _, found, rest = out.partition("CUDA Version:")
    return rest.split()[0] if found and rest.split() else None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _local_weights(model: str) -> Path | None:
    if Path(model).is_dir():
        return Path(model)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not cached, or huggingface_hub missing: either way, not here
        return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _sidecar_engine(host: str, port: int) -> str | None:
    """The `engine` a sidecar's /health names (it answers it with or without a key)."""
    url = f"http://{host}:{port}{HEALTH_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:  # a sidecar still starting answers 503 with its body
        try:
            body = json.load(e)
        except ValueError:
            return None
    except (OSError, ValueError):
        return None
    engine = body.get("engine") if isinstance(body, dict) else None
    return engine if isinstance(engine, str) else None


def _writable(path: Path) -> bool:
    """The store, or the folder it will be made in, takes new files (nothing is created)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK | os.X_OK)


def real_probes() -> Probes:
    return Probes(
        gpus=_gpus,
        cuda_version=_cuda_version,
        version=_version,
        has_module=lambda name: importlib.util.find_spec(name) is not None,
        weights=_local_weights,
        free_gb=lambda path: shutil.disk_usage(path).free / 1e9,
        port_free=_port_free,
        sidecar_engine=_sidecar_engine,
        writable=_writable,
    )


# --- the command -----------------------------------------------------------------------------


HELP = "check that this machine can run S2-Pro, and say why not"


def add_arguments(p: argparse.ArgumentParser, store: Path) -> None:
    """The `doctor` command's flags, on the parser `s2-sidecar` made for it."""
    p.add_argument("--model-path", default=MODEL_PATH, help="HF id or local directory")
    p.add_argument("--store", type=Path, default=store, help="persona directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.set_defaults(run=lambda a: run(a, real_probes()))


def run(args: argparse.Namespace, probes: Probes) -> int:
    verdicts = check(probes, args.model_path, args.store, args.host, args.port)
    for verdict in verdicts:
        print(verdict.line())
    failed = sum(v.level == "FAIL" for v in verdicts)
    with contextlib.suppress(BrokenPipeError):
        if failed:
            print(f"\n{failed} problem(s): S2-Pro cannot run here as is.")
        else:
            print("\nThis machine can run S2-Pro: s2-sidecar serve --engine sglang_omni")
    return 1 if failed else 0
