"""Fixtures of the catalog suite: every test that takes ``db_url`` runs on SQLite and on PostgreSQL.

PostgreSQL: one fresh database per test session (per xdist worker) on the server of ``SEGMENTATION_TEST_PG_URL``
(any database URL on that server; default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``), created and
dropped here; each test starts from an empty ``public`` schema. Skipped only when neither
``SEGMENTATION_TEST_PG_URL`` nor ``CI`` is set; in CI an unreachable server fails every PostgreSQL test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from segmentation_pipelines.catalog import Catalog

DEFAULT_PG_SERVER_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _pg_server_url() -> str | None:
    url = os.environ.get("SEGMENTATION_TEST_PG_URL")
    if url:
        return url
    return DEFAULT_PG_SERVER_URL if os.environ.get("CI") else None


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """URL of a PostgreSQL database created for this test session."""
    server = _pg_server_url()
    if server is None:
        pytest.skip("PostgreSQL tests need SEGMENTATION_TEST_PG_URL or CI")
    server_url = make_url(server)
    name = f"sp_test_catalog_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {server_url.render_as_string()} is unreachable: {error}", pytrace=False)
    try:
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
    url = request.getfixturevalue("pg_database_url")
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
