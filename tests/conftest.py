"""Shared pytest options for the test suite."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="regenerate the expected outputs of tests/scenario/testdata/*.txt "
        "(same as COTERIE_REWRITE=1)",
    )
