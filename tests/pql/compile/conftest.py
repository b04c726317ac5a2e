"""Fixtures of the compiler tests: the hand-written store of ``compile_fixture_data`` on disk, and a helper that
evaluates definitions on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from pql.compile.compile_fixture_data import write_store


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_store(tmp_path_factory.mktemp("compile_store"))
