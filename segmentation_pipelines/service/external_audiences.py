"""External audiences (``/data/core/ais/external-audience...``): audiences built elsewhere, imported from files.

An external audience is a row of ``external_audiences`` (its document: fields, source, TTL...) plus an audience of
type ``ExternalSegment`` under ``/audiences`` with the same id, so ``inSegment("<audienceId>")`` and
``/audiences/{id}/members`` read it like any audience. Its members come from **ingestion runs**
(``external_audience_runs``), requests that become Dagster runs of ``external_audience_ingest`` like segment jobs:

* ``create`` validates, writes the audience and, when its source has files, a first run (``NEW``); the creation
  operation follows that run. ``start_run`` writes one more; the file-arrival sensor writes one when the source's
  fingerprint (names, sizes, modification times) changed. ``wait=True`` runs it here through Dagster.
* the ``external_audience_launcher`` sensor (or ``serve``'s runner) claims ``NEW`` runs (``QUEUED``) and launches
  them (run key ``<run id>:<attempt>``; ``<audience id>:<fingerprint>`` for file arrivals); run-status sensors and
  :func:`reconcile_runs` write the outcome back (``PROCESSING``, ``SUCCESS``, ``FAILED``), so none stays stuck.
* the run's asset (``["external_audience", <id>]``) calls :meth:`ExternalAudiencesService.execute`: stage
  ``DATASET_INGEST`` (validated rows, rejects counted with reasons), stage ``PROFILE_STORE_INGEST`` (identities
  resolved to merged profiles, membership published). See ``engine/external_ingest.py`` and
  ``docs/decisions/external-audiences.md``.
* :meth:`ExternalAudiencesService.maintain` (sensor, runner) exits members whose TTL passed and re-resolves pending
  identities once the profile store changed.
"""

from __future__ import annotations

import builtins
import copy
import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from segmentation_pipelines import duck
from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.catalog.repository import new_id
from segmentation_pipelines.engine import external_ingest as ingest
from segmentation_pipelines.engine import memberships
from segmentation_pipelines.errors import ApiError
from segmentation_pipelines.landing import files_under, resolve_path
from segmentation_pipelines.launcher import (
    ERROR_RUN_FAILED,
    ERROR_RUN_VANISHED,
    RUN_FAILURE,
    RunRequest,
    key_part,
    run_status_name,
)
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.xdm import STANDARD_NAMESPACES
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.merge_policies import MergePoliciesService
from segmentation_pipelines.timeutil import iso

log = logging.getLogger(__name__)

KIND = "external_audience"
JOB_NAME = "external_audience_ingest"
TAG_TRIGGER = "segmentation/trigger"
AUDIENCE_TYPE = "ExternalSegment"

# The contract's error codes (aep-api.md §11).
BAD_REQUEST, NOT_FOUND, DUPLICATE, UNPROCESSABLE = "100910-400", "100940-404", "100950-409", "100960-422"
INTERNAL = "100970-500"

NEW, QUEUED, PROCESSING = "NEW", "QUEUED", "PROCESSING"
SUCCESS, FAILED, CANCELLED = "SUCCESS", "FAILED", "CANCELLED"
ACTIVE = (NEW, QUEUED, PROCESSING)
TERMINAL = frozenset({SUCCESS, FAILED, CANCELLED})
_RANK = {NEW: 0, QUEUED: 1, PROCESSING: 2}
RUN_TO_STATUS = {"QUEUED": QUEUED, "STARTING": QUEUED, "STARTED": PROCESSING, "SUCCESS": SUCCESS}
RUN_TO_STATUS |= {"FAILURE": FAILED, "CANCELED": CANCELLED}
STAGES = ("DATASET_INGEST", "PROFILE_STORE_INGEST")

MAX_FIELDS = 41
TTL_MIN, TTL_MAX, TTL_DEFAULT = 1, 90, 30
RUNS_PER_AUDIENCE_PER_DAY = 10
RUNS_PER_SANDBOX_PER_DAY = 100
SOURCE_SUFFIXES = {".csv": "csv", ".parquet": "parquet"}
CLOUD_TYPES = ("S3", "DLZ", "GCS", "Azure", "SFTP")
NEEDS_CONNECTION = ("S3", "GCS", "SFTP")
PATCHABLE = ("description", "labels", "fields", "ttlInDays")
NAMESPACE_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
RECONCILE_GRACE_S = 120.0
_INTERNAL = "_internal"


def bad(message: str) -> ApiError:
    return ApiError(400, message, code=BAD_REQUEST, title="BAD_REQUEST")


def unprocessable(message: str) -> ApiError:
    return ApiError(422, message, code=UNPROCESSABLE, title="UNPROCESSABLE_ENTITY")


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(
        404, f"{what} '{ident}' was not found in this sandbox.", code=NOT_FOUND, title="NOT_FOUND"
    )


def _day_start_ms(ms: int) -> int:
    day = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(day.timestamp() * 1000)


