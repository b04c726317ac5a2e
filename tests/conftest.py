"""Fixtures shared by every test suite.

* ``settings``: :class:`Settings` on a fresh home folder under ``tmp_path`` (SQLite catalog, no tokens), whatever
  ``SEGMENTATION_*`` variables the shell has.
* ``pg_url`` / ``pg_session_url``: URL of a fresh PostgreSQL database (dropped after the test / the session) on
  the server of ``SEGMENTATION_TEST_PG_URL`` (any database URL on that server; in CI it defaults to
  ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``). Without that variable and outside CI, tests using it
  skip; in CI (``CI`` set) a skipped ``@pytest.mark.postgres`` test is turned into a failure, so PostgreSQL
  coverage cannot silently disappear.
* ``@pytest.mark.browser`` tests (a headless Chromium on the Dagster UI) skip without chromium, except in CI, where
  ``.ci/run`` installs it and a skip is turned into a failure, as for PostgreSQL.
* hypothesis: in CI the generated examples are derandomized, so a CI run is reproducible (a red CI run fails the same
  way when re-run); locally they vary from run to run and keep looking for new failures.
* every test must leave Dagster's process-wide load state (``DefinitionsLoadContext``, the current defs-state
  storage) as it found it: a leak fails the test that leaked, not an unrelated test in another folder later.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from segmentation_pipelines.settings import Settings

hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

PG_ENV = "SEGMENTATION_TEST_PG_URL"
CI_PG_SERVER_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def pg_server_url() -> str | None:
    """Where PostgreSQL tests run, or None when they should skip (never in CI)."""
    return os.environ.get(PG_ENV) or (CI_PG_SERVER_URL if in_ci() else None)


def _dagster_load_state() -> tuple[object, object]:
    """Dagster's process-wide state for loading definitions (unset when Dagster is not even imported)."""
    if "dagster" not in sys.modules:
        return None, None
    from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext
    from dagster._core.storage.defs_state.base import DefsStateStorage

    return DefinitionsLoadContext._instance, DefsStateStorage.get()


@pytest.fixture(autouse=True)
def _dagster_load_state_is_restored() -> Iterator[None]:
    # E.g. a schedule context built from an instance and left open: it enters a copy of the instance and, once
    # garbage-collected, leaves a storage of a dead instance current; every later definitions load in the process
    # then fails with "Attempted to resolve undefined DagsterInstance weakref".
    before = _dagster_load_state()
    yield
    after = _dagster_load_state()
    assert after == before, (
        "this test left Dagster's process-wide load state changed (DefinitionsLoadContext, defs-state storage): "
        f"{before} -> {after}; use DefinitionsLoadContext.scoped(...) and exit instances/contexts in LIFO order"
    )


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", catalog_url=None, api_tokens=None, dagster_url=None)


@contextmanager
def _fresh_pg_database(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database named ``<prefix>_<pid>_<random>``, yield its URL, drop it after."""
    server = pg_server_url()
    if server is None:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (or CI)")
    server_url = make_url(server)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
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


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (psycopg2 URL, password shown)."""
    with _fresh_pg_database("sp_test") as url:
        yield url


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the whole test session (per xdist worker); tests must empty it."""
    with _fresh_pg_database("sp_test_session") as url:
        yield url


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and item.get_closest_marker("postgres") is not None:
        report.outcome = "failed"
        report.longrepr = f"PostgreSQL test skipped in CI (CI is set, so it must run): {report.longrepr}"
    if report.skipped and in_ci() and item.get_closest_marker("browser") is not None:
        report.outcome = "failed"
        report.longrepr = f"Browser test skipped in CI (.ci/run installs chromium): {report.longrepr}"
