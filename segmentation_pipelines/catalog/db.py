"""Engine and sessions for the catalog database (SQLite by default, PostgreSQL in production).

Many processes write the catalog at once. On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (it takes
the write lock up front, so two writers queue on the busy timeout instead of one failing on a read-to-write lock
upgrade) and the file is in WAL mode (readers do not block the writer). On PostgreSQL a transaction that reads a row
and writes it back locks the row (``Repository.get(..., for_update=True)`` = ``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from segmentation_pipelines.catalog.engine import READ_ONLY_OPTION, make_engine
from segmentation_pipelines.catalog.migrations import upgrade

T = TypeVar("T")

# PostgreSQL SQLSTATEs after which the whole transaction can simply be run again.
_PG_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def now_ms() -> int:
    return int(time.time() * 1000)


def is_retryable(error: BaseException) -> bool:
    """A transaction that failed with this error can be run again as a whole (lock timeout, deadlock, ...)."""
    if not isinstance(error, DBAPIError):
        return False
    if isinstance(error, OperationalError) and any(
        word in str(error.orig).lower() for word in ("database is locked", "database is busy")
    ):
        return True
    return getattr(error.orig, "pgcode", None) in _PG_RETRYABLE


class Catalog:
    """The catalog database: one per process, shared by every service call."""

    _instances: dict[str, Catalog] = {}
    _instances_lock = threading.Lock()
    _all: weakref.WeakSet[Catalog] = weakref.WeakSet()

    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )
        Catalog._all.add(self)
        if migrate:
            self.upgrade()

    @classmethod
    def for_url(cls, url: str) -> Catalog:
        """One Catalog (and connection pool) per URL per process."""
        with cls._instances_lock:  # REST handlers run in threads: one pool, even on concurrent first use
            if url not in cls._instances:
                cls._instances[url] = cls(url)
            return cls._instances[url]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upgrade(self) -> None:
        """Bring the schema to the newest version (safe when several processes do it at once)."""
        upgrade(self.engine)

    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error.

        ``readonly=True`` only matters on SQLite: a deferred transaction that does not wait for (or hold) the write
        lock. Writing in it may fail with "database is locked"; use it for reads only.
        """
        factory = self._read_sessions if readonly else self._sessions
        with factory() as session, session.begin():
            yield session

    def transact(self, work: Callable[[Session], T], readonly: bool = False, attempts: int = 5) -> T:
        """Run ``work(session)`` in a transaction, running it again (up to ``attempts`` times) after a lock
        timeout or deadlock. ``work`` must have no effect outside the database: it may run more than once."""
        for attempt in Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=0.05, max=2),
            reraise=True,
        ):
            with attempt, self.session(readonly=readonly) as session:
                return work(session)
        raise AssertionError("unreachable")  # Retrying either returns or re-raises

    def dispose(self) -> None:
        self.engine.dispose()
        if Catalog._instances.get(self.url) is self:
            Catalog._instances.pop(self.url, None)


def _forget_connections_after_fork() -> None:
    # A forked child must not use (or close) the parent's pooled connections: it opens its own.
    for catalog in list(Catalog._all):
        catalog.engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections_after_fork)
