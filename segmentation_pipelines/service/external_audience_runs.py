"""Ingestion runs of external audiences (``/external-audience/{id}/runs``): requests that Dagster runs of
``external_audience_ingest`` carry out, with the life of every tracked run (``service/tracked_runs.py``).

* ``start_run`` (``POST .../runs``) writes one; creating an audience writes its first; the file-arrival check writes
  one when the source's files changed (``service/external_audience_ingestion.py``). ``wait=True`` runs it here.
* the ``external_audience_launcher`` sensor (or ``serve``'s runner) claims ``NEW`` runs (``QUEUED``) and launches
  them (run key ``<run id>:<attempt>``; ``<audience id>:<fingerprint>`` for file arrivals); run-status sensors and
  the reconciliation pass write the outcome back (``PROCESSING``, ``SUCCESS``, ``FAILED``), so none stays stuck.
* each run records its two stages (``DATASET_INGEST``, ``PROFILE_STORE_INGEST``) in ``details``; an ended run
  settles the creation operation that follows it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.catalog.repository import new_id
from segmentation_pipelines.errors import ApiError
from segmentation_pipelines.launcher import RunRequest, key_part, run_status_name
from segmentation_pipelines.service.external_audience_rules import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    audience_row,
    bad,
    epoch_ms,
    not_found,
    source_files,
    unprocessable,
)
from segmentation_pipelines.service.profile_store import ProfileStoreService
from segmentation_pipelines.service.tracked_runs import INTERNAL, TrackedRuns, error_list

KIND = "external_audience"
JOB_NAME = "external_audience_ingest"
TAG_TRIGGER = "segmentation/trigger"

NEW, QUEUED, PROCESSING = "NEW", "QUEUED", "PROCESSING"
SUCCESS, FAILED, CANCELLED = "SUCCESS", "FAILED", "CANCELLED"
ACTIVE = (NEW, QUEUED, PROCESSING)
TERMINAL = frozenset({SUCCESS, FAILED, CANCELLED})
_RANK = {NEW: 0, QUEUED: 1, PROCESSING: 2}
RUN_TO_STATUS = {"QUEUED": QUEUED, "STARTING": QUEUED, "STARTED": PROCESSING, "SUCCESS": SUCCESS}
RUN_TO_STATUS |= {"FAILURE": FAILED, "CANCELED": CANCELLED}
STAGES = ("DATASET_INGEST", "PROFILE_STORE_INGEST")
RUNS_PER_AUDIENCE_PER_DAY = 10
RUNS_PER_SANDBOX_PER_DAY = 100


def asset_key(audience_id: str) -> list[str]:
    """The Dagster asset of an external audience's membership."""
    return ["external_audience", key_part(audience_id)]


def _day_start_ms(ms: int) -> int:
    day = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(day.timestamp() * 1000)


