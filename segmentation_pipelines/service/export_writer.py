"""The export itself (what the export asset runs for an export job): publish gates, then the batch(es) written
under a staging folder and published atomically (renamed into the dataset or folder, or loaded into a PostgreSQL
table, and recorded in the catalog in one transaction), only if the job was not cancelled meanwhile: a cancel or a
failure leaves nothing behind. The job's life around it is ``service/export_jobs.py``."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.duck import connect, sql_list, sql_str
from segmentation_pipelines.engine.export import (
    EventsSpec,
    ExportCancelled,
    FieldError,
    SegmentSource,
    write_export,
)
from segmentation_pipelines.engine.export_postgres import replace_table
from segmentation_pipelines.errors import ApiError
from segmentation_pipelines.profiles.events_store import EMPTY_EVENTS, _keyed_sql
from segmentation_pipelines.profiles.layout import pinned
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.batches import successful_batches
from segmentation_pipelines.service.export_gates import ERROR_GATE_FAILED, PublishGates
from segmentation_pipelines.service.export_requests import parse_rfc3339
from segmentation_pipelines.service.tracked_runs import INTERNAL, with_internal
from segmentation_pipelines.timeutil import iso

if TYPE_CHECKING:  # the job service hands itself to the writer
    from segmentation_pipelines.service.export_jobs import ExportJobsService

ERROR_NOT_EVALUATED = "SEGP-EXPORT-409"
MEMORY_LIMIT = "2GB"  # DuckDB spills beyond it: an export streams whatever its size


def _naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


class ExportWriter:
    """Writes and publishes one export job's batches (see the module docstring)."""

    def __init__(self, jobs: ExportJobsService):
        self.jobs = jobs
        self.ctx = jobs.ctx
        self.layout = jobs.layout

    def execute(self, job_id: int, should_cancel: Callable[[], bool] | None = None, progress=None) -> dict:
        """The export itself (called by the export asset): gates, then the batch(es), published atomically.

        Returns a summary for the asset's metadata. Raises :class:`ApiError` on a refused or failed export (the
        message becomes the job's error) and ``ExportCancelled`` when cancelled (nothing published).
        """

        cancelled = should_cancel or self.jobs.should_cancel(job_id)
        with self.ctx.catalog.session(readonly=True) as session:
            row = self.jobs._row(session, job_id)
            doc = dict(row.body)
        start = now_ms()
        segments = (doc.get("filter") or {}).get("segments") or []
        override = (doc.get("publishGates") or {}).get("override")
        refused = self._gate_errors(segments, override)
        if refused:
            self._record_errors(job_id, refused)
            raise ApiError(412, "; ".join(e["msg"] for e in refused), code=ERROR_GATE_FAILED)
        evaluations = (
            AudienceEvaluations(self.ctx).latest_for([s["segmentId"] for s in segments]) if segments else {}
        )
        missing = [s["segmentId"] for s in segments if s["segmentId"] not in evaluations]
        if missing:
            error = {
                "code": ERROR_NOT_EVALUATED,
                "msg": f"Segment(s) {', '.join(missing)} have no evaluation yet: run a segment job first, or set "
                "evaluationInfo.segmentation to true.",
            }
            self._record_errors(job_id, [error])
            raise ApiError(409, error["msg"], code=ERROR_NOT_EVALUATED)
        flt = doc.get("filter") or {}
        window = flt.get("segmentQualificationTime") or {}
        bounds = (
            _naive(parse_rfc3339(window["startTime"], "startTime")) if window.get("startTime") else None,
            _naive(parse_rfc3339(window["endTime"], "endTime")) if window.get("endTime") else None,
        )
        policy_id = (doc.get("mergePolicy") or {}).get("id")
        if not self.layout.profiles_dir(policy_id).exists():
            raise ApiError(
                409,
                f"The profile store has no merged profiles for merge policy '{policy_id}' yet: ingest data first.",
            )
        profiles_path = pinned(self.layout.profiles_path(policy_id))  # one version for the whole export
        fields = [f.strip() for f in doc["fields"].split(",")] if doc.get("fields") else None
        sources = [
            SegmentSource(
                s["segmentId"],
                evaluations[s["segmentId"]].path,
                tuple(s["status"]),
                s.get("segmentNs", "ups"),
            )
            for s in segments
        ]
        ids_path = None
        folder = doc["destination"].get("folder")
        table = doc["destination"].get("postgres")
        dataset_id = doc["destination"].get("datasetId")
        if folder:
            staging_root, fmt = Path(folder["path"]), folder.get("format", "parquet")
        elif table:  # written as CSV under the sandbox, then loaded into the table
            staging_root, fmt = self.ctx.sandbox_root / "exports", "csv"
        else:
            staging_root, fmt = self.layout.dataset_dir(dataset_id), "parquet"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = staging_root / f".export-{job_id}-{uuid.uuid4().hex[:8]}"
        plan = (
            [(s, [s]) for s in sources]
            if doc["destination"].get("segmentPerBatch") and sources
            else [(None, sources)]
        )
        events = self._events_spec((doc.get("additionalFields") or {}).get("eventList"), staging)
        try:
            if flt.get("fromIngestTimestamp"):
                ids_path = self._updated_profiles(
                    parse_rfc3339(flt["fromIngestTimestamp"], "fromIngestTimestamp"), staging
                )
            written = []
            for seg, batch_sources in plan:
                batch_id = uuid.uuid4().hex
                result = write_export(
                    profiles_path=profiles_path,
                    sources=batch_sources,
                    out_dir=staging / batch_id,
                    fmt=fmt,
                    fields=fields,
                    window=bounds,
                    empty_profiles=bool(flt.get("emptyProfiles")),
                    profile_ids_path=ids_path,
                    all_profiles=not segments,
                    events=events,
                    memory_limit=MEMORY_LIMIT,
                    temp_directory=staging / "spill",
                    should_cancel=cancelled,
                )
                written.append((seg, batch_id, result))
                if progress:
                    progress(batch_id, result)
            end = now_ms()
            if cancelled():
                raise ExportCancelled()
            if table:
                return self._publish_table(job_id, table, written, evaluations, start, end)
            return self._publish(job_id, dataset_id, staging, written, evaluations, start, end, folder)
        except FieldError as exc:
            error = {"code": "SEGP-EXPORT-400", "msg": f"fields: {exc}."}
            self._record_errors(job_id, [error])
            raise ApiError(400, error["msg"], code=error["code"]) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish(
        self, job_id, dataset_id, staging: Path, written, evaluations, start, end, folder=None
    ) -> dict:
        """Rename the batch folders into the dataset and record the batches and the job's outcome in one
        transaction, unless the job was cancelled meanwhile (then the folders are removed: nothing published)."""

        moved: list[Path] = []
        total = sum(r.rows for _, _, r in written)
        by_namespace: dict[str, int] = {}
        for _, _, r in written:
            for ns, n in r.by_namespace.items():
                by_namespace[ns] = by_namespace.get(ns, 0) + n
        try:
            with self.ctx.catalog.session() as session:
                row = self.jobs._row(session, job_id, lock=True)
                internal = dict(row.body.get(INTERNAL) or {})
                if internal.get("cancelRequested") or row.status in self.jobs.TERMINAL:
                    raise ExportCancelled()
                batches_doc = []
                for seg, batch_id, result in written:
                    if folder:  # extension: a folder of files, no dataset
                        final = Path(folder["path"]) / f"export-{job_id}-{batch_id}"
                    else:
                        final = self.layout.batch_dir(dataset_id, batch_id)
                    shutil.rmtree(staging / batch_id / "spill", ignore_errors=True)
                    staging.joinpath(batch_id).rename(final)
                    moved.append(final)
                    files = [str(final / f.name) for f in result.files]
                    if folder:
                        batches_doc.append(
                            {
                                "segmentId": seg.segment_id if seg else None,
                                "batchId": batch_id,
                                "files": files,
                            }
                        )
                        continue
                    now = now_ms()
                    body = {
                        "id": batch_id,
                        "status": "success",
                        "relatedObjects": [{"type": "dataSet", "id": dataset_id}],
                        "imsOrg": self.ctx.org_id,
                        "created": now,
                        "updated": now,
                        "completed": now,
                        "inputFormat": {"format": "parquet"},
                        "files": files,
                        "rowCount": result.rows,
                        "metrics": {"outputRecordCount": result.rows},
                        # An export's output: the profile store never reads it back as profile data.
                        "exportJobId": job_id,
                        "segmentId": seg.segment_id if seg else None,
                    }
                    session.add(
                        models.Batch(
                            id=batch_id,
                            org_id=self.ctx.org_id,
                            sandbox=self.ctx.sandbox,
                            dataset_id=dataset_id,
                            status="success",
                            content_hash=None,
                            row_count=result.rows,
                            rejected_count=0,
                            body=body,
                            created_ms=now,
                            updated_ms=now,
                        )
                    )
                    if seg is not None:
                        batches_doc.append(
                            {
                                "segmentId": seg.segment_id,
                                "segmentNs": seg.namespace,
                                "status": list(seg.statuses),
                                "batchId": batch_id,
                            }
                        )
                destination = dict(row.body["destination"])
                if folder:
                    destination["batchId"] = written[0][1]
                    destination["files"] = [f for b in batches_doc for f in b["files"]]
                    if len(batches_doc) > 1 or batches_doc[0]["segmentId"]:
                        destination["batches"] = batches_doc
                elif batches_doc:
                    destination["batches"] = batches_doc
                else:
                    destination["batchId"] = written[0][1]
                self._record_published(
                    session, row, destination, (start, end), total, by_namespace, evaluations
                )
                summary = {
                    "rows": total,
                    "by_namespace": by_namespace,
                    "batches": [b for _, b, _ in written],
                    "files": [str(p) for p in moved],
                }
        except BaseException:
            for path in moved:
                shutil.rmtree(path, ignore_errors=True)
            raise
        return summary

    def _publish_table(self, job_id, table: Mapping, written, evaluations, start, end) -> dict:
        """Extension: replace the PostgreSQL table with this export (one transaction there), unless cancelled."""

        if len(written) != 1:
            raise ApiError(400, "destination.postgres: segmentPerBatch is not supported for a table.")
        _, batch_id, result = written[0]
        (csv_path,) = result.files
        url = table.get("url") or self.ctx.settings.export_pg_url
        with self.ctx.catalog.session() as session:
            row = self.jobs._row(session, job_id, lock=True)
            internal = dict(row.body.get(INTERNAL) or {})
            if internal.get("cancelRequested") or row.status in self.jobs.TERMINAL:
                raise ExportCancelled()
            rows = replace_table(url, table.get("schema", "public"), table["table"], result.columns, csv_path)
            destination = {**row.body["destination"], "batchId": batch_id, "rowCount": rows}
            self._record_published(
                session, row, destination, (start, end), result.rows, result.by_namespace, evaluations
            )
        return {"rows": result.rows, "by_namespace": result.by_namespace, "batches": [batch_id], "files": []}

    def _record_published(
        self, session, row, destination: dict, times: tuple[int, int], total: int, by_namespace, evaluations
    ) -> None:
        """The job's outcome, in the transaction that publishes its output: where it went, its metrics, and which
        evaluation of each segment it exported (extension: the delta recipe starts after it)."""
        start, end = times
        body = dict(row.body)
        metrics = dict(body.get("metrics") or {})
        metrics.update(
            profileExportTime={"startTimeInMs": start, "endTimeInMs": end, "totalTimeInMs": end - start},
            totalExportedProfileCounter=total,
            exportedProfileByNamespaceCounter=by_namespace,
        )
        internal = {**(body.get(INTERNAL) or {}), "published": now_ms()}
        body.update(destination=destination, metrics=metrics, **{INTERNAL: internal})
        body["segmentEvaluations"] = [
            {"segmentId": a, "evaluationTime": iso(e.evaluation_time)} for a, e in evaluations.items()
        ]
        row.body = body
        self.jobs._touch(session, row)

    def _updated_profiles(self, after: datetime, staging: Path) -> Path:
        """Parquet of the profile ids having a profile fragment in a batch ingested after ``after``."""

        after_ms = int(after.timestamp() * 1000)
        refs = [b for b in successful_batches(self.ctx)["profile"] if b.ingested_ms > after_ms]
        staging.mkdir(parents=True, exist_ok=True)
        out = staging / "updated_profiles.parquet"
        files = [str(p) for b in refs for p in self.layout.batch_files(b.dataset_id, b.batch_id)]
        con = connect(staging / "spill", "1GB")
        try:
            if not files:
                con.execute(
                    f"COPY (SELECT NULL::VARCHAR AS profile_id WHERE false) TO {sql_str(out)} (FORMAT parquet)"
                )
                return out
            listing = sql_list(files)
            con.execute(
                f"""COPY (SELECT DISTINCT i.profile_id FROM (
                        SELECT e.key AS namespace, unnest(e.value).id AS id
                        FROM (SELECT unnest(identityMap) AS e FROM read_parquet({listing}, union_by_name = true)))
                    f JOIN read_parquet({sql_str(self.layout.identities_path())}) i
                    ON i.namespace = f.namespace AND i.id = f.id) TO {sql_str(out)} (FORMAT parquet)"""
            )
        finally:
            con.close()
        return out

    def _gate_errors(self, segments: list[dict], override: Any) -> list[dict]:
        gates = PublishGates(self.ctx)
        errors = []
        for seg in segments:
            for result in gates.status(seg["segmentId"]):
                overridden = override is True or (isinstance(override, list) and result.check in override)
                if not result.passed and not overridden:
                    errors.append(
                        {
                            "code": ERROR_GATE_FAILED,
                            "msg": f"Publish gate {result.check} failed for segment {seg['segmentId']}: "
                            f"{result.description} Override it with publishGates.override.",
                            "check": result.check,
                            "segmentId": seg["segmentId"],
                        }
                    )
        return errors

    def _record_errors(self, job_id: int, errors: list[dict]) -> None:
        with self.ctx.catalog.session() as session:
            row = self.jobs._row(session, job_id, lock=True)
            with_internal(row, errors=errors)
            self.jobs._touch(session, row)

    def _events_spec(self, spec: Mapping | None, staging: Path):
        """The events relation of ``additionalFields.eventList``: the store's events, or (with an ingestion-time
        window) the event batches ingested in it, keyed to profiles as the store keys them."""

        if spec is None:
            return None
        fields = tuple(f.strip() for f in spec["fields"].split(",")) if spec.get("fields") else None
        window = spec.get("filter") or {}
        if not window:
            if not list(self.layout.events_dir().glob("current/*.parquet")):
                return EventsSpec(f"({EMPTY_EVENTS})", None)
            return EventsSpec(
                f"read_parquet({sql_str(self.layout.events_path())}, union_by_name = true)", fields
            )
        low = window.get("fromIngestTimestamp")
        high = window.get("toIngestTimestamp")
        low_ms = int(parse_rfc3339(low, "fromIngestTimestamp").timestamp() * 1000) if low else None
        high_ms = int(parse_rfc3339(high, "toIngestTimestamp").timestamp() * 1000) if high else None
        refs = [
            b
            for b in successful_batches(self.ctx)["experienceevent"]
            if (low_ms is None or b.ingested_ms > low_ms) and (high_ms is None or b.ingested_ms <= high_ms)
        ]
        files = [str(p) for b in refs for p in self.layout.batch_files(b.dataset_id, b.batch_id)]
        if not files:
            return EventsSpec(f"({EMPTY_EVENTS})", None)
        listing = sql_list(files)
        relation = _keyed_sql(
            f"read_parquet({listing}, union_by_name = true)", str(self.layout.identities_path())
        )
        return EventsSpec(f"({relation})", fields)
