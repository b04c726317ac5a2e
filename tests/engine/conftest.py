"""Fixtures of the engine tests: the hand-written store of tests/pql_compile/compile_fixture_data."""

from __future__ import annotations

from pathlib import Path

import pytest
from pql.compile.compile_fixture_data import write_store


@pytest.fixture()
def store(tmp_path: Path) -> tuple[Path, Path]:
    return write_store(tmp_path / "store")
