"""Alembic environment of the catalog.

Programmatic use (``migrations.upgrade(engine)``) passes a connection that already holds the migration lock in
``config.attributes["connection"]``. From the ``alembic`` CLI there is none: the URL comes from ``-x url=...``, the
``sqlalchemy.url`` option, or the service settings, and the same lock is taken here.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from segmentation_pipelines.catalog.engine import make_engine
from segmentation_pipelines.catalog.migrations import locked_connection
from segmentation_pipelines.catalog.models import Base
from segmentation_pipelines.settings import get_settings

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    return get_settings().resolved_catalog_url


def _options(dialect_name: str) -> dict:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        # SQLite cannot ALTER most things: future migrations use batch mode (copy-and-move) there.
        "render_as_batch": dialect_name == "sqlite",
    }


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the DDL instead of running it."""
    url = _url()
    context.configure(url=url, literal_binds=True, **_options(url.split(":", 1)[0].split("+", 1)[0]))
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = make_engine(_url())
    try:
        with locked_connection(engine) as conn:
            _run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
