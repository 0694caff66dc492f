"""The LiveKit examples import without any keys, and each registers its entrypoint."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from support.sidecar import ROOT


def _load(name: str) -> ModuleType:
    path = ROOT / "examples" / "livekit" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"livekit_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agent_example_registers_its_entrypoint() -> None:
    agent = _load("agent")
    assert agent.server._entrypoint_fnc is agent.entrypoint


def test_phone_agent_is_dispatched_by_name() -> None:
    phone = _load("phone_agent")
    assert phone.server._entrypoint_fnc is phone.entrypoint
    assert phone.server._agent_name == phone.AGENT_NAME
    readme = (ROOT / "examples" / "livekit" / "README.md").read_text()
    assert f'"agentName": "{phone.AGENT_NAME}"' in readme
