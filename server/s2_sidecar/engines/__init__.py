"""Engines behind the API: `sglang_omni` (S2-Pro on a GPU) and `preview` (CPU, not S2)."""

from __future__ import annotations

import importlib.util
import logging
import shutil

from s2_sidecar.engines.base import Engine, Status

__all__ = ["ENGINES", "Engine", "Status", "choose"]

log = logging.getLogger(__name__)

ENGINES = ("auto", "sglang_omni", "preview")


def choose(kind: str) -> str:
    """Resolve `auto` to the engine this machine can run, and say why."""
    if kind != "auto":
        return kind
    if importlib.util.find_spec("sglang") is None or shutil.which("sgl-omni") is None:
        log.warning("engine auto: SGLang-Omni is not installed, so the CPU preview engine runs")
        return "preview"
    if shutil.which("nvidia-smi") is None:
        log.warning("engine auto: no NVIDIA GPU found, so the CPU preview engine runs")
        return "preview"
    log.info("engine auto: SGLang-Omni and an NVIDIA GPU are present, so S2-Pro runs")
    return "sglang_omni"
