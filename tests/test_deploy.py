"""The deployment recipes (Kubernetes, systemd): they parse, and every command in them is one
its program accepts."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from s2_sidecar.cli import _parser
from sglang_omni_router.python.serve import build_config_from_args, build_parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFEST = DEPLOY / "kubernetes" / "s2.yaml"
UNIT = DEPLOY / "systemd" / "s2-sidecar.service"


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


def unit() -> configparser.ConfigParser:
    """The unit as systemd reads it: sections, keys (case kept), no key given twice."""
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_service_restarts_keeps_its_key_in_a_credential_and_logs_to_the_journal() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "on-failure" and unit()["Unit"]["StartLimitIntervalSec"] == "0"
    assert service["LoadCredential"] == "api-key:/etc/s2-sidecar/api-key"
    assert "StandardOutput" not in service  # the default: the journal
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
    program, *argv = shlex.split(service["ExecStart"].replace("%d", "/run/credentials/x"))
    assert program.endswith("/bin/s2-sidecar")
    environment = dict(pair.split("=", 1) for pair in shlex.split(service["Environment"]))
    # systemd's PATH lacks the venv: the sidecar finds `sgl-omni` next to itself only this way.
    assert environment["PATH"].split(":")[0] == str(Path(program).parent)
    args = _parser().parse_args(argv)
    assert args.run.__name__ == "_serve" and args.engine == "sglang_omni"
    assert str(args.api_key_file) == "/run/credentials/x/api-key" and args.api_key is None
    assert str(args.store).startswith("/var/lib/" + service["StateDirectory"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    # Its ExecStart must exist for systemd: this venv's s2-sidecar stands in for /opt's.
    text = UNIT.read_text().replace("/opt/s2-sidecar/venv/bin", str(Path(sys.executable).parent))
    (tmp_path / UNIT.name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / UNIT.name)], capture_output=True, text=True
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
