"""Fixtures of the catalog suite: every test that takes ``db_url`` runs on SQLite and on PostgreSQL.

PostgreSQL: the session's fresh database (``pg_session_url`` of ``tests/conftest.py``: skipped only when neither
``SEGMENTATION_TEST_PG_URL`` nor ``CI`` is set; in CI an unreachable server fails every PostgreSQL test); each test
starts from an empty ``public`` schema.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from segmentation_pipelines.catalog import Catalog


def _empty_pg_database(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """URL of an empty catalog database (no tables yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url = request.getfixturevalue("pg_session_url")
    _empty_pg_database(url)
    return url


@pytest.fixture
def catalog(db_url) -> Iterator[Catalog]:
    """A migrated catalog on an empty database."""
    cat = Catalog(db_url)
    try:
        yield cat
    finally:
        cat.dispose()