class ExternalAudienceRunsService(TrackedRuns):
    """The ingestion runs of one (org, sandbox); see the module docstring."""

    model = models.ExternalAudienceRun
    what = "External-audience run"
    CLAIMED = QUEUED
    TERMINAL = TERMINAL
    RUNNING = (QUEUED, PROCESSING)
    DEFAULT_ERROR = "The Dagster run of this ingestion failed."

    # --- REST operations (through ExternalAudiencesService) -----------------------------------------------------

    def start_run(self, id: str, body: Any = None, *, wait: bool = False) -> dict:  # noqa: A002
        """``POST .../runs``: a new ingestion run of the audience's source (``wait=True``: run it here)."""
        body = {} if body is None else body
        if not isinstance(body, Mapping):
            raise bad("body: expected {dataFilterStartTime, dataFilterEndTime?, differentialIngestion?}.")
        if "dataFilterStartTime" not in body:
            raise bad("dataFilterStartTime: required (epoch seconds; files modified from then on are read).")
        with self.ctx.catalog.session(readonly=True) as session:
            row = audience_row(self.ctx, session, id)
            confined = self.ctx.confined or bool((row.body.get(INTERNAL) or {}).get("confined"))
            doc = dict(row.body)
        source_files(self.ctx, doc, confined=confined, required=True)
        run = self.new_run(id, body, trigger="api", mode=wait)
        if wait:
            return self.run_in_process(run["runId"])
        return run

    def runs(self, id: str, **query: Any) -> dict:  # noqa: A002
        with self.ctx.catalog.session(readonly=True) as session:
            audience_row(self.ctx, session, id)
            m = models.ExternalAudienceRun
            rows = self.ctx.repo(session, m).find(m.audience_id == id, order_by=[m.created_ms.desc()])
            docs = [self._doc(r) for r in rows]
        return {"runs": docs}

    def get_run(self, id: str, run_id: str) -> dict:  # noqa: A002
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._run_row(session, id, run_id)
            doc, dagster_run = self._doc(row), row.run_id
        return self.settle_on_read(run_id, doc["status"], dagster_run) or doc

    def get_run_audience(self, run_id: str) -> str:
        with self.ctx.catalog.session(readonly=True) as session:
            return self._row(session, run_id).audience_id

    # --- run life (sensors, runner, in-process) ----------------------------------------------------------------

    def new_run(
        self, audience_id: str, body: Mapping[str, Any], trigger: str, mode: bool, **extra: Any
    ) -> dict:
        """A ``NEW`` ingestion run of the audience (``QUEUED`` when ``mode``: the caller runs it in this process),
        within the limits: one run in progress per audience, daily counts per audience and per sandbox."""
        differential = body.get("differentialIngestion", True)
        if not isinstance(differential, bool):
            raise bad("differentialIngestion: expected true or false.")
        start = (
            epoch_ms(body["dataFilterStartTime"], "dataFilterStartTime")
            if "dataFilterStartTime" in body
            else None
        )
        end = (
            epoch_ms(body["dataFilterEndTime"], "dataFilterEndTime")
            if body.get("dataFilterEndTime")
            else None
        )
        if start is not None and end is not None and end < start:
            raise bad("dataFilterEndTime: must not be before dataFilterStartTime.")
        ingestion_ms = None
        if body.get("ingestionTime") is not None:  # extension: when the rows were true (backfills)
            ingestion_ms = epoch_ms(body["ingestionTime"], "ingestionTime")
        now = now_ms()
        run_id = new_id()
        m = models.ExternalAudienceRun
        with self.ctx.catalog.session() as session:
            audience = audience_row(self.ctx, session, audience_id, lock=True)
            runs = self.ctx.repo(session, m)
            active = runs.find(m.audience_id == audience_id, m.status.in_(ACTIVE))
            if active:
                raise unprocessable(
                    f"External audience '{audience_id}' already has a run in progress ({active[0].id}, "
                    f"{active[0].status}); only one run may be in progress per audience."
                )
            today = _day_start_ms(now)
            if runs.count(m.audience_id == audience_id, m.created_ms >= today) >= RUNS_PER_AUDIENCE_PER_DAY:
                raise unprocessable(
                    f"External audience '{audience_id}' has had {RUNS_PER_AUDIENCE_PER_DAY} runs today (UTC), "
                    "the daily limit per audience; try again tomorrow."
                )
            if runs.count(m.created_ms >= today) >= RUNS_PER_SANDBOX_PER_DAY:
                raise unprocessable(
                    f"This sandbox has had {RUNS_PER_SANDBOX_PER_DAY} external-audience runs today (UTC), the daily "
                    "limit per sandbox; try again tomorrow."
                )
            doc = {
                "audienceName": audience.name,
                "audienceId": audience_id,
                "runId": run_id,
                "differentialIngestion": differential,
                "dataFilterStartTime": None if start is None else start // 1000,
                "dataFilterEndTime": None if end is None else end // 1000,
                "createdAt": now,
                "createdBy": self.ctx.user,
                "trigger": trigger,
                "details": [{"stage": s, "status": "NOT_STARTED", "flowRunId": None} for s in STAGES],
                INTERNAL: {
                    "launch": "in_process" if mode else "sensor",
                    "ingestionMs": ingestion_ms,
                    **extra,
                },
            }
            runs.add(
                id=run_id,
                audience_id=audience_id,
                status=QUEUED if mode else NEW,
                attempt=1 if mode else 0,
                body=doc,
                created_ms=now,
                updated_ms=now,
            )
        return self.get_run(audience_id, run_id)

    def sync_with_run(self, run_id: str, run_status: Any, dagster_run: str | None, error: Any = None) -> dict:
        """Write a Dagster run's status onto the ingestion run (idempotent; terminal runs never change)."""
        target = RUN_TO_STATUS.get(run_status_name(run_status))
        with self.ctx.catalog.session() as session:
            row = self._row(session, run_id, lock=True)
            if dagster_run and not row.run_id:
                row.run_id = dagster_run
            if target is not None and row.status not in TERMINAL:
                if target in TERMINAL:
                    body = dict(row.body)
                    if target == FAILED and not body.get("errors"):
                        body["errors"] = error_list(error, self.DEFAULT_ERROR)
                    body["details"] = [
                        {
                            **d,
                            "status": d["status"]
                            if d["status"] in (SUCCESS, FAILED)
                            else (
                                "FAILED" if target == FAILED and d["status"] == PROCESSING else d["status"]
                            ),
                        }
                        for d in body.get("details") or []
                    ]
                    row.body = body
                    self._set_status(session, row, target)
                elif _RANK[target] > _RANK.get(row.status, 0):
                    self._set_status(session, row, target)
            else:
                session.flush()
            doc = self._doc(row)
            audience_id = row.audience_id
        if doc["status"] in TERMINAL:
            self._settle_operation(audience_id, run_id, doc["status"])
        return doc

    def record_stage(
        self, run_id: str, index: int, status: str, dagster_run: str | None, metrics: dict | None = None
    ) -> None:
        """Record stage ``index`` (of ``STAGES``) of an ingestion run: its status, Dagster run and metrics."""
        with self.ctx.catalog.session() as session:
            row = self._row(session, run_id, lock=True)
            body = dict(row.body)
            details = [dict(d) for d in body.get("details") or []]
            details[index].update(status=status, flowRunId=dagster_run)
            body["details"] = details
            if metrics is not None:
                body["metrics"] = metrics
                internal = dict(body.get(INTERNAL) or {})
                internal.setdefault("fingerprint", metrics.get("fingerprint"))
                body[INTERNAL] = internal
            row.body = body
            row.updated_ms = now_ms()
            session.flush()

    def fail_stage(self, run_id: str, index: int, message: str) -> None:
        """Stage ``index`` failed: the run's error says which stage and why."""
        self.record_stage(run_id, index, FAILED, None)
        with self.ctx.catalog.session() as session:
            row = self._row(session, run_id, lock=True)
            row.body = {
                **row.body,
                "errors": [
                    {"code": INTERNAL_ERROR if index else BAD_REQUEST, "msg": f"{STAGES[index]}: {message}"}
                ],
            }
            session.flush()

    # --- internals ---------------------------------------------------------------------------------------------

    def _not_found(self, ident: Any) -> ApiError:
        return not_found("Run", ident)

    def _prepare_request(self, run_id: str) -> list[list[str]]:
        return ProfileStoreService(self.ctx).refresh_selection()

    def _run_request(self, row: models.ExternalAudienceRun, store: list[list[str]]) -> RunRequest:
        """The Dagster run of an ingestion: the stale profile-store assets first, then the audience's asset."""
        return RunRequest(
            kind=KIND,
            request_id=row.id,
            attempt=max(int(row.attempt or 0), 1),
            job_name=JOB_NAME,
            asset_selection=tuple(tuple(k) for k in [*store, asset_key(row.audience_id)]),
            org=row.org_id,
            sandbox=row.sandbox,
            tags={TAG_TRIGGER: str(row.body.get("trigger") or "api")},
        )

    def _settle_operation(self, audience_id: str, run_id: str, status: str) -> None:
        m = models.ExternalAudienceOperation
        with self.ctx.catalog.session() as session:
            for op in self.ctx.repo(session, m).find(m.audience_id == audience_id, m.status == PROCESSING):
                if op.body.get("runId") == run_id:
                    op.status = SUCCESS if status == SUCCESS else FAILED
                    op.updated_ms = now_ms()
            session.flush()

    def _run_row(self, session, audience_id: str | None, run_id: str, lock: bool = False):
        row = self.ctx.repo(session, models.ExternalAudienceRun).get(run_id, for_update=lock)
        if row is None or (audience_id is not None and row.audience_id != audience_id):
            if audience_id is not None:
                audience_row(self.ctx, session, audience_id)
            raise not_found("Run", run_id)
        return row

    def _doc(self, row: models.ExternalAudienceRun) -> dict:
        doc = {k: v for k, v in row.body.items() if k != INTERNAL}
        doc["status"] = row.status
        doc["updatedAt"] = row.updated_ms
        if row.run_id:
            doc["flowRunId"] = row.run_id  # the Dagster run
        return doc
