"""Fixtures of the engine tests: the hand-written store of tests/pql_compile/compile_fixture_data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "pql_compile"))

from compile_fixture_data import write_store  # noqa: E402


@pytest.fixture()
def store(tmp_path: Path) -> tuple[Path, Path]:
    return write_store(tmp_path / "store")
