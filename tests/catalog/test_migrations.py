"""Alembic migrations of the catalog, on SQLite and PostgreSQL: a fresh database, an older one, one created before
migrations existed, the migrated schema equal to models.py, and the two command lines."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner
from sqlalchemy import Column, MetaData, String, Table, inspect, text

from segmentation_pipelines.catalog import Catalog, Repository
from segmentation_pipelines.catalog.db import make_engine
from segmentation_pipelines.catalog.migrations import (
    MIGRATIONS_DIR,
    UnknownRevisionError,
    UnversionedCatalogError,
    current_revision,
    downgrade,
    head_revision,
    schema_differences,
    upgrade,
)
from segmentation_pipelines.catalog.models import Base, SegmentDefinition

ORG = "test@AdobeOrg"
TABLES = set(Base.metadata.tables)


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _assert_schema_matches_models(engine) -> None:
    with engine.connect() as conn:
        differences = schema_differences(conn)
    assert differences == [], f"the migrations do not create models.py; add a migration for: {differences}"


def test_every_table_is_scoped_by_org_and_sandbox():
    for table in Base.metadata.tables.values():
        for name in ("org_id", "sandbox"):
            assert name in table.c and not table.c[name].nullable, f"{table.name}.{name}"


def test_migrations_have_one_head():
    assert head_revision() == "0005"


def test_fresh_database_is_created_at_head_and_matches_models(db_url):
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _tables(engine) == TABLES
        _assert_schema_matches_models(engine)
    finally:
        engine.dispose()


def test_upgrade_again_changes_nothing_and_keeps_rows(catalog: Catalog):
    with catalog.session() as s:
        Repository(s, SegmentDefinition, ORG, "prod").add(name="kept", batch_enabled=True, body={"a": 1})
    catalog.upgrade()
    Catalog(catalog.url).dispose()  # another process opening the catalog
    with catalog.session() as s:
        assert [r.body for r in Repository(s, SegmentDefinition, ORG, "prod").find()] == [{"a": 1}]


def test_downgrade_to_base_then_upgrade_to_head(catalog: Catalog):
    engine = catalog.engine
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert _tables(engine) == set()
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _tables(engine) == TABLES
    _assert_schema_matches_models(engine)
    with catalog.session() as s:
        Repository(s, SegmentDefinition, ORG, "prod").add(name="after", batch_enabled=True, body={})


def test_database_created_before_migrations_is_adopted(db_url):
    """A catalog made by ``create_all`` (no alembic_version) with the current schema is stamped, rows kept."""
    engine = make_engine(db_url)
    try:
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                SegmentDefinition.__table__.insert().values(
                    id="d1",
                    org_id=ORG,
                    sandbox="prod",
                    created_ms=1,
                    updated_ms=1,
                    body={},
                    name="old",
                    batch_enabled=True,
                )
            )
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        _assert_schema_matches_models(engine)
    finally:
        engine.dispose()
    catalog = Catalog(db_url)
    try:
        with catalog.session() as s:
            assert Repository(s, SegmentDefinition, ORG, "prod").get("d1").name == "old"
    finally:
        catalog.dispose()


def test_unversioned_database_with_another_schema_is_refused(db_url):
    engine = make_engine(db_url)
    try:
        metadata = MetaData()
        Table("segment_definitions", metadata, Column("id", String(64), primary_key=True))
        metadata.create_all(engine)
        with pytest.raises(UnversionedCatalogError, match="segment_definitions"):
            upgrade(engine)
        assert current_revision(engine) is None
        assert _tables(engine) == {"segment_definitions"}  # nothing half-done
    finally:
        engine.dispose()


def test_database_from_a_newer_version_is_refused_clearly(catalog: Catalog):
    with catalog.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(UnknownRevisionError, match="'9999'"):
        catalog.upgrade()


def _alembic(*args: str) -> subprocess.CompletedProcess:
    ini = MIGRATIONS_DIR / "alembic.ini"
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), *args], capture_output=True, text=True, timeout=120
    )


def test_alembic_command_line(db_url):
    result = _alembic("-x", f"url={db_url}", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    result = _alembic("-x", f"url={db_url}", "current")
    assert result.returncode == 0, result.stderr
    assert f"{head_revision()} (head)" in result.stdout
    engine = make_engine(db_url)
    try:
        _assert_schema_matches_models(engine)
    finally:
        engine.dispose()


def test_alembic_offline_sql():
    result = _alembic("-x", "url=postgresql+psycopg2://nobody@127.0.0.1:1/none", "upgrade", "head", "--sql")
    assert result.returncode == 0, result.stderr
    for table in TABLES:
        assert f"CREATE TABLE {table} (" in result.stdout


def test_catalog_command(db_url):
    from segmentation_pipelines.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["catalog", "current", "--url", db_url])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"base (head is {head_revision()})"
    result = runner.invoke(main, ["catalog", "upgrade", "--url", db_url])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["catalog", "current", "--url", db_url])
    assert result.output.strip() == f"{head_revision()} (head)"
    result = runner.invoke(main, ["catalog", "downgrade", "base", "--url", db_url])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "catalog at base"
