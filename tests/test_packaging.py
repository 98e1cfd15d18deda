"""The client installs and runs without the server: ``pip install coterie`` (no extras) into a fresh
venv gives a working ``coterie.client`` and the CLI's client commands, without msgpack, matplotlib or
grpcio-tools, and importing the client loads no ``coterie.node`` module."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_PROBE = """
import json, sys
import coterie.client, coterie.client.cli
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("coterie.node", "coterie.verify",
      "coterie.bench", "matplotlib", "msgpack", "sortedcontainers")))))
"""


def test_importing_the_client_loads_nothing_of_the_node() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


@pytest.fixture(scope="module")
def client_only_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client-only")
    venv.create(root / "venv", with_pip=True)
    py = root / "venv" / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(REPO)], check=True, timeout=600)
    return py


def test_client_only_install_has_no_server_dependencies(client_only_venv: Path) -> None:
    py = client_only_venv
    names = subprocess.run([str(py), "-m", "pip", "list", "--format", "json"], check=True,
                           capture_output=True, text=True).stdout
    installed = {d["name"].lower() for d in json.loads(names)}
    assert {"coterie", "grpcio", "protobuf", "click"} <= installed
    assert not installed & {"matplotlib", "grpcio-tools", "msgpack", "sortedcontainers"}
    out = subprocess.run([str(py), "-c", _PROBE], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def test_client_only_install_runs_client_commands_and_names_the_server_extra(client_only_venv: Path) -> None:
    coterie = client_only_venv.parent / "coterie"
    # A client command runs (and fails only because nothing listens there).
    p = subprocess.run([str(coterie), "--endpoints", "127.0.0.1:1", "--timeout", "1", "get", "k"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.startswith("error:"), p.stderr
    p = subprocess.run([str(coterie), "node", "--name", "n1", "--data-dir", "d", "--client-addr", "x:1",
                        "--peer-addr", "x:2", "--initial-cluster", "n1=x:2"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "pip install 'coterie[server]'" in p.stderr, p.stderr
