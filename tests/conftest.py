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
