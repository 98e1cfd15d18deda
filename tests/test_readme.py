"""Every example of the README runs as written, against a real three-node cluster started here.

- Every ```python block of the README runs (in a fresh interpreter, bounded in time), unless its
  first line is a ``# not run: <why>`` comment.
- In the sections listed in :data:`CLI_SECTIONS` (a ``##``/``###`` heading up to the next heading), every
  line of a plain ``` block that runs the CLI (starts with ``coterie ``, or pipes into it: ``... |
  coterie ...``) runs through ``bash`` in order, unless it ends with ``# not run: <why>``; ``coterie``
  is this checkout's CLI and ``COTERIE_ENDPOINTS`` points at the test cluster.
- Addresses of the dev cluster (``127.0.0.1:7001``..``7003``) in the examples are replaced by the
  test cluster's.

A section added later is covered by adding its heading to
:data:`CLI_SECTIONS`; its Python blocks are covered already.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proc_cluster import ProcCluster, cluster

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
CLI_SECTIONS = ("First steps: a lease and a lock", "The command line", "The Python client",
                "Leases, locks and elections from the shell",
                "Operating a node: metrics, health, endpoints, leader transfer")
SKIP = re.compile(r"#\s*not run:\s*\S")
TIMEOUT = 60.0


def sections(text: str) -> dict[str, str]:
    """Heading text -> the body up to the next heading of any level (outside code blocks)."""
    out: dict[str, str] = {}
    name, fenced = "", False
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            out[name] = "\n".join(body)
            name, body = line.lstrip("#").strip(), []
            continue
        body.append(line)
    out[name] = "\n".join(body)
    return out


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


def python_blocks() -> list[str]:
    return [code for lang, code in blocks(README.read_text()) if lang == "python"]


def cli_lines() -> list[str]:
    secs = sections(README.read_text())
    missing = [s for s in CLI_SECTIONS if s not in secs]
    assert not missing, f"README has no section {missing}"
    lines: list[str] = []
    for s in CLI_SECTIONS:
        for lang, code in blocks(secs[s]):
            if lang:
                continue
            for line in code.replace("\\\n", " ").splitlines():
                cmd = line.strip()
                if cmd.startswith("coterie ") or re.search(r"\|\s*coterie ", cmd):
                    lines.append(cmd)
    return lines


def localise(code: str, c: ProcCluster) -> str:
    """The dev cluster's addresses replaced by the test cluster's."""
    return re.sub(r"127\.0\.0\.1:700([1-3])", lambda m: c.client[f"n{m.group(1)}"], code)


@pytest.fixture(scope="module")
def c3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    with cluster(tmp_path_factory.mktemp("readme")) as c:
        c.quiet()
        yield c


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a ``coterie`` executable: this checkout's CLI."""
    d = tmp_path_factory.mktemp("bin")
    exe = d / "coterie"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m coterie.client.cli \"$@\"\n")
    exe.chmod(0o755)
    return d


def test_the_extractor_finds_the_examples() -> None:
    py = python_blocks()
    assert len(py) >= 3 and any("Client(" in b for b in py) and any("asyncio.run" in b for b in py)
    lines = cli_lines()
    assert any(x.startswith("coterie status") for x in lines)
    assert any(x.startswith("coterie compact") for x in lines) and any("| coterie txn" in x for x in lines)
    assert not any(x.startswith("coterie node") for x in lines)  # in "Running nodes yourself", not listed
    secs = sections("# A\ntext\n```\n# not a heading\n```\n## B\nb\n")
    assert secs["A"].count("not a heading") == 1 and secs["B"] == "b"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_block_runs(c3: ProcCluster, index: int) -> None:
    code = python_blocks()[index]
    first = code.strip().splitlines()[0]
    if SKIP.match(first):
        pytest.skip(first)
    r = subprocess.run([sys.executable, "-c", localise(code, c3)], cwd=REPO, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, f"block {index}:\n{code}\n--- stderr:\n{r.stderr[-3000:]}"


def test_cli_lines_run_in_order(c3: ProcCluster, shim: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}",
           "COTERIE_ENDPOINTS": ",".join(c3.endpoints())}
    ran = 0
    for line in cli_lines():
        if SKIP.search(line):
            continue
        r = subprocess.run(["bash", "-c", localise(line, c3)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=TIMEOUT)
        assert r.returncode == 0, f"{line}\n--- stdout:\n{r.stdout[-2000:]}\n--- stderr:\n{r.stderr[-2000:]}"
        assert "error:" not in r.stderr, (line, r.stderr)
        ran += 1
    assert ran >= 10
