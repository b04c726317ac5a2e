"""The catalog's SQLAlchemy engine, configured for concurrent use from many processes (SQLite: ``BEGIN IMMEDIATE``
writers, WAL, a busy timeout; PostgreSQL: pre-ping, connect timeout). Used by the catalog (``db.py``) and by its
migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

# Execution option: on SQLite, begin a deferred (read) transaction instead of BEGIN IMMEDIATE.
READ_ONLY_OPTION = "catalog_read_only"

SQLITE_BUSY_TIMEOUT_S = 60


def make_engine(url: str) -> Engine:
    """An engine configured for concurrent use of the catalog from many processes."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pool_pre_ping: a pooled connection dropped by a server restart or idle timeout is replaced, not used.
        # connect_timeout: an unreachable server is an error within seconds, not a hang.
        connect_args = {"connect_timeout": 10} if parsed.get_driver_name() == "psycopg2" else {}
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)

    database = parsed.database
    in_memory = not database or database == ":memory:"
    if not in_memory:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        # One shared connection, or every pooled connection would see its own empty in-memory database.
        **({"poolclass": StaticPool} if in_memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not pysqlite, issue BEGIN (see _sqlite_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        _set_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn):
        conn.exec_driver_sql(
            "BEGIN" if conn.get_execution_options().get(READ_ONLY_OPTION) else "BEGIN IMMEDIATE"
        )

    return engine


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _set_wal(cur: sqlite3.Cursor) -> None:
    """Switch to WAL, retrying while another process holds the lock: SQLite does not call the busy handler for a
    journal-mode change, so processes opening a fresh database at once would otherwise fail "database is locked"."""
    for attempt in Retrying(
        retry=retry_if_exception(_is_locked),
        stop=stop_after_delay(SQLITE_BUSY_TIMEOUT_S),
        wait=wait_random_exponential(multiplier=0.005, max=0.5),
        reraise=True,
    ):
        with attempt:
            cur.execute("PRAGMA journal_mode=WAL")
