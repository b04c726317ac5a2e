"""Requests that a Dagster run carries out (segment jobs, export jobs, external-audience ingestion runs): the one
home of the life cycle they share.

A tracked row has ``status``, ``attempt``, ``run_id`` (the Dagster run), ``created_ms``/``updated_ms`` and a JSON
``body`` that mirrors ``status`` and keeps private state under ``_internal`` (never returned). Its life:

* written ``NEW``; a launcher (a sensor, or ``serve``'s runner without a daemon) **claims** it
  (:meth:`TrackedRuns.claim_for_launch`: ``NEW`` -> the kind's claimed status with the next attempt, under the row
  lock, so a sensor and a runner never both launch it) and launches the run, run key ``<id>:<attempt>``; a claimed
  row whose run never appeared goes back to ``NEW`` (:meth:`TrackedRuns.requeue`);
* the run's outcome is written back by the kind's ``sync_with_run`` (idempotent; terminal rows never change), from
  run-status sensors (``defs/run_tracking.py``), the reconciliation pass (``service/reconcile.py``), an in-process
  run (:meth:`TrackedRuns.run_in_process`) and a read (:meth:`TrackedRuns.settle_on_read`: a row whose run has ended
  is settled before it is returned, without waiting for a sensor);
* an ended row records its ``totalTime`` (:meth:`TrackedRuns._set_status`).

Each kind says what differs with class attributes (its table, statuses and wording) and a few hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from sqlalchemy import select

from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.errors import ApiError, NotFound
from segmentation_pipelines.launcher import ERROR_RUN_FAILED, RUN_FAILURE, RunRequest
from segmentation_pipelines.service.context import ServiceContext

log = logging.getLogger(__name__)

INTERNAL = "_internal"  # the key of a row body's private state


def error_list(error: Any, default: str) -> list[dict]:
    """A run's ``error`` (None, a message, an ``{code, msg, ...}`` dict or a list of them) as the ``errors`` of the
    request: ``[{code, msg, ...}]``, ``ERROR_RUN_FAILED`` where no code is given."""
    if error is None:
        return [{"code": ERROR_RUN_FAILED, "msg": default}]
    if isinstance(error, str):
        return [{"code": ERROR_RUN_FAILED, "msg": error}]
    if isinstance(error, Mapping):
        return [
            {
                "code": str(error.get("code") or ERROR_RUN_FAILED),
                **{k: v for k, v in error.items() if k != "code"},
            }
        ]
    return [e for item in error for e in error_list(item, default)]


def with_internal(row, **values: Any) -> None:
    """Set keys of the row body's ``_internal`` state (the body is replaced, so SQLAlchemy sees the change)."""
    internal = dict(row.body.get(INTERNAL) or {})
    internal.update(values)
    row.body = {**row.body, INTERNAL: internal}


