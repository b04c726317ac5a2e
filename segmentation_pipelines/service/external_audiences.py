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

import copy
import shutil
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.catalog.repository import new_id
from segmentation_pipelines.errors import ApiError
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.external_audience_ingestion import ExternalAudienceIngestion
from segmentation_pipelines.service.external_audience_rules import (
    DUPLICATE,
    PATCHABLE,
    audience_row,
    bad,
    labels,
    not_found,
    source_files,
    ttl,
    unprocessable,
    validated,
)
from segmentation_pipelines.service.external_audience_runs import (
    ACTIVE,
    CANCELLED,
    FAILED,
    PROCESSING,
    SUCCESS,
    ExternalAudienceRunsService,
)
from segmentation_pipelines.service.segment_definitions import (
    SegmentDefinitionsService,
    drop_memberships,
    remove_membership_files,
)
from segmentation_pipelines.service.tracked_runs import INTERNAL
from segmentation_pipelines.timeutil import iso

AUDIENCE_TYPE = "ExternalSegment"


def new_audience_stamps(user: str, now: int) -> dict[str, Any]:
    """Who created a new ``/audiences`` document and when (``now`` in ms): the stamps of both kinds of external
    audience (this module's ``ExternalSegment`` view and ``AudiencesService``'s external audiences)."""
    return {
        "createdBy": user,
        "lastModifiedBy": user,
        "dependencies": [],
        "creationTime": now,
        "createEpoch": now // 1000,
        "updateTime": now,
        "updateEpoch": now // 1000,
    }


def audiences_everywhere(catalog) -> list[tuple[str, str, str]]:
    """``(org, sandbox, audience id)`` of every external audience (the sensors walk them)."""
    m = models.ExternalAudience
    with catalog.session(readonly=True) as session:
        return [tuple(r) for r in session.execute(select(m.org_id, m.sandbox, m.id).order_by(m.created_ms))]


def snapshot(catalog) -> list[dict[str, Any]]:
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


class ExternalAudiencesService:
    """``/data/core/ais/external-audience...`` in one (org, sandbox); see the module docstring."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.ingestion_runs = ExternalAudienceRunsService(ctx)
        self.ingestion = ExternalAudienceIngestion(ctx)

    # --- audiences ---------------------------------------------------------------------------------------------

    def create(self, body: Any, *, wait: bool = False) -> dict:
        """Validate, write the audience (and its ``/audiences`` view) and its first run; 202 ``{operationId}``."""
        doc = validated(body)
        _fmt, files = source_files(self.ctx, doc, confined=self.ctx.confined, required=False)
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
        doc[INTERNAL] = {"confined": bool(self.ctx.confined)}
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
            run = self.ingestion_runs.new_run(
                ident, {"differentialIngestion": False}, trigger="create", mode=wait
            )
            with self.ctx.catalog.session() as session:
                row = self.ctx.repo(session, models.ExternalAudienceOperation).get(
                    operation_id, for_update=True
                )
                row.body = {**row.body, "runId": run["runId"]}
        if wait and run is not None:
            self.ingestion_runs.run_in_process(run["runId"])
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
            run = self.ingestion_runs.get_run(audience_id, run_id)
            out["runId"] = run_id
            out["status"] = {SUCCESS: SUCCESS, FAILED: "FAILED", CANCELLED: "FAILED"}.get(
                run["status"], PROCESSING
            )
            if run.get("errors"):
                out["errors"] = run["errors"]
        return out

    def get(self, id: str) -> dict:  # noqa: A002 - the API's name
        with self.ctx.catalog.session(readonly=True) as session:
            row = audience_row(self.ctx, session, id)
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
            row = audience_row(self.ctx, session, id, lock=True)
            doc = copy.deepcopy(row.body)
            if "description" in body:
                if not isinstance(body["description"], str):
                    raise bad("description: expected a string.")
                doc["description"] = body["description"]
            if "labels" in body:
                doc["labels"] = labels(body["labels"], "labels")
            if "ttlInDays" in body:
                doc["ttlInDays"] = ttl(body["ttlInDays"])
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
                    by_name[name]["labels"] = labels(change.get("labels", []), f"fields[{i}].labels")
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

        with self.ctx.catalog.session() as session:
            row = audience_row(self.ctx, session, id, lock=True)
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
        shutil.rmtree(self.ingestion.data_dir(id), ignore_errors=True)
        return None

    def extend_ttl(self, id: str, *, at_ms: int | None = None) -> dict:  # noqa: A002
        """Re-ingest the last successful data now: every member is valid for another ``ttlInDays``."""
        return self.ingestion.extend_ttl(id, at_ms=at_ms)

    # --- runs (``service/external_audience_runs.py``) -----------------------------------------------------------

    def start_run(self, id: str, body: Any = None, *, wait: bool = False) -> dict:  # noqa: A002
        """``POST .../runs``: a new ingestion run of the audience's source (``wait=True``: run it here)."""
        return self.ingestion_runs.start_run(id, body, wait=wait)

    def runs(self, id: str, **query: Any) -> dict:  # noqa: A002
        return self.ingestion_runs.runs(id, **query)

    def get_run(self, id: str, run_id: str) -> dict:  # noqa: A002
        return self.ingestion_runs.get_run(id, run_id)

    # --- internals ---------------------------------------------------------------------------------------------

    def _doc(self, row: models.ExternalAudience) -> dict:
        doc = {k: v for k, v in row.body.items() if k != INTERNAL}
        doc["status"] = row.status
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
            **new_audience_stamps(self.ctx.user, now),
        }
