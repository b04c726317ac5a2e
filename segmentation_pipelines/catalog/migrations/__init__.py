"""Schema migrations of the catalog (Alembic). ``upgrade(engine)`` brings a database to the newest revision.

The Alembic environment lives in this folder (``env.py``, ``versions/``, ``alembic.ini`` for the ``alembic`` CLI).
Every process that opens the catalog calls :func:`upgrade`, so several may do it at the same moment (webserver,
daemon, run workers, REST API): the migration runs in one transaction that first takes a database-wide lock
(PostgreSQL: ``pg_advisory_xact_lock``; SQLite: ``BEGIN IMMEDIATE``, the write lock), and reads the current revision
only once it holds the lock. The first process migrates; the others wait, then find the database at head and do
nothing. PostgreSQL and SQLite both have transactional DDL, so a failed migration leaves the database unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from segmentation_pipelines.catalog.engine import READ_ONLY_OPTION
from segmentation_pipelines.catalog.models import Base

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent

# Key of the PostgreSQL advisory lock held while migrating (any fixed 64-bit number unique to this application).
PG_MIGRATION_LOCK_KEY = 0x5E6_CA7A_1065


class UnversionedCatalogError(RuntimeError):
    """The database has catalog tables but no Alembic revision, and its schema is not the current one."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for this package; with ``connection``, env.py migrates on that connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


class UnknownRevisionError(RuntimeError):
    """The database is at a revision this version of the code does not have (written by a newer version)."""


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the catalog migrations must have exactly one head, found {sorted(heads)}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: not under Alembic yet)."""
    with engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def locked_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database-wide migration lock; committed on success."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Transaction-level: released by the COMMIT/ROLLBACK that ends the migration, even if we crash.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            raw = conn.connection.driver_connection
            # Catalog engines already began with BEGIN IMMEDIATE (db.py); a plain engine has not begun yet.
            if not raw.in_transaction:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest); a fresh database is created from nothing."""
    current = current_revision(engine)
    if revision == "head" and current == head_revision():
        return  # the common case: no lock, no write
    _check_known(current, engine)
    with locked_connection(engine) as conn:
        _adopt_unversioned(conn)
        command.upgrade(alembic_config(conn), revision)


def _check_known(current: str | None, engine: Engine) -> None:
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise UnknownRevisionError(
            f"catalog database {engine.url.render_as_string(hide_password=True)} is at revision {current!r}, "
            f"which this version of segmentation-pipelines does not know (newest known: {head_revision()!r}); "
            f"it was migrated by a newer version: run that version, or downgrade the database with it"
        )


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` drops every catalog table)."""
    with locked_connection(engine) as conn:
        command.downgrade(alembic_config(conn), revision)


def schema_differences(conn: Connection) -> list:
    """What differs between the database schema and the models (empty when the migrations match models.py)."""
    context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
    return compare_metadata(context, Base.metadata)


def _adopt_unversioned(conn: Connection) -> None:
    """Stamp a catalog created before migrations existed (``create_all``), if its schema is the current one."""
    if MigrationContext.configure(conn).get_current_revision() is not None:
        return
    existing = set(inspect(conn).get_table_names()) & set(Base.metadata.tables)
    if not existing:
        return
    differences = schema_differences(conn)
    if differences:
        raise UnversionedCatalogError(
            f"catalog database {conn.engine.url.render_as_string(hide_password=True)} has tables "
            f"({', '.join(sorted(existing))}) but no migration revision, and its schema differs from the current "
            f"one: {differences!r}. Delete it (it predates migrations) or migrate it by hand and "
            f"`alembic stamp head`."
        )
    log.info("stamping unversioned catalog at %s", head_revision())
    command.stamp(alembic_config(conn), "head")