class TrackedRuns:
    """Base of the services whose rows Dagster runs carry out; see the module docstring."""

    model: ClassVar[type]  # the catalog table
    what: ClassVar[str]  # the row in messages: "Segment job"
    NEW: ClassVar[str] = "NEW"
    CLAIMED: ClassVar[str]  # the status a claimed row takes (QUEUED or PROCESSING)
    TERMINAL: ClassVar[frozenset[str]]
    # Statuses of a row whose run may have ended: a read settles them, reconciliation repairs them.
    RUNNING: ClassVar[tuple[str, ...]]
    # The metrics block of the row's work ("profileSegmentationTime"); None: the kind records no metrics here.
    WORK_METRIC: ClassVar[str | None] = None
    DEFAULT_ERROR: ClassVar[str] = "The Dagster run of this request failed."

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    # --- hooks of each kind --------------------------------------------------------------------------------------

    @staticmethod
    def _key(ident: Any) -> Any:
        """The primary key of ``ident`` as the table stores it."""
        return ident

    def _not_found(self, ident: Any) -> ApiError:
        return NotFound(self.what, ident)

    def _prepare_request(self, ident: Any) -> Any:
        """What building a run request reads in its own catalog session, before the row is locked (the stale
        profile-store assets to refresh first)."""
        return None

    def _run_request(self, row, prepared: Any) -> RunRequest:
        raise NotImplementedError

    def _on_claim(self, row) -> None:
        """Changes a kind makes to a row it claims (besides status and attempt)."""

    def _doc(self, row) -> dict:
        raise NotImplementedError

    def cancelling(self, row) -> bool:
        """Whether a cancel of this row is under way (reconciliation terminates its run again)."""
        return False

    def sync_with_run(self, ident: Any, run_status: Any, run_id: str | None, error: Any = None) -> dict:
        raise NotImplementedError

    # --- the shared life cycle -----------------------------------------------------------------------------------

    @classmethod
    def in_status(
        cls, catalog, statuses: Iterable[str], limit: int | None = None
    ) -> list[tuple[str, str, Any]]:
        """``(org, sandbox, id)`` of every row in ``statuses``, oldest first, across sandboxes (sensors, runner)."""
        m = cls.model
        query = (
            select(m.org_id, m.sandbox, m.id).where(m.status.in_(list(statuses))).order_by(m.created_ms, m.id)
        )
        if limit is not None:
            query = query.limit(limit)
        with catalog.session(readonly=True) as session:
            return [tuple(row) for row in session.execute(query)]

    def _row(self, session, ident: Any, lock: bool = False):
        """The row; ``lock=True`` (every read-modify-write) holds it until commit, so a cancel and a launch racing
        on PostgreSQL cannot both win (SQLite's BEGIN IMMEDIATE already serializes writers)."""
        row = self.ctx.repo(session, self.model).get(self._key(ident), for_update=lock)
        if row is None:
            raise self._not_found(ident)
        return row

    def _touch(self, session, row) -> None:
        row.updated_ms = now_ms()
        session.flush()

    def _set_status(self, session, row, status: str, errors: list | None = None) -> None:
        body = dict(row.body)
        body["status"] = status
        if status in self.TERMINAL and self.WORK_METRIC is not None:
            metrics = dict(body.get("metrics") or {})
            total = dict(metrics.get("totalTime") or {})
            start = int(total.get("startTimeInMs") or row.created_ms)
            end = now_ms()
            metrics["totalTime"] = {"startTimeInMs": start, "endTimeInMs": end, "totalTimeInMs": end - start}
            metrics.setdefault(self.WORK_METRIC, {})
            body["metrics"] = metrics
        if errors:
            body["errors"] = errors
        row.body = body
        row.status = status
        self._touch(session, row)

    def run_request_for(self, ident: Any) -> RunRequest:
        """What a run of this row is: its assets (after the stale profile-store assets it needs) and its tags."""
        prepared = self._prepare_request(ident)
        with self.ctx.catalog.session(readonly=True) as session:
            return self._run_request(self._row(session, ident), prepared)

    def claim_for_launch(self, ident: Any) -> RunRequest | None:
        """``NEW`` -> claimed with the next attempt; the run request to launch (``None`` if no longer ``NEW``)."""
        prepared = self._prepare_request(ident)
        with self.ctx.catalog.session() as session:
            row = self._row(session, ident, lock=True)
            if row.status != self.NEW:
                return None
            row.attempt = (row.attempt or 0) + 1
            with_internal(row, queued_ms=now_ms())
            self._on_claim(row)
            self._set_status(session, row, self.CLAIMED)
            return self._run_request(row, prepared)

    def requeue(self, ident: Any, reason: str) -> bool:
        """A claimed row whose run never appeared goes back to ``NEW`` (the launcher retries with a new key)."""
        with self.ctx.catalog.session() as session:
            row = self._row(session, ident, lock=True)
            if row.status != self.CLAIMED or row.run_id:
                return False
            log.warning("%s %s: %s; launching it again", self.what, ident, reason)
            with_internal(row, launch="sensor")
            self._set_status(session, row, self.NEW)
            return True

    def settle_on_read(self, ident: Any, status: str, run_id: str | None) -> dict | None:
        """The row settled with its run's outcome when the run has ended (``None``: nothing to settle). A run not
        recorded on the row yet (launched by a sensor or a schedule tick) is found by its tags."""
        if status not in self.RUNNING:
            return None
        run = self.ctx.launcher.find_run(str(ident), run_id)
        if run is None or not run.finished:
            return None
        errors = self.ctx.launcher.errors(run.run_id) if run.status == RUN_FAILURE else None
        return self.sync_with_run(ident, run.status, run.run_id, error=errors)

    def run_in_process(self, ident: Any) -> dict:
        """Run it now in this process through Dagster; the ended row."""
        request = self.run_request_for(ident)
        run_id = self.ctx.launcher.new_run_id()
        self.sync_with_run(ident, "STARTED", run_id)
        try:
            status, error = self.ctx.launcher.execute(request, run_id)
        except Exception as exc:  # the run could not even start (definitions failed to load...)
            log.exception("%s %s: in-process run failed to start", self.what, ident)
            status, error = "FAILURE", {"code": ERROR_RUN_FAILED, "msg": f"{type(exc).__name__}: {exc}"}
        return self.sync_with_run(ident, status, run_id, error=error)

    def _find_run_id(self, ident: Any) -> str | None:
        try:
            run = self.ctx.launcher.find_run(str(ident))
            return run.run_id if run else None
        except Exception:  # Dagster unreachable: the reconciliation pass finds the run later
            log.exception("%s %s: could not look its run up", self.what, ident)
            return None

    def _terminate(self, ident: Any, run_id: str) -> str | None:
        """Ask Dagster to terminate the run; the run's status afterwards (``None`` if unknown)."""
        try:
            return self.ctx.launcher.terminate(run_id)
        except Exception:  # Dagster unreachable: the reconciliation pass retries the termination
            log.exception("%s %s: could not terminate run %s", self.what, ident, run_id)
            return None
