"""Fixtures of the Spark tests: one local Spark of two cores for the whole session (the machine is shared), and
the stores of the compiler tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before any SparkSession exists: the process's one session is local, on two cores.
os.environ.setdefault("SEGMENTATION_SPARK_MASTER", "local[2]")

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install -e '.[spark]')")

from pql.compile.compile_fixture_data import write_store  # noqa: E402


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_store(tmp_path_factory.mktemp("spark_store"))
