"""Cheaper event writes on the embedded (SQLite) Dagster instance: keep its event index open while a run writes.

Dagster's SQLite event log (``SqliteEventLogStorage``, the default instance here) opens a new connection for every
event it stores and closes it again (``NullPool``). Its databases are in WAL mode, and in WAL mode the *last*
connection to close a database checkpoints it and deletes its write-ahead log, so that every asset event
(materialization planned, materialization: each is written to the run's database and mirrored into the shared
``index.db``) pays a checkpoint, a WAL file created and deleted again and their fsyncs, ~3-8 ms each on this machine,
several times per definition (issue 18, ``docs/performance.md`` "Dagster's share").

:func:`event_index_held` keeps one idle connection to ``index.db`` open while a segment run writes its events: the
connections Dagster opens and closes are then never the last, so their commits only append to the WAL and SQLite
checkpoints it in the background every 1,000 pages (its ``wal_autocheckpoint``), as for any long-lived connection.
Nothing Dagster writes or reads changes: the same events, in the same databases, read by the same code; the held
connection holds no lock (it is in autocommit mode and runs no statement after opening).

Only the index is held, not the run's own database: the Dagster UI follows a running run's event log by watching
that database's file for changes (``SqliteEventLogStorageWatchdog``), which a checkpoint is what modifies. Other
instances (PostgreSQL, ``deploy/postgres/dagster.yaml``) are left alone.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

log = logging.getLogger(__name__)


def event_index_path(instance: dg.DagsterInstance) -> Path | None:
    """The SQLite file of ``instance``'s cross-run event index, or None (not a run-sharded SQLite event log)."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
        INDEX_SHARD_NAME,
        SqliteEventLogStorage,
    )

    try:
        storage = instance.event_log_storage
    except Exception:  # an instance that cannot say: nothing to hold
        return None
    if not isinstance(storage, SqliteEventLogStorage):
        return None
    return Path(storage.path_for_shard(INDEX_SHARD_NAME))


@contextmanager
def event_index_held(instance: dg.DagsterInstance) -> Iterator[bool]:
    """While inside, one idle connection to the SQLite instance's ``index.db`` stays open (see the module
    docstring). Yields whether one is held; any problem opening it only means writes cost what they cost before."""
    path = event_index_path(instance)
    conn = None
    if path is not None and path.exists():
        try:
            # Autocommit, and the one statement finishes here: the connection holds no lock while it is kept.
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error:
            log.warning("could not open %s; Dagster's event writes are not sped up", path, exc_info=True)
            if conn is not None:
                conn.close()
            conn = None
    try:
        yield conn is not None
    finally:
        if conn is not None:
            conn.close()