def _epoch_ms(value: Any, where: str) -> int:
    """Epoch seconds (the contract's unit) or milliseconds (values above 10^11) as milliseconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        else:
            raise bad(f"{where}: expected epoch seconds (an integer), got {value!r}.")
    value = int(value)
    return value if abs(value) > 10**11 else value * 1000


def runs_in_status(catalog, statuses) -> builtins.list[tuple[str, str, str]]:
    """``(org, sandbox, run id)`` of every run in ``statuses``, oldest first, across sandboxes (sensors, runner)."""
    m = models.ExternalAudienceRun
    query = select(m.org_id, m.sandbox, m.id).where(m.status.in_(list(statuses))).order_by(m.created_ms, m.id)
    with catalog.session(readonly=True) as session:
        return [tuple(r) for r in session.execute(query)]


def audiences_everywhere(catalog) -> builtins.list[tuple[str, str, str]]:
    """``(org, sandbox, audience id)`` of every external audience (the sensors walk them)."""
    m = models.ExternalAudience
    with catalog.session(readonly=True) as session:
        return [tuple(r) for r in session.execute(select(m.org_id, m.sandbox, m.id).order_by(m.created_ms))]


def snapshot(catalog) -> builtins.list[dict[str, Any]]:
    """Every external audience, for the Dagster assets (pinned at code-location load)."""
    m = models.ExternalAudience
    with catalog.session(readonly=True) as session:
        return [
            {
                "id": r.id,
                "org_id": r.org_id,
                "sandbox": r.sandbox,
                "name": r.name,
                "audienceId": r.body.get("audienceId"),
                "path": (r.body.get("sourceSpec") or {}).get("params", {}).get("path"),
            }
            for r in session.scalars(select(m).order_by(m.created_ms, m.id))
        ]


def asset_key(audience_id: str) -> builtins.list[str]:
    return ["external_audience", key_part(audience_id)]


class ExternalAudiencesService:
    """``/data/core/ais/external-audience...`` in one (org, sandbox); see the module docstring."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.layout = StoreLayout(ctx.sandbox_root)

    # --- audiences ---------------------------------------------------------------------------------------------

    def create(self, body: Any, *, wait: bool = False) -> dict:
        """Validate, write the audience (and its ``/audiences`` view) and its first run; 202 ``{operationId}``."""
        doc = self._validated(body)
        _fmt, files = self._source_files(doc, confined=self.ctx.confined, required=False)
        now = now_ms()
        ident = new_id()
        audience_id = doc.pop("customAudienceId", None) or ident
        doc.update(
            id=ident,
            audienceId=audience_id,
            imsOrgId=self.ctx.org_id,
            sandbox=self.ctx.sandbox_doc(),
            createdBy=self.ctx.user,
            updatedBy=self.ctx.user,
            createdAt=now,
            updatedAt=now,
        )
        doc[_INTERNAL] = {"confined": bool(self.ctx.confined)}
        operation_id = new_id()
        with self.ctx.catalog.session() as session:
            audiences = self.ctx.repo(session, models.Audience)
            if audiences.find(models.Audience.audience_id == audience_id):
                raise ApiError(
                    409,
                    f"customAudienceId: an audience with audienceId '{audience_id}' already exists.",
                    code=DUPLICATE,
                    title="DUPLICATE_RESOURCE",
                )
            if self.ctx.repo(session, models.ExternalAudience).find(
                models.ExternalAudience.name == doc["name"]
            ):
                raise ApiError(
                    409,
                    f"name: an external audience named '{doc['name']}' already exists.",
                    code=DUPLICATE,
                    title="DUPLICATE_RESOURCE",
                )
            self.ctx.repo(session, models.ExternalAudience).add(
                id=ident, name=doc["name"], status="ACTIVE", body=doc, created_ms=now, updated_ms=now
            )
            audiences.add(
                id=ident,
                name=doc["name"],
                audience_id=audience_id,
                type=AUDIENCE_TYPE,
                body=self._audience_doc(doc, now),
                created_ms=now,
                updated_ms=now,
            )
            details = {k: v for k, v in body.items()}
            self.ctx.repo(session, models.ExternalAudienceOperation).add(
                id=operation_id,
                audience_id=ident,
                status=PROCESSING if files else SUCCESS,
                body={"operationDetails": details, "createdBy": self.ctx.user},
                created_ms=now,
                updated_ms=now,
            )
        run = None
        if files:
            run = self._new_run(ident, {"differentialIngestion": False}, trigger="create", mode=wait)
            with self.ctx.catalog.session() as session:
                row = self.ctx.repo(session, models.ExternalAudienceOperation).get(
                    operation_id, for_update=True
                )
                row.body = {**row.body, "runId": run["runId"]}
        if wait and run is not None:
            self.run_in_process(run["runId"])
        return {"operationId": operation_id, "operationDetails": dict(body)}

    def operation(self, operation_id: str) -> dict:
        with self.ctx.catalog.session(readonly=True) as session:
            row = self.ctx.repo(session, models.ExternalAudienceOperation).get(operation_id)
            if row is None:
                raise not_found("Operation", operation_id)
            body, audience_id = dict(row.body), row.audience_id
            status, created, updated = row.status, row.created_ms, row.updated_ms
            audience = self.ctx.repo(session, models.ExternalAudience).get(audience_id)
        out = {
            "operationId": operation_id,
            "status": status,
            "operationDetails": body.get("operationDetails"),
            "audienceName": audience.name if audience else (body.get("operationDetails") or {}).get("name"),
            "audienceId": audience_id,
            "createdBy": body.get("createdBy"),
            "createdAt": created,
            "updatedBy": body.get("createdBy"),
            "updatedAt": updated,
        }
        run_id = body.get("runId")
        if run_id and audience is not None:
            run = self.get_run(audience_id, run_id)
            out["runId"] = run_id
            out["status"] = {SUCCESS: SUCCESS, FAILED: "FAILED", CANCELLED: "FAILED"}.get(
                run["status"], PROCESSING
            )
            if run.get("errors"):
                out["errors"] = run["errors"]
        return out

    def get(self, id: str) -> dict:  # noqa: A002 - the API's name
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._row(session, id)
            doc = self._doc(row)
        latest = AudienceEvaluations(self.ctx).latest(id)
        if latest is not None:
            counts = latest.counts
            doc["metrics"] = {
                "totalProfiles": counts.get("members", 0),
                "totalProfilesByStatus": {
                    "realized": counts.get("realized", 0),
                    "exited": counts.get("exited", 0),
                },
                "pendingRows": counts.get("pending", 0),
                "lastIngestionTime": iso(latest.evaluation_time),
            }
        return doc

    def list(self, **query: Any) -> dict:
        with self.ctx.catalog.session(readonly=True) as session:
            m = models.ExternalAudience
            docs = [self._doc(r) for r in self.ctx.repo(session, m).find(order_by=[m.created_ms.desc()])]
        return {"children": docs, "_page": {"totalCount": len(docs), "count": len(docs)}}

    def update(self, id: str, body: Any) -> dict:  # noqa: A002
        """PATCH: ``description``, ``labels``, ``fields`` (only the listed fields' labels), ``ttlInDays``."""
        if not isinstance(body, Mapping) or not body:
            raise bad("body: expected an object with any of " + ", ".join(PATCHABLE) + ".")
        other = [k for k in body if k not in PATCHABLE]
        if other:
            raise bad(f"{other[0]}: cannot be changed; PATCH accepts {', '.join(PATCHABLE)}.")
        with self.ctx.catalog.session() as session:
            row = self._row(session, id, lock=True)
            doc = copy.deepcopy(row.body)
            if "description" in body:
                if not isinstance(body["description"], str):
                    raise bad("description: expected a string.")
                doc["description"] = body["description"]
            if "labels" in body:
                doc["labels"] = _labels(body["labels"], "labels")
            if "ttlInDays" in body:
                doc["ttlInDays"] = _ttl(body["ttlInDays"])
            if "fields" in body:
                changes = body["fields"]
                if not isinstance(changes, list):
                    raise bad("fields: expected a list of {name, labels}.")
                by_name = {f["name"]: f for f in doc["fields"]}
                for i, change in enumerate(changes):
                    name = change.get("name") if isinstance(change, Mapping) else None
                    if name not in by_name:
                        raise bad(f"fields[{i}].name: '{name}' is not a field of this audience.")
                    extra = [k for k in change if k not in ("name", "labels")]
                    if extra:
                        raise bad(f"fields[{i}].{extra[0]}: only a field's labels can change.")
                    by_name[name]["labels"] = _labels(change.get("labels", []), f"fields[{i}].labels")
            now = now_ms()
            doc.update(updatedAt=now, updatedBy=self.ctx.user)
            self.ctx.repo(session, models.ExternalAudience).update(row, body=doc)
            audience = self.ctx.repo(session, models.Audience).get(id, for_update=True)
            if audience is not None:
                view = {**audience.body, **{k: doc[k] for k in ("description", "labels", "ttlInDays")}}
                view.update(updateTime=now, updateEpoch=now // 1000)
                self.ctx.repo(session, models.Audience).update(audience, body=view)
        return self.get(id)

    def delete(self, id: str) -> None:  # noqa: A002
        """Refused (422) while a segment definition references it or a run is in progress."""
        from segmentation_pipelines.service.segment_definitions import (
            SegmentDefinitionsService,
            drop_memberships,
            remove_membership_files,
        )

        with self.ctx.catalog.session() as session:
            row = self._row(session, id, lock=True)
            dependents = SegmentDefinitionsService(self.ctx).dependents_of(session, id)
            if dependents:
                names = ", ".join(f"'{d['name']}' ({d['id']})" for d in dependents)
                raise unprocessable(
                    f"External audience '{id}' cannot be deleted: segment definition(s) {names} reference it "
                    "through inSegment. Change or delete those first."
                )
            runs = self.ctx.repo(session, models.ExternalAudienceRun)
            active = runs.find(
                models.ExternalAudienceRun.audience_id == id, models.ExternalAudienceRun.status.in_(ACTIVE)
            )
            if active:
                raise unprocessable(
                    f"External audience '{id}' has a run in progress ({active[0].id}); delete it when the run ended."
                )
            for r in runs.find(models.ExternalAudienceRun.audience_id == id):
                session.delete(r)
            for r in self.ctx.repo(session, models.ExternalAudienceOperation).find(
                models.ExternalAudienceOperation.audience_id == id
            ):
                session.delete(r)
            audience = self.ctx.repo(session, models.Audience).get(id)
            if audience is not None:
                session.delete(audience)
            drop_memberships(self.ctx, session, id)
            session.delete(row)
        remove_membership_files(self.ctx, id)
        shutil.rmtree(self._data_dir(id), ignore_errors=True)
        return None

    def extend_ttl(self, id: str, *, at_ms: int | None = None) -> dict:  # noqa: A002
        """Re-ingest the last successful data now: every member is valid for another ``ttlInDays``."""
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._row(session, id)
            doc = copy.deepcopy(row.body)
            busy = self.ctx.repo(session, models.ExternalAudienceRun).find(
                models.ExternalAudienceRun.audience_id == id, models.ExternalAudienceRun.status.in_(ACTIVE)
            )
        if busy:
            raise unprocessable(
                f"External audience '{id}' has a run in progress ({busy[0].id}); extend it later."
            )
        data = (doc.get(_INTERNAL) or {}).get("dataPath")
        if not data or not Path(data).exists():
            raise unprocessable(f"External audience '{id}' has no successful ingestion to extend yet.")
        now = at_ms or now_ms()
        folder = self._data_dir(id)
        staged = folder / f".extend-{uuid.uuid4().hex}.parquet"
        ingest.restamp(Path(data), now, staged)
        final = folder / f"{now}-extend.parquet"
        os.replace(staged, final)
        self._publish_membership(id, final, now, run_id=None, ttl=int(doc["ttlInDays"]))
        return {"audienceId": id, "name": doc["name"]}

    # --- runs --------------------------------------------------------------------------------------------------

    def start_run(self, id: str, body: Any = None, *, wait: bool = False) -> dict:  # noqa: A002
        """``POST .../runs``: a new ingestion run of the audience's source (``wait=True``: run it here)."""
        body = {} if body is None else body
        if not isinstance(body, Mapping):
            raise bad("body: expected {dataFilterStartTime, dataFilterEndTime?, differentialIngestion?}.")
        if "dataFilterStartTime" not in body:
            raise bad("dataFilterStartTime: required (epoch seconds; files modified from then on are read).")
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._row(session, id)
            confined = self.ctx.confined or bool((row.body.get(_INTERNAL) or {}).get("confined"))
            doc = dict(row.body)
        self._source_files(doc, confined=confined, required=True)
        run = self._new_run(id, body, trigger="api", mode=wait)
        if wait:
            return self.run_in_process(run["runId"])
        return run

    def runs(self, id: str, **query: Any) -> dict:  # noqa: A002
        with self.ctx.catalog.session(readonly=True) as session:
            self._row(session, id)
            m = models.ExternalAudienceRun
            rows = self.ctx.repo(session, m).find(m.audience_id == id, order_by=[m.created_ms.desc()])
            docs = [self._run_doc(r) for r in rows]
        return {"runs": docs}

    def get_run(self, id: str, run_id: str) -> dict:  # noqa: A002
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._run_row(session, id, run_id)
            doc, status, dagster_run = self._run_doc(row), row.status, row.run_id
        if status in (QUEUED, PROCESSING):  # a run launched by a sensor is found by its tags
            run = self.ctx.launcher.find_run(run_id, dagster_run)
            if run is not None and run.finished:
                errors = self.ctx.launcher.errors(dagster_run) if run.status == RUN_FAILURE else None
                return self.sync_with_run(run_id, run.status, dagster_run, error=errors)
        return doc

    def members(self, id: str, **query: Any) -> dict:  # noqa: A002
        """The audience's members (``/audiences/{id}/members``), each with its ``validUntil`` and ``payload``."""
        from segmentation_pipelines.service.audiences import AudiencesService

        with self.ctx.catalog.session(readonly=True) as session:
            self._row(session, id)
        return AudiencesService(self.ctx).members(id, **query)

    # --- run life (sensors, runner, in-process) ----------------------------------------------------------------

    def _new_run(
        self, audience_id: str, body: Mapping[str, Any], trigger: str, mode: bool, **extra: Any
    ) -> dict:
        differential = body.get("differentialIngestion", True)
        if not isinstance(differential, bool):
            raise bad("differentialIngestion: expected true or false.")
        start = (
            _epoch_ms(body["dataFilterStartTime"], "dataFilterStartTime")
            if "dataFilterStartTime" in body
            else None
        )
        end = (
            _epoch_ms(body["dataFilterEndTime"], "dataFilterEndTime")
            if body.get("dataFilterEndTime")
            else None
        )
        if start is not None and end is not None and end < start:
            raise bad("dataFilterEndTime: must not be before dataFilterStartTime.")
        ingestion_ms = None
        if body.get("ingestionTime") is not None:  # extension: when the rows were true (backfills)
            ingestion_ms = _epoch_ms(body["ingestionTime"], "ingestionTime")
        now = now_ms()
        run_id = new_id()
        m = models.ExternalAudienceRun
        with self.ctx.catalog.session() as session:
            audience = self._row(session, audience_id, lock=True)
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
                _INTERNAL: {
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

    def run_request_for(self, run_id: str) -> RunRequest:
        """The Dagster run of an ingestion: the stale profile-store assets first, then the audience's asset."""
        from segmentation_pipelines.service.profile_store import ProfileStoreService

        store = ProfileStoreService(self.ctx).refresh_selection()
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._run_row(session, None, run_id)
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

    def claim_for_launch(self, run_id: str) -> RunRequest | None:
        """``NEW`` -> ``QUEUED`` with the next attempt; the run request (None when no longer ``NEW``)."""
        with self.ctx.catalog.session() as session:
            row = self._run_row(session, None, run_id, lock=True)
            if row.status != NEW:
                return None
            row.attempt = (row.attempt or 0) + 1
            self._set_status(session, row, QUEUED)
        return self.run_request_for(run_id)

    def run_in_process(self, run_id: str) -> dict:
        """Run the ingestion here through Dagster; the finished run."""
        request = self.run_request_for(run_id)
        dagster_run = self.ctx.launcher.new_run_id()
        self.sync_with_run(run_id, "STARTED", dagster_run)
        try:
            status, error = self.ctx.launcher.execute(request, dagster_run)
        except Exception as exc:  # the run could not even start
            log.exception("External audience run %s failed to start", run_id)
            status, error = "FAILURE", {"code": ERROR_RUN_FAILED, "msg": f"{type(exc).__name__}: {exc}"}
        return self.sync_with_run(run_id, status, dagster_run, error=error)

    def sync_with_run(self, run_id: str, run_status: Any, dagster_run: str | None, error: Any = None) -> dict:
        """Write a Dagster run's status onto the ingestion run (idempotent; terminal runs never change)."""
        target = RUN_TO_STATUS.get(run_status_name(run_status))
        with self.ctx.catalog.session() as session:
            row = self._run_row(session, None, run_id, lock=True)
            if dagster_run and not row.run_id:
                row.run_id = dagster_run
            if target is not None and row.status not in TERMINAL:
                if target in TERMINAL:
                    body = dict(row.body)
                    if target == FAILED and not body.get("errors"):
                        body["errors"] = _errors(error)
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
            doc = self._run_doc(row)
            audience_id = row.audience_id
        if doc["status"] in TERMINAL:
            self._settle_operation(audience_id, run_id, doc["status"])
        return doc

    def get_run_audience(self, run_id: str) -> str:
        with self.ctx.catalog.session(readonly=True) as session:
            return self._run_row(session, None, run_id).audience_id

    def requeue(self, run_id: str) -> bool:
        with self.ctx.catalog.session() as session:
            row = self._run_row(session, None, run_id, lock=True)
            if row.status != QUEUED or row.run_id:
                return False
            self._set_status(session, row, NEW)
            return True

    def execute(
        self, run_id: str, dagster_run: str | None = None, report: Callable[[str], None] | None = None
    ) -> dict:
        """The ingestion itself (the asset's body): both stages, then the membership is published. Raises
        :class:`segmentation_pipelines.engine.external_ingest.IngestError` with what is wrong (nothing published)."""
        say = report or (lambda _msg: None)
        with self.ctx.catalog.session(readonly=True) as session:
            run = self._run_row(session, None, run_id)
            audience = self._row(session, run.audience_id)
            doc, run_body, audience_id = copy.deepcopy(audience.body), dict(run.body), audience.id
        internal = doc.get(_INTERNAL) or {}
        run_internal = run_body.get(_INTERNAL) or {}
        now = now_ms()
        ingestion_ms = int(run_internal.get("ingestionMs") or now)
        confined = bool(internal.get("confined"))
        self._stage(run_id, 0, PROCESSING, dagster_run)
        folder = self._data_dir(audience_id)
        folder.mkdir(parents=True, exist_ok=True)
        staged = folder / f".run-{run_id}.parquet"
        try:
            fmt, files = self._source_files(doc, confined=confined, required=True)
            start = run_body.get("dataFilterStartTime")
            end = run_body.get("dataFilterEndTime")
            chosen = [
                f
                for f in files
                if (start is None or f.stat().st_mtime >= int(start))
                and (end is None or f.stat().st_mtime <= int(end))
            ]
            if not chosen:
                raise ingest.IngestError(
                    f"no file of the source was modified between dataFilterStartTime and dataFilterEndTime "
                    f"({len(files)} file(s) outside the window)"
                )
            namespaces = self.namespaces_of(doc["fields"])
            say(f"reading {len(chosen)} {fmt} file(s)")
            rows = ingest.ingest_rows(
                files=chosen,
                fmt=fmt,
                fields=doc["fields"],
                namespaces=namespaces,
                previous_data=Path(internal["dataPath"]) if internal.get("dataPath") else None,
                ingestion_ms=ingestion_ms,
                differential=bool(run_body.get("differentialIngestion", True)),
                out_path=staged,
            )
        except ApiError as exc:  # the source left the landing area since the run was requested
            staged.unlink(missing_ok=True)
            self._fail(run_id, 0, exc.message)
            raise ingest.IngestError(exc.message) from None
        except ingest.IngestError as exc:
            staged.unlink(missing_ok=True)
            self._fail(run_id, 0, str(exc))
            raise
        final = folder / f"{now}-{run_id}.parquet"
        os.replace(staged, final)
        metrics = {
            "rowsRead": rows.rows_read,
            "rowsAccepted": rows.accepted,
            "rowsRejected": rows.rejected,
            "rowsChanged": rows.changed,
            "rowsRemoved": rows.removed,
            "rejects": rows.rejects,
            "rejectSamples": rows.samples,
            "files": [str(f.name) for f in chosen],
            "fingerprint": fingerprint(chosen),
        }
        self._stage(run_id, 0, SUCCESS, dagster_run, metrics=metrics)
        self._stage(run_id, 1, PROCESSING, dagster_run)
        try:
            counts = self._publish_membership(
                audience_id,
                final,
                now,
                run_id=run_id,
                ttl=int(doc["ttlInDays"]),
                namespaces=[ns for ns in namespaces.values() if ns],
            )
        except Exception as exc:
            final.unlink(missing_ok=True)
            self._fail(run_id, 1, f"{type(exc).__name__}: {exc}")
            raise
        metrics.update(
            members=counts["members"], exited=counts["exited"], pendingRows=counts.get("pending", 0)
        )
        self._stage(run_id, 1, SUCCESS, dagster_run, metrics=metrics)
        return metrics

    def maintain(self, at_ms: int | None = None) -> int:
        """Exit members whose TTL passed, and re-resolve pending rows after the profile store changed; the number
        of audiences republished."""
        from segmentation_pipelines.service.profile_store import ProfileStoreService

        now = at_ms or now_ms()
        version = None
        done = 0
        with self.ctx.catalog.session(readonly=True) as session:
            rows = [
                (r.id, copy.deepcopy(r.body)) for r in self.ctx.repo(session, models.ExternalAudience).find()
            ]
            busy = {
                r.audience_id
                for r in self.ctx.repo(session, models.ExternalAudienceRun).find(
                    models.ExternalAudienceRun.status.in_(ACTIVE)
                )
            }
        for ident, doc in rows:
            internal = doc.get(_INTERNAL) or {}
            data = internal.get("dataPath")
            if ident in busy or not data or not Path(data).exists():
                continue
            expiry = internal.get("nextExpiryMs")
            due = expiry is not None and int(expiry) <= now
            if not due and internal.get("pending"):
                version = version or ProfileStoreService(self.ctx).version()
                due = internal.get("storeVersion") != _version_key(version)
            if due:
                self._publish_membership(ident, Path(data), now, run_id=None, ttl=int(doc["ttlInDays"]))
                done += 1
        return done

    def arrivals(self) -> builtins.list[tuple[str, str]]:
        """File-arrival check: a ``NEW`` differential run for each audience whose source changed since its last
        ingestion (its files' fingerprint); ``[(run id, fingerprint)]`` of the runs written."""
        out = []
        with self.ctx.catalog.session(readonly=True) as session:
            rows = [
                (r.id, copy.deepcopy(r.body)) for r in self.ctx.repo(session, models.ExternalAudience).find()
            ]
            m = models.ExternalAudienceRun
            seen = {
                (r.audience_id, (r.body.get(_INTERNAL) or {}).get("fingerprint"))
                for r in self.ctx.repo(session, m).find()
            }
            busy = {r.audience_id for r in self.ctx.repo(session, m).find(m.status.in_(ACTIVE))}
        for ident, doc in rows:
            if ident in busy:
                continue
            try:
                _fmt, files = self._source_files(
                    doc, confined=bool((doc.get(_INTERNAL) or {}).get("confined"))
                )
            except ApiError:
                continue  # the source is gone: nothing arrived
            if not files:
                continue
            fp = fingerprint(files)
            if fp == (doc.get(_INTERNAL) or {}).get("fingerprint") or (ident, fp) in seen:
                continue
            try:
                run = self._new_run(
                    ident, {"differentialIngestion": True}, trigger="file", mode=False, fingerprint=fp
                )
            except ApiError as exc:  # a limit: the next tick tries again
                log.warning("External audience %s: new files not ingested yet: %s", ident, exc.message)
                continue
            out.append((run["runId"], fp))
        return out

    def namespaces_of(self, fields: builtins.list[dict]) -> dict[str, str | None]:
        """Each identity field's namespace as this sandbox spells it (None: the sandbox does not know it)."""
        known = {n.lower(): n for n in STANDARD_NAMESPACES}
        graph = self.layout.identities_path()
        if graph.exists():
            con = duck.connect()
            try:
                for (ns,) in con.execute(
                    "SELECT DISTINCT namespace FROM read_parquet($p)", {"p": str(graph)}
                ).fetchall():
                    known[str(ns).lower()] = str(ns)
            finally:
                con.close()
        return {f["name"]: known.get(str(f["identityNs"]).lower()) for f in fields if f.get("identityNs")}

    # --- internals ---------------------------------------------------------------------------------------------

    def _publish_membership(
        self,
        audience_id: str,
        data: Path,
        now: int,
        run_id: str | None,
        ttl: int,
        namespaces: builtins.list[str] | None = None,
    ) -> dict:
        """Build the membership from ``data`` at ``now`` and publish it (file renamed into place, then the catalog
        row, then the audience's pointers)."""
        from segmentation_pipelines.service.profile_store import ProfileStoreService

        evaluations = AudienceEvaluations(self.ctx)
        previous = evaluations.latest(audience_id, before_ms=now + 1)
        policy = MergePoliciesService(self.ctx).ensure_default()["id"]
        version = _version_key(ProfileStoreService(self.ctx).version())
        staging_root = self.layout.memberships_dir()
        staging = staging_root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            result = ingest.build_membership(
                data_path=data,
                identities_path=self.layout.identities_path(),
                profiles_path=self.layout.profiles_path(policy),
                previous_membership=previous.path if previous else None,
                evaluation_ms=now,
                ttl_days=ttl,
                out_path=staging / "members.parquet",
                namespaces=namespaces,
            )
            diff = memberships.DiffResult(staging=staging, files={audience_id: result.path}, counts={})
            files = memberships.publish_files(diff, self.layout.memberships_dir(), now)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            replaced = evaluations.publish(now, files, {audience_id: result.counts}, job_id=run_id)
        except BaseException:
            memberships.discard(files.values())
            raise
        memberships.discard(replaced)
        with self.ctx.catalog.session() as session:
            row = self._row(session, audience_id, lock=True)
            internal = dict(row.body.get(_INTERNAL) or {})
            old = internal.get("dataPath")
            internal.update(
                dataPath=str(data),
                nextExpiryMs=result.next_expiry_ms,
                pending=result.pending_rows,
                storeVersion=version,
            )
            if run_id is not None:
                internal["lastRunId"] = run_id
                with_fp = self.ctx.repo(session, models.ExternalAudienceRun).get(run_id)
                metrics = (with_fp.body.get("metrics") or {}) if with_fp else {}
                if metrics.get("fingerprint"):
                    internal["fingerprint"] = metrics["fingerprint"]
            row.body = {**row.body, _INTERNAL: internal}
            session.flush()
        if old and old != str(data):
            Path(old).unlink(missing_ok=True)
        return result.counts

    def _stage(
        self, run_id: str, index: int, status: str, dagster_run: str | None, metrics: dict | None = None
    ) -> None:
        with self.ctx.catalog.session() as session:
            row = self._run_row(session, None, run_id, lock=True)
            body = dict(row.body)
            details = [dict(d) for d in body.get("details") or []]
            details[index].update(status=status, flowRunId=dagster_run)
            body["details"] = details
            if metrics is not None:
                body["metrics"] = metrics
                internal = dict(body.get(_INTERNAL) or {})
                internal.setdefault("fingerprint", metrics.get("fingerprint"))
                body[_INTERNAL] = internal
            row.body = body
            row.updated_ms = now_ms()
            session.flush()

    def _fail(self, run_id: str, index: int, message: str) -> None:
        self._stage(run_id, index, FAILED, None)
        with self.ctx.catalog.session() as session:
            row = self._run_row(session, None, run_id, lock=True)
            row.body = {
                **row.body,
                "errors": [
                    {"code": INTERNAL if index else BAD_REQUEST, "msg": f"{STAGES[index]}: {message}"}
                ],
            }
            session.flush()

    def _settle_operation(self, audience_id: str, run_id: str, status: str) -> None:
        m = models.ExternalAudienceOperation
        with self.ctx.catalog.session() as session:
            for op in self.ctx.repo(session, m).find(m.audience_id == audience_id, m.status == PROCESSING):
                if op.body.get("runId") == run_id:
                    op.status = SUCCESS if status == SUCCESS else FAILED
                    op.updated_ms = now_ms()
            session.flush()

    def _set_status(self, session, row: models.ExternalAudienceRun, status: str) -> None:
        row.status = status
        row.body = {**row.body, "status": status}
        row.updated_ms = now_ms()
        session.flush()

    def _row(self, session, ident: str, lock: bool = False) -> models.ExternalAudience:
        row = self.ctx.repo(session, models.ExternalAudience).get(ident, for_update=lock)
        if row is None:
            raise not_found("External audience", ident)
        return row

    def _run_row(self, session, audience_id: str | None, run_id: str, lock: bool = False):
        row = self.ctx.repo(session, models.ExternalAudienceRun).get(run_id, for_update=lock)
        if row is None or (audience_id is not None and row.audience_id != audience_id):
            if audience_id is not None:
                self._row(session, audience_id)
            raise not_found("Run", run_id)
        return row

    def _data_dir(self, audience_id: str) -> Path:
        return self.ctx.sandbox_root / "external_audiences" / memberships.safe_name(audience_id)

    def _doc(self, row: models.ExternalAudience) -> dict:
        doc = {k: v for k, v in row.body.items() if k != _INTERNAL}
        doc["status"] = row.status
        return doc

    def _run_doc(self, row: models.ExternalAudienceRun) -> dict:
        doc = {k: v for k, v in row.body.items() if k != _INTERNAL}
        doc["status"] = row.status
        doc["updatedAt"] = row.updated_ms
        if row.run_id:
            doc["flowRunId"] = row.run_id  # the Dagster run
        return doc

    def _audience_doc(self, doc: dict, now: int) -> dict:
        """The ``/audiences`` view (type ``ExternalSegment``)."""
        return {
            "id": doc["id"],
            "audienceId": doc["audienceId"],
            "name": doc["name"],
            "description": doc.get("description") or "",
            "namespace": doc["namespace"],
            "imsOrgId": self.ctx.org_id,
            "sandbox": self.ctx.sandbox_doc(),
            "type": AUDIENCE_TYPE,
            "originName": doc["originName"],
            "lifecycleState": "published",
            "labels": list(doc.get("labels") or []),
            "ttlInDays": doc["ttlInDays"],
            "audienceMeta": {"externalAudience": True, "fields": [f["name"] for f in doc["fields"]]},
            "linkedAudienceRef": {"externalAudienceId": doc["id"]},
            "isSystem": False,
            "saveSegmentMembership": True,
            "createdBy": self.ctx.user,
            "lastModifiedBy": self.ctx.user,
            "dependencies": [],
            "creationTime": now,
            "createEpoch": now // 1000,
            "updateTime": now,
            "updateEpoch": now // 1000,
        }

    def _source_files(
        self, doc: Mapping[str, Any], *, confined: bool, required: bool = False
    ) -> tuple[str, list[Path]]:
        """``(format, files)`` of the audience's source in the landing area (the landing rule of ``landing.py``)."""
        params = doc["sourceSpec"]["params"]
        kind = params.get("type") or "file"
        try:
            path = resolve_path(
                params["path"],
                self.ctx.landing_dir,
                confined=confined,
                kind=kind,
                what="sourceSpec.params.path",
            )
        except ApiError as exc:  # the landing rule's message, with this API's code
            raise bad(exc.message) from None
        if kind == "file":
            files = [path]
        else:
            files = files_under(path, tuple(SOURCE_SUFFIXES), self.ctx.landing_dir, confined=confined)
        formats = {SOURCE_SUFFIXES.get(f.suffix.lower()) for f in files}
        if None in formats:
            raise bad(f"sourceSpec.params.path: '{path.name}' is neither a .csv nor a .parquet file.")
        if len(formats) > 1:
            raise bad(
                "sourceSpec.params.path: the folder mixes CSV and Parquet files; use one format per audience."
            )
        if required and not files:
            raise unprocessable(
                f"sourceSpec.params.path: the folder '{params['path']}' has no .csv or .parquet file yet."
            )
        return (formats.pop() if formats else "csv"), files

    def _validated(self, body: Any) -> dict:
        if not isinstance(body, Mapping):
            raise bad("body: expected an external audience object.")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad("name: required (a non-empty string).")
        description = body.get("description", "")
        if not isinstance(description, str):
            raise bad("description: expected a string.")
        custom = body.get("customAudienceId")
        if custom is not None and (not isinstance(custom, str) or not custom.strip()):
            raise bad("customAudienceId: expected a non-empty string.")
        fields = body.get("fields")
        if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_FIELDS:
            raise bad(
                f"fields: expected a list of 1 to {MAX_FIELDS} fields (got {len(fields) if isinstance(fields, list) else type(fields).__name__})."
            )
        clean, names = [], set()
        for i, f in enumerate(fields):
            where = f"fields[{i}]"
            if not isinstance(f, Mapping):
                raise bad(f"{where}: expected {{name, type, identityNs?, labels?}}.")
            fname = f.get("name")
            if not isinstance(fname, str) or not fname.strip():
                raise bad(f"{where}.name: required (a non-empty string).")
            if fname in names:
                raise bad(f"{where}.name: '{fname}' is declared twice.")
            names.add(fname)
            ftype = f.get("type")
            if ftype not in ingest.FIELD_TYPES:
                raise bad(f"{where}.type: '{ftype}' is not one of {', '.join(ingest.FIELD_TYPES)}.")
            item: dict[str, Any] = {
                "name": fname,
                "type": ftype,
                "labels": _labels(f.get("labels", []), f"{where}.labels"),
            }
            ns = f.get("identityNs")
            if ns is not None:
                if not isinstance(ns, str) or not NAMESPACE_CODE.match(ns):
                    raise bad(f"{where}.identityNs: '{ns}' is not a namespace code (e.g. ECID, Email).")
                item["identityNs"] = ns
            extra = [k for k in f if k not in ("name", "type", "identityNs", "labels")]
            if extra:
                raise bad(f"{where}.{extra[0]}: unknown property.")
            clean.append(item)
        if not any("identityNs" in f for f in clean):
            raise bad('fields: at least one field must be an identity field (with identityNs, e.g. "Email").')
        spec = body.get("sourceSpec")
        params = spec.get("params") if isinstance(spec, Mapping) else None
        if not isinstance(params, Mapping):
            raise bad("sourceSpec.params: required ({path, type: file|folder, ...}).")
        path = params.get("path")
        if not isinstance(path, str) or not path.strip():
            raise bad("sourceSpec.params.path: required.")
        if " " in path:
            raise bad("sourceSpec.params.path: must not contain spaces.")
        kind = params.get("type", "file")
        if kind not in ("file", "folder"):
            raise bad(f"sourceSpec.params.type: '{kind}' is not one of file, folder.")
        cloud = params.get("cloudType", "DLZ")
        if cloud not in CLOUD_TYPES:
            raise bad(f"sourceSpec.params.cloudType: '{cloud}' is not one of {', '.join(CLOUD_TYPES)}.")
        if cloud in NEEDS_CONNECTION and not params.get("baseConnectionId"):
            raise bad(f"sourceSpec.params.baseConnectionId: required for cloudType {cloud}.")
        audience_type = body.get("audienceType", "people")
        if audience_type != "people":
            raise bad(f"audienceType: '{audience_type}' is not supported; only 'people'.")
        origin = body.get("originName")
        if origin != "CUSTOM_UPLOAD":
            raise bad(f"originName: required, and must be 'CUSTOM_UPLOAD' (got {origin!r}).")
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad("tags: expected a list of tag ids.")
        doc = {
            "name": name.strip(),
            "description": description,
            "fields": clean,
            "sourceSpec": {"params": {**dict(params), "type": kind, "cloudType": cloud}},
            "ttlInDays": _ttl(body.get("ttlInDays", TTL_DEFAULT)),
            "audienceType": audience_type,
            "originName": origin,
            "namespace": body.get("namespace") or "CustomerAudienceUpload",
            "labels": _labels(body.get("labels", []), "labels"),
            "tags": list(tags),
        }
        if custom:
            doc["customAudienceId"] = custom.strip()
        known = {
            "name",
            "description",
            "customAudienceId",
            "fields",
            "sourceSpec",
            "ttlInDays",
            "audienceType",
        }
        known |= {"originName", "namespace", "labels", "tags"}
        extra = [k for k in body if k not in known]
        if extra:
            raise bad(f"{extra[0]}: unknown property of an external audience.")
        return doc


def fingerprint(files: builtins.list[Path]) -> str:
    """What identifies a source's content cheaply: each file's path, size and modification time."""
    h = hashlib.sha256()
    for f in sorted(files):
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _version_key(version: Mapping[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(version.items())).encode()).hexdigest()[:16]


def _labels(value: Any, where: str) -> builtins.list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f'{where}: expected a list of strings (e.g. ["C1"]).')
    return list(value)


def _ttl(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not TTL_MIN <= value <= TTL_MAX:
        raise bad(f"ttlInDays: expected an integer from {TTL_MIN} to {TTL_MAX} (got {value!r}).")
    return value


def _errors(error: Any) -> builtins.list[dict]:
    if error is None:
        return [{"code": ERROR_RUN_FAILED, "msg": "The Dagster run of this ingestion failed."}]
    if isinstance(error, str):
        return [{"code": ERROR_RUN_FAILED, "msg": error}]
    if isinstance(error, Mapping):
        return [
            {
                "code": str(error.get("code") or ERROR_RUN_FAILED),
                **{k: v for k, v in error.items() if k != "code"},
            }
        ]
    return [e for item in error for e in _errors(item)]


def reconcile_runs(settings, grace_s: float = RECONCILE_GRACE_S) -> dict[str, int]:
    """Settle every ``QUEUED``/``PROCESSING`` run whose Dagster run ended or vanished (never stuck)."""
    done: dict[str, int] = {}
    catalog = ServiceContext.create(settings).catalog
    for org, sandbox, run_id in runs_in_status(catalog, (QUEUED, PROCESSING)):
        try:
            ctx = ServiceContext.create(settings, org, sandbox)
            service = ExternalAudiencesService(ctx)
            with ctx.catalog.session(readonly=True) as session:
                row = ctx.repo(session, models.ExternalAudienceRun).get(run_id)
                status, dagster_run, updated = row.status, row.run_id, row.updated_ms
            run = ctx.launcher.find_run(run_id, dagster_run)
            stale = now_ms() - updated > grace_s * 1000
            if run is None:
                if not stale:
                    what = "waiting"
                elif dagster_run:
                    error = {
                        "code": ERROR_RUN_VANISHED,
                        "msg": f"Dagster run {dagster_run} no longer exists.",
                    }
                    service.sync_with_run(run_id, RUN_FAILURE, dagster_run, error=error)
                    what = "failed"
                else:
                    what = "requeued" if service.requeue(run_id) else "skipped"
            else:
                if run.worker_lost:
                    run = ctx.launcher.end_lost_run(run.run_id) or run
                error = ctx.launcher.errors(run.run_id) if run.status == RUN_FAILURE else None
                after = service.sync_with_run(run_id, run.status, run.run_id, error=error)["status"]
                what = "unchanged" if after == status else after.lower()
        except Exception:  # one broken run must not stop the others
            log.exception("reconciling external audience run %s failed", run_id)
            what = "error"
        done[what] = done.get(what, 0) + 1
    return done
