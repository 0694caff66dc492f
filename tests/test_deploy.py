"""The Kubernetes example: it parses, and every command in it is one its program accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from s2_sidecar.cli import _parser
from sglang_omni_router.python.serve import build_config_from_args, build_parser

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "s2.yaml"


def containers() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    return {
        c["name"]: c
        for doc in docs
        if doc["kind"] in ("Deployment", "StatefulSet")
        for c in doc["spec"]["template"]["spec"]["containers"]
    }


def test_the_router_command_is_what_sgl_omni_router_py_accepts() -> None:
    command = containers()["router"]["command"]
    assert command[0] == "sgl-omni-router-py"
    config = build_config_from_args(build_parser().parse_args(command[1:]))
    assert config.policy == "least_request"
    assert (config.max_connections, config.max_inflight) == (192, 48)
    assert [w.url for w in config.workers] == [
        f"http://s2-worker-{i}.s2-worker:8000" for i in range(3)
    ]


def test_the_sidecar_command_is_what_s2_sidecar_accepts() -> None:
    command = containers()["sidecar"]["command"]
    args = _parser().parse_args(command[1:])
    assert args.sglang_url == "http://s2-router:8000" and args.host == "0.0.0.0"
