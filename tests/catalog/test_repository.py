"""Repository behaviour on every table of the catalog, on SQLite and PostgreSQL: CRUD, scoping, constraints, JSON,
ordering and paging, row locks, read-only sessions and retried transactions."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import pytest
from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, Text, inspect
from sqlalchemy.exc import IntegrityError, OperationalError

from segmentation_pipelines.catalog import Catalog, Repository, now_ms
from segmentation_pipelines.catalog.db import is_retryable
from segmentation_pipelines.catalog.models import Base, Dataset, ExportJob, SegmentDefinition

ORG = "test@AdobeOrg"
SCOPE_COLUMNS = {"org_id", "sandbox", "created_ms", "updated_ms"}

# Every mapped table, so that a table added to models.py is covered without editing this file.
MODELS = sorted((m.class_ for m in Base.registry.mappers), key=lambda cls: cls.__tablename__)

DOC = {
    "name": "Frühlingskunden ✓",
    "expression": {"type": "PQL", "format": "pql/text", "value": 'homeAddress.country = "DE"'},
    "nested": [1, 2.5, None, True, False, {"deep": [[], {}]}],
    "big": 2**53 + 1,
    "negative": -17,
    "quote": 'say "hi"\n\tand \\ leave',
}


def _value(column, n: int, sample: dict) -> Any:
    """A value for ``column`` that differs per ``n`` (so rows and updates are distinguishable)."""
    t = column.type
    if isinstance(t, JSON):
        return {**sample, "n": n}
    if isinstance(t, Boolean):
        return n % 2 == 0
    if isinstance(t, (BigInteger, Integer)):
        return n
    if isinstance(t, (String, Text)):
        length = getattr(t, "length", None) or 64
        return f"{column.name}-{n}"[:length]
    raise AssertionError(f"no sample value for column {column} of type {t!r}: extend _value")


def _columns(session, model, org: str, sandbox: str, n: int) -> dict[str, Any]:
    """Values for every column of ``model`` a caller sets (creating the rows foreign keys point at)."""
    values = {}
    for column in model.__table__.columns:
        if column.primary_key or column.name in SCOPE_COLUMNS:
            continue
        foreign = next(iter(column.foreign_keys), None)
        if foreign is not None:
            parent_model = next(m for m in MODELS if m.__table__ is foreign.column.table)
            parent = Repository(session, parent_model, org, sandbox).add(
                **_columns(session, parent_model, org, sandbox, n)
            )
            values[column.key] = getattr(parent, foreign.column.key)
        else:
            values[column.key] = _value(column, n, DOC)
    return values


def _pk(model) -> str:
    return inspect(model).primary_key[0].key


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__tablename__)
def test_crud_every_table(catalog: Catalog, model):
    with catalog.session() as s:
        repo = Repository(s, model, ORG, "prod")
        row = repo.add(**_columns(s, model, ORG, "prod", 1))
        ident = getattr(row, _pk(model))
        assert ident is not None
        created = row.created_ms

    with catalog.session() as s:
        repo = Repository(s, model, ORG, "prod")
        row = repo.get(ident)
        assert row is not None
        assert (row.org_id, row.sandbox) == (ORG, "prod")
        for key, value in _columns(s, model, ORG, "other", 1).items():
            if not any(c.foreign_keys for c in model.__table__.columns if c.key == key):
                assert getattr(row, key) == value, key
        assert repo.count() == 1
        assert [getattr(r, _pk(model)) for r in repo.find()] == [ident]
        time.sleep(0.002)
        updated = {
            k: v
            for k, v in _columns(s, model, ORG, "prod", 2).items()
            if not model.__table__.c[k].foreign_keys
        }
        repo.update(row, **updated)

    with catalog.session() as s:
        repo = Repository(s, model, ORG, "prod")
        row = repo.get(ident)
        for key, value in updated.items():
            assert getattr(row, key) == value, key
        if hasattr(row, "updated_ms"):
            assert row.updated_ms > created
        assert row.created_ms == created
        repo.delete(row)

    with catalog.session() as s:
        repo = Repository(s, model, ORG, "prod")
        assert repo.get(ident) is None
        assert repo.count() == 0


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__tablename__)
def test_rows_are_invisible_from_another_sandbox_or_org(catalog: Catalog, model):
    with catalog.session() as s:
        row = Repository(s, model, ORG, "a").add(**_columns(s, model, ORG, "a", 1))
        ident = getattr(row, _pk(model))

    with catalog.session() as s:
        for org, sandbox in [(ORG, "b"), ("other@AdobeOrg", "a")]:
            other = Repository(s, model, org, sandbox)
            assert other.get(ident) is None
            assert other.get(ident, for_update=True) is None
            assert other.find() == []
            assert other.count() == 0
        assert Repository(s, model, ORG, "a").count() == 1


def test_segment_definition_name_is_unique_per_org_and_sandbox(catalog: Catalog):
    def add(org: str, sandbox: str) -> None:
        with catalog.session() as s:
            Repository(s, SegmentDefinition, org, sandbox).add(
                name="Gold members", batch_enabled=True, body={}
            )

    add(ORG, "prod")
    with pytest.raises(IntegrityError):
        add(ORG, "prod")
    add(ORG, "dev")  # same name, another sandbox
    add("other@AdobeOrg", "prod")  # same name and sandbox, another org
    with catalog.session() as s:
        assert Repository(s, SegmentDefinition, ORG, "prod").count() == 1


def test_json_body_round_trips_exactly(catalog: Catalog):
    with catalog.session() as s:
        ident = Repository(s, SegmentDefinition, ORG, "prod").add(name="d", batch_enabled=True, body=DOC).id
    with catalog.session() as s:
        body = Repository(s, SegmentDefinition, ORG, "prod").get(ident).body
    assert body == DOC
    assert isinstance(body["big"], int) and isinstance(body["nested"][1], float)


def test_find_orders_and_pages_without_repeating_or_skipping(catalog: Catalog):
    with catalog.session() as s:
        repo = Repository(s, SegmentDefinition, ORG, "prod")
        for n in range(25):
            # Three distinct creation times: many ties, which only the primary key can order.
            repo.add(name=f"def-{n:02d}", batch_enabled=n % 2 == 0, body={"n": n}, created_ms=1000 + n % 3)
        Repository(s, SegmentDefinition, ORG, "dev").add(name="elsewhere", batch_enabled=True, body={})

    with catalog.session() as s:
        repo = Repository(s, SegmentDefinition, ORG, "prod")
        by_name = repo.find(order_by=[SegmentDefinition.name.desc()])
        assert [r.name for r in by_name] == [f"def-{n:02d}" for n in reversed(range(25))]

        order = [SegmentDefinition.created_ms.desc()]
        pages = [repo.find(order_by=order, offset=offset, limit=10) for offset in (0, 10, 20)]
        assert [len(p) for p in pages] == [10, 10, 5]
        rows = [r for page in pages for r in page]
        assert len({r.id for r in rows}) == 25
        assert rows == repo.find(order_by=order)
        keys = [(-r.created_ms, r.id) for r in rows]
        assert keys == sorted(keys)

        enabled = repo.find(SegmentDefinition.batch_enabled.is_(True), order_by=[SegmentDefinition.name])
        assert [r.body["n"] for r in enabled] == list(range(0, 25, 2))
        assert repo.count(SegmentDefinition.batch_enabled.is_(True)) == 13


def test_export_jobs_get_increasing_integer_ids(catalog: Catalog):
    with catalog.session() as s:
        repo = Repository(s, ExportJob, ORG, "prod")
        ids = [repo.add(body={}, status="NEW", attempt=0).id for _ in range(3)]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_deleting_a_dataset_deletes_its_batches(catalog: Catalog):
    from segmentation_pipelines.catalog.models import Batch

    with catalog.session() as s:
        ds = Repository(s, Dataset, ORG, "prod").add(name="people", xdm_class="_xdm.context.profile", body={})
        Repository(s, Batch, ORG, "prod").add(dataset_id=ds.id, status="success", body={}, row_count=3)
    with catalog.session() as s:
        Repository(s, Dataset, ORG, "prod").delete(Repository(s, Dataset, ORG, "prod").get(ds.id))
    with catalog.session() as s:
        assert Repository(s, Batch, ORG, "prod").count() == 0


def test_get_for_update_rereads_a_row_changed_by_another_transaction(catalog: Catalog):
    with catalog.session() as s:
        ident = Repository(s, Dataset, ORG, "prod").add(name="v1", xdm_class="x", body={"v": 1}).id
    with catalog.session() as outer:
        repo = Repository(outer, Dataset, ORG, "prod")
        stale = repo.get(ident)
        assert stale.body == {"v": 1}
        if catalog.dialect == "postgresql":
            # Another connection commits a change after `outer` first read the row.
            with catalog.session() as other:
                Repository(other, Dataset, ORG, "prod").update(
                    Repository(other, Dataset, ORG, "prod").get(ident), body={"v": 2}
                )
            assert repo.get(ident).body == {"v": 1}  # identity map: the stale copy
            assert repo.get(ident, for_update=True).body == {"v": 2}
        else:
            # SQLite: `outer` holds the write lock, nobody else can change the row; the locked read is the row.
            assert repo.get(ident, for_update=True) is stale


def test_readonly_session_reads_while_a_writer_holds_its_transaction(catalog: Catalog):
    with catalog.session() as s:
        ident = Repository(s, Dataset, ORG, "prod").add(name="before", xdm_class="x", body={}).id

    seen: list[str] = []

    def reader() -> None:
        with catalog.session(readonly=True) as s:
            seen.append(Repository(s, Dataset, ORG, "prod").get(ident).name)

    with catalog.session() as writer:
        repo = Repository(writer, Dataset, ORG, "prod")
        repo.update(repo.get(ident), name="uncommitted")
        thread = threading.Thread(target=reader)
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive(), "a read-only session waited for the writer"
    assert seen == ["before"]


def test_transact_runs_the_work_again_after_a_lock_timeout(catalog: Catalog, tmp_path):
    # A real "database is locked" error: a second connection with no busy timeout meets a held write lock.
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        sqlite3.connect(path, timeout=0).execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as raw:
        locked = OperationalError("BEGIN IMMEDIATE", {}, raw)
    finally:
        holder.rollback()
        holder.close()
    assert is_retryable(locked)
    assert not is_retryable(ValueError("database is locked"))

    calls = []

    def work(session) -> str:
        calls.append(1)
        row = Repository(session, Dataset, ORG, "prod").add(name=f"try-{len(calls)}", xdm_class="x", body={})
        if len(calls) == 1:
            raise locked  # the first attempt's insert must be rolled back
        return row.name

    assert catalog.transact(work) == "try-2"
    with catalog.session() as s:
        assert [r.name for r in Repository(s, Dataset, ORG, "prod").find()] == ["try-2"]

    def fails(session):
        raise ValueError("not retryable")

    with pytest.raises(ValueError):
        catalog.transact(fails)


def test_now_ms_is_milliseconds():
    assert abs(now_ms() - time.time() * 1000) < 1000
