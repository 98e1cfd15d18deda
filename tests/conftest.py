"""Shared pytest options for the test suite."""

from __future__ import annotations

import pytest
from hypothesis import settings

# No per-example deadline: two test workers share the machine's cores with node processes, so an
# example's wall-clock time says nothing about the code under test.
settings.register_profile("coterie", deadline=None)
settings.load_profile("coterie")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="regenerate the expected outputs of tests/scenario/testdata/*.txt "
        "(same as COTERIE_REWRITE=1)",
    )


# One import identity: every project module is imported as ``coterie.*`` (src/coterie links the
# top-level folders into that package). Importing a folder by its own name (``node``, ``client``,
# ``verify``) would load the same file a second time as a different module.
_FOREIGN_NAMES = ("node", "client", "verify", "v1")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import sys

    doubles = sorted(n for n in sys.modules if n.split(".")[0] in _FOREIGN_NAMES)
    if doubles:
        raise pytest.UsageError(f"project modules imported outside coterie.*: {doubles}")
