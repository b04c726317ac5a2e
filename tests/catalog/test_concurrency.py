"""Several OS processes writing the catalog at once lose nothing, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import event

from segmentation_pipelines.catalog import Catalog, Repository
from segmentation_pipelines.catalog.migrations import current_revision, head_revision, schema_differences
from segmentation_pipelines.catalog.models import Dataset, SegmentJob

WORKER = Path(__file__).with_name("_worker.py")
ORG = "test@AdobeOrg"


def _run_together(barrier: Path, commands: list[list[str]], timeout: float = 120) -> None:
    """Start every command, release them at once when all are ready, and require each to succeed."""
    barrier.mkdir()
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for cmd in commands
    ]
    try:
        deadline = time.monotonic() + timeout
        while len(list(barrier.glob("ready.*"))) < len(procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            assert not failed, failed[0].communicate()[1].decode()
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.01)
        (barrier / "go").touch()
        for proc in procs:
            _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_processes_migrating_a_fresh_database_at_once(db_url, tmp_path):
    workers = [str(n) for n in range(3)]
    _run_together(tmp_path / "barrier", [["upgrade", db_url, str(tmp_path / "barrier"), w] for w in workers])

    catalog = Catalog(db_url, migrate=False)
    try:
        assert current_revision(catalog.engine) == head_revision()
        with catalog.engine.connect() as conn:
            assert schema_differences(conn) == []
        with catalog.session() as s:
            names = sorted(r.name for r in Repository(s, Dataset, ORG, "prod").find())
        assert names == [f"from-{w}" for w in workers]
    finally:
        catalog.dispose()


def test_processes_inserting_and_incrementing_at_once_lose_nothing(catalog: Catalog, db_url, tmp_path):
    processes, rows, increments = 3, 100, 200
    with catalog.session() as s:
        counter_id = (
            Repository(s, Dataset, ORG, "prod").add(name="counter", xdm_class="x", body={"count": 0}).id
        )

    barrier = tmp_path / "barrier"
    _run_together(
        barrier,
        [
            ["write", db_url, str(barrier), str(w), str(rows), str(increments), counter_id]
            for w in range(processes)
        ],
    )

    with catalog.session() as s:
        jobs = Repository(s, SegmentJob, ORG, "prod").find()
        counter = Repository(s, Dataset, ORG, "prod").get(counter_id)
    assert len(jobs) == processes * rows
    assert {(j.body["worker"], j.body["i"]) for j in jobs} == {
        (str(w), i) for w in range(processes) for i in range(rows)
    }
    assert counter.body["count"] == processes * increments


def _write_in_forked_child(catalog: Catalog, name: str, seen=None) -> None:
    with catalog.session() as s:
        Repository(s, Dataset, ORG, "prod").add(name=name, xdm_class="x", body={})
        if seen is not None:  # this process, and the process that opened the connection that served the write
            seen.put((os.getpid(), s.connection().connection.info.get("opened_by")))


def test_a_forked_child_opens_its_own_connections(catalog: Catalog):
    """After fork, parent and child must not share a pooled connection (the child would corrupt the parent's)."""
    event.listen(
        catalog.engine, "connect", lambda _dbapi, record: record.info.setdefault("opened_by", os.getpid())
    )
    catalog.engine.dispose()  # so that every connection from now on is tagged
    context = multiprocessing.get_context("fork")
    seen = context.Queue()
    _write_in_forked_child(catalog, "parent-before", seen)  # the pool now holds this open connection
    assert seen.get(timeout=10) == (os.getpid(), os.getpid())
    child = context.Process(target=_write_in_forked_child, args=(catalog, "child", seen))
    child.start()
    child_pid, opened_by = seen.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert opened_by == child_pid, "the child used the connection it inherited from the parent"
    _write_in_forked_child(catalog, "parent-after", seen)
    assert seen.get(timeout=10) == (
        os.getpid(),
        os.getpid(),
    )  # the parent's pooled connection still serves it
    with catalog.session() as s:
        names = sorted(r.name for r in Repository(s, Dataset, ORG, "prod").find())
    assert names == ["child", "parent-after", "parent-before"]


def test_opening_a_fresh_sqlite_catalog_while_another_process_writes_waits_instead_of_failing(tmp_path):
    """SQLite never calls the busy handler for ``PRAGMA journal_mode=WAL``: without a retry, a process opening a
    fresh catalog while another holds the write lock failed at once with "database is locked" (seen in CI)."""
    path = tmp_path / "catalog.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other_writer (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other_writer VALUES (1)")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    catalog = Catalog(f"sqlite:///{path}")
    try:
        with catalog.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert current_revision(catalog.engine) == head_revision()
    finally:
        release.join()
        catalog.dispose()
        holder.close()
