"""Scripted Raft scenarios (etcd raft interaction-test style): one test per testdata file.

Each ``tests/scenario/testdata/*.txt`` file is a list of commands with their expected output (see
``tests/scenario/interp.py`` for the commands and format). A mismatch fails with a unified diff.

Regenerate the expected outputs after a deliberate change, then review the diff before keeping it::

    COTERIE_REWRITE=1 .venv/bin/pytest tests/test_scenarios.py
    .venv/bin/pytest tests/test_scenarios.py --rewrite
"""

from __future__ import annotations

import difflib
import os
import pathlib

import pytest

from tests.scenario.interp import run_file  # the repo root is on sys.path (pytest pythonpath)

TESTDATA = pathlib.Path(__file__).resolve().parent / "scenario" / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def _rewrite(config: pytest.Config) -> bool:
    opt = bool(config.getoption("--rewrite", default=False))  # from tests/conftest.py
    return opt or os.environ.get("COTERIE_REWRITE", "") not in ("", "0")


def test_testdata_present() -> None:
    assert FILES, f"no scenario files in {TESTDATA}"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_scenario(path: pathlib.Path, pytestconfig: pytest.Config) -> None:
    text = path.read_text()
    rewritten, results = run_file(text)
    if _rewrite(pytestconfig):
        if rewritten != text:
            path.write_text(rewritten)
        return
    missing = [b.command for b, _ in results if b.expected is None]
    if rewritten != text or missing:
        diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                rewritten.splitlines(keepends=True),
                fromfile=f"{path.name} (expected)",
                tofile=f"{path.name} (actual)",
            )
        )
        pytest.fail(
            f"scenario output differs; rerun with COTERIE_REWRITE=1 to regenerate:\n{diff}",
            pytrace=False,
        )
