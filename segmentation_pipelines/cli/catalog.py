"""``segmentation-pipelines catalog ...``: migrate the catalog database and inspect its revision.

The URL is ``--url``, else ``SEGMENTATION_CATALOG_URL``, else the SQLite file under ``SEGMENTATION_HOME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # the CLI imports SQLAlchemy only when a command runs
    from sqlalchemy.engine import Engine

_URL_OPTION = click.option(
    "--url", envvar=None, default=None, help="Catalog database URL (default: from settings)"
)


@contextmanager
def _engine(url: str | None) -> Iterator[Engine]:
    """An engine on the catalog database, disposed when the command is done."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.catalog.db import make_engine
    from segmentation_pipelines.settings import get_settings

    engine = make_engine(url or get_settings().resolved_catalog_url)
    try:
        yield engine
    finally:
        engine.dispose()


@click.group()
def catalog() -> None:
    """The catalog database (Alembic migrations)."""


@catalog.command()
@_URL_OPTION
@click.option("--revision", default="head", show_default=True, help="Target revision")
def upgrade(url: str | None, revision: str) -> None:
    """Migrate the catalog up to REVISION (creates a fresh database)."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.catalog import migrations

    with _engine(url) as engine:
        migrations.upgrade(engine, revision)
        click.echo(f"catalog at {migrations.current_revision(engine)}")


@catalog.command()
@_URL_OPTION
@click.argument("revision")
def downgrade(url: str | None, revision: str) -> None:
    """Migrate the catalog down to REVISION (``base`` drops every catalog table)."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.catalog import migrations

    with _engine(url) as engine:
        migrations.downgrade(engine, revision)
        click.echo(f"catalog at {migrations.current_revision(engine) or 'base'}")


@catalog.command()
@_URL_OPTION
def current(url: str | None) -> None:
    """Print the revision the catalog is at, and whether that is the newest."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.catalog import migrations

    with _engine(url) as engine:
        revision = migrations.current_revision(engine)
        head = migrations.head_revision()
        click.echo(f"{revision or 'base'}{' (head)' if revision == head else f' (head is {head})'}")


@catalog.command()
@_URL_OPTION
@click.option("-m", "--message", required=True, help="What the migration does")
@click.option(
    "--autogenerate/--empty",
    default=True,
    show_default=True,
    help="Fill the new revision with the differences between models.py and the database (which must be at head)",
)
def revision(url: str | None, message: str, autogenerate: bool) -> None:
    """Write a new migration file under catalog/migrations/versions (for developers; review it before use)."""
    # Imported when the command runs: keeps the CLI's start fast.
    from alembic import command

    from segmentation_pipelines.catalog import migrations

    head = migrations.head_revision()
    # Revisions are numbered 0001, 0002, ... so that the files sort in order.
    rev_id = f"{int(head) + 1:04d}" if head.isdigit() else None
    with _engine(url) as engine:
        with migrations.locked_connection(engine) as conn:
            script = command.revision(
                migrations.alembic_config(conn), message=message, autogenerate=autogenerate, rev_id=rev_id
            )
        for item in script if isinstance(script, list) else [script]:
            if item is not None:
                click.echo(item.path)
