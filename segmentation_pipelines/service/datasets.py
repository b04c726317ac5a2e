"""Datasets and their batches (Catalog-like ``/data/foundation/catalog/dataSets``), ingestion and the union schema.

A dataset has an XDM class (profile or experience event). ``ingest(dataset_id, paths)`` reads files (Parquet or
JSON Lines) into a new batch. A remote (REST) caller names only files of its sandbox's landing area
(``landing.py``): uploaded there through the Batch Ingestion API (``create_batch``, ``upload_file``,
``complete_batch``) or copied in by an operator; in-process, a local path is the caller's own file. The batch has accepted rows in ``part-*.parquet``, refused rows with their
reasons in ``rejects.jsonl``. The batch folder is written under a temporary name and renamed when complete, and
only then is the batch marked ``success``: the store builds read only successful batches. A batch whose files have
the same content as an earlier successful batch of the dataset is not ingested again: the earlier batch is
returned with ``"duplicate": true``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.code_location import request_reload
from segmentation_pipelines.errors import ApiError, BadRequest, Conflict, NotFound
from segmentation_pipelines.landing import resolve_path
from segmentation_pipelines.profiles.ingest import file_format, ingest_files
from segmentation_pipelines.profiles.layout import StoreLayout, publish_dir
from segmentation_pipelines.profiles.schema import merge_columns, schema_paths
from segmentation_pipelines.profiles.store import BatchRef
from segmentation_pipelines.profiles.xdm import CLASS_KEYS, EVENT_CLASS, PROFILE_CLASS, SCHEMA_REFS
from segmentation_pipelines.service.batches import SUCCESS, successful_batches
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.merge_policies import MergePoliciesService
from segmentation_pipelines.service.profile_store import STALE, ProfileStoreService
from segmentation_pipelines.service.query import int_param, parse_int

log = logging.getLogger(__name__)

LOADING, FAILED = "loading", "failed"
# An upload batch (Batch Ingestion API) is "loading" while files arrive; ``uploading: true`` tells it from a batch
# being ingested.
UPLOAD_FORMATS = {"json": ".json", "jsonl": ".jsonl", "parquet": ".parquet"}
# Uploaded file names: a plain name (no folder, not hidden), a supported suffix.
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
UPLOADS = "batches"  # uploads land in <landing>/batches/<batchId>/<fileName>


def _xdm_class(body: dict) -> str:
    """The XDM class named by ``xdmClass``, ``schema.name`` or ``schemaRef.id``."""
    candidates = [body.get("xdmClass"), (body.get("schema") or {}).get("name")]
    ref = (body.get("schemaRef") or {}).get("id")
    candidates += [cls for cls, ref_id in SCHEMA_REFS.items() if ref and ref == ref_id]
    for c in candidates:
        if c:
            if c not in CLASS_KEYS:
                raise BadRequest(f"xdmClass: '{c}' is not supported; use {PROFILE_CLASS} or {EVENT_CLASS}.")
            return c
    raise BadRequest(f"xdmClass: a dataset needs an XDM class ({PROFILE_CLASS} or {EVENT_CLASS}).")


def content_hash(paths: list[Path]) -> str:
    """Hash of the files' contents, independent of their names and order."""
    digests = []
    for path in paths:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digests.append(h.hexdigest())
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()


class DatasetsService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.layout = StoreLayout(ctx.sandbox_root)

    # ------------------------------------------------------------ datasets
    def create(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("name: a dataset needs a non-empty name.")
        xdm_class = _xdm_class(body)
        now = now_ms()
        dataset_id = uuid.uuid4().hex[:24]
        doc = {
            "id": dataset_id,
            "name": name.strip(),
            "description": body.get("description", ""),
            "imsOrg": self.ctx.org_id,
            "sandboxId": self.ctx.sandbox,
            "xdmClass": xdm_class,
            "schemaRef": {
                "id": SCHEMA_REFS[xdm_class],
                "contentType": "application/vnd.adobe.xed-full+json;version=1",
            },
            "tags": body.get("tags") or {},
            "created": now,
            "updated": now,
            "version": "1.0.0",
        }
        with self.ctx.catalog.session() as s:
            self.ctx.repo(s, models.Dataset).add(
                id=dataset_id, name=doc["name"], xdm_class=xdm_class, body=doc, created_ms=now, updated_ms=now
            )
        # A sandbox with data has a default merge policy (and with it a merged_profiles asset).

        MergePoliciesService(self.ctx).ensure_default()

        request_reload(self.ctx.settings)
        return doc

    def _row(self, s, dataset_id: str):
        row = self.ctx.repo(s, models.Dataset).get(dataset_id)
        if row is None:
            raise NotFound("Dataset", dataset_id)
        return row

    def _with_stats(self, s, row) -> dict:
        batches = self.ctx.repo(s, models.Batch).find(
            models.Batch.dataset_id == row.id, models.Batch.status == SUCCESS
        )
        last = max(batches, key=lambda b: b.created_ms, default=None)
        return {
            **row.body,
            "rowCount": sum(b.row_count for b in batches),
            "batchCount": len(batches),
            "lastBatchId": last.id if last else None,
            "lastBatchStatus": last.status if last else None,
        }

    def get(self, dataset_id: str) -> dict:
        with self.ctx.catalog.session() as s:
            return self._with_stats(s, self._row(s, dataset_id))

    def list(self, **query) -> dict:
        """Catalog shape: an object keyed by dataset id. Filters: ``name``, ``xdmClass``; ``start``, ``limit``."""
        where = []
        if query.get("name"):
            where.append(models.Dataset.name == query["name"])
        if query.get("xdmClass"):
            where.append(models.Dataset.xdm_class == query["xdmClass"])
        start, limit = int_param(query, "start", 0), int_param(query, "limit", 100)
        with self.ctx.catalog.session() as s:
            rows = self.ctx.repo(s, models.Dataset).find(
                *where, order_by=[models.Dataset.created_ms, models.Dataset.id], offset=start, limit=limit
            )
            return {r.id: self._with_stats(s, r) for r in rows}

    def delete(self, dataset_id: str) -> None:
        with self.ctx.catalog.session() as s:
            row = self._row(s, dataset_id)
            for batch in self.ctx.repo(s, models.Batch).find(models.Batch.dataset_id == dataset_id):
                s.delete(batch)
            self.ctx.repo(s, models.Dataset).delete(row)
        shutil.rmtree(self.layout.dataset_dir(dataset_id), ignore_errors=True)
        self._refresh_store(f"dataset {dataset_id} deleted")

        request_reload(self.ctx.settings)
        return None

    # ------------------------------------------------------------ batches
    def ingest(self, dataset_id: str, paths: list[str]) -> dict:
        """Ingest files into a new batch of ``dataset_id``; returns the batch. REST callers name files of their
        landing area (relative to it, or absolute inside it); in-process callers any local file (a relative path
        is relative to the current directory, as ``open`` reads it)."""
        if isinstance(paths, str | Path):
            paths = [str(paths)]
        if not isinstance(paths, list) or not all(isinstance(p, str | Path) for p in paths):
            raise BadRequest("paths: expected a list of file paths.")
        return self._ingest(dataset_id, self._resolve(paths))

    def _resolve(self, paths: list) -> list[Path]:
        if not paths:
            raise BadRequest("paths: list at least one file to ingest.")
        if len(paths) > 1000:
            raise BadRequest("paths: at most 1000 files per batch.")
        out = []
        for raw in paths:
            raw = str(raw)
            if not self.ctx.confined and raw and "\x00" not in raw:
                raw = str(Path(raw).expanduser().absolute())
            path = resolve_path(raw, self.ctx.landing_dir, confined=self.ctx.confined)
            file_format(path, shown=raw[:200])
            out.append(path)
        return out

    def _shown(self, path: Path) -> str:
        """A file as a batch shows it: relative to the landing folder when inside it (no server paths)."""
        base = self.ctx.landing_dir.resolve()
        return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)

    def _ingest(self, dataset_id: str, files: list[Path], batch_id: str | None = None) -> dict:
        digest = content_hash(files)
        duplicate = self._duplicate(dataset_id, digest)
        if duplicate is not None:
            if batch_id is not None:  # the upload batch is not kept: the earlier batch has its rows
                self._drop_batch(batch_id)
            return {
                **duplicate,
                "duplicate": True,
                "profileStore": self._refresh_store(f"batch {duplicate['id']}"),
            }
        with self.ctx.catalog.session() as s:
            dataset = self._row(s, dataset_id)
            xdm_class = dataset.xdm_class
            batches = self.ctx.repo(s, models.Batch)
            existing = merge_columns(
                *(
                    b.body.get("columns") or {}
                    for b in batches.find(
                        models.Batch.dataset_id == dataset_id, models.Batch.status == SUCCESS
                    )
                )
            )
            now = now_ms()
            fields = {
                "status": LOADING,
                "inputFormat": {
                    "format": "mixed" if len({p.suffix for p in files}) > 1 else files[0].suffix.lstrip(".")
                },
                "files": [self._shown(p) for p in files],
                "contentHash": digest,
            }
            if batch_id is None:
                batch_id = uuid.uuid4().hex
                doc = {
                    "id": batch_id,
                    "relatedObjects": [{"type": "dataSet", "id": dataset_id}],
                    "imsOrg": self.ctx.org_id,
                    "created": now,
                    "updated": now,
                    **fields,
                }
                batches.add(
                    id=batch_id,
                    dataset_id=dataset_id,
                    status=LOADING,
                    content_hash=digest,
                    body=doc,
                    created_ms=now,
                    updated_ms=now,
                )
            else:
                row = batches.get(batch_id)
                body = {k: v for k, v in row.body.items() if k != "uploading"}
                batches.update(row, content_hash=digest, body={**body, **fields, "updated": now})
        tmp = self.layout.dataset_dir(dataset_id) / f".tmp-{batch_id}"
        try:
            result = ingest_files(files, xdm_class, tmp, existing, temp_dir=self.layout.tmp_dir())
            publish_dir(tmp, self.layout.batch_dir(dataset_id, batch_id))
        except Exception as e:
            shutil.rmtree(tmp, ignore_errors=True)
            # The engine's own message goes to the log, not to the caller (it may quote server paths).
            message = e.message if isinstance(e, ApiError) else "the files could not be read"
            self._finish(batch_id, FAILED, {"errors": [{"code": "INGEST-500", "description": message}]})
            if isinstance(e, ApiError):
                raise
            log.exception("Ingesting batch %s into dataset %s failed", batch_id, dataset_id)
            raise ApiError(
                500, f"Ingesting batch '{batch_id}' into dataset '{dataset_id}' failed: {message}"
            ) from e
        completed = now_ms()
        metrics = {
            "inputFileCount": len(files),
            "inputRecordCount": result.rows + result.rejected,
            "outputRecordCount": result.rows,
            "failedRecordCount": result.rejected,
        }
        doc = self._finish(
            batch_id,
            SUCCESS,
            {
                "completed": completed,
                "metrics": metrics,
                "rowCount": result.rows,
                "rejectedRowCount": result.rejected,
                "rejectsPath": str(
                    self.layout.rejects_path(dataset_id, batch_id).relative_to(self.layout.sandbox_root)
                ),
                "fileMetrics": [{**f, "path": self._shown(Path(f["path"]))} for f in result.files],
                "columns": result.columns,
            },
            row_count=result.rows,
            rejected_count=result.rejected,
        )
        return {**doc, "profileStore": self._refresh_store(f"batch {batch_id}")}

    # ------------------------------------------------------------ Batch Ingestion API (uploads)
    def create_batch(self, body: Any) -> dict:
        """``POST /data/foundation/import/batches``: an open batch that files are uploaded into."""
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        dataset_id = body.get("datasetId")
        if not isinstance(dataset_id, str) or not dataset_id:
            raise BadRequest("datasetId: the dataset the batch belongs to is required.")
        fmt = (
            (body.get("inputFormat") or {}).get("format")
            if isinstance(body.get("inputFormat"), dict)
            else None
        )
        if fmt not in UPLOAD_FORMATS:
            raise BadRequest(
                f"inputFormat.format: expected one of {sorted(UPLOAD_FORMATS)} (got {str(fmt)[:40]!r})."
            )
        now = now_ms()
        batch_id = uuid.uuid4().hex
        doc = {
            "id": batch_id,
            "status": LOADING,
            "uploading": True,
            "relatedObjects": [{"type": "dataSet", "id": dataset_id}],
            "imsOrg": self.ctx.org_id,
            "created": now,
            "updated": now,
            "inputFormat": {"format": fmt},
            "files": [],
        }
        with self.ctx.catalog.session() as s:
            self._row(s, dataset_id)
            self.ctx.repo(s, models.Batch).add(
                id=batch_id, dataset_id=dataset_id, status=LOADING, body=doc, created_ms=now, updated_ms=now
            )
        return doc

    def _open_batch(self, batch_id: str, dataset_id: str | None = None) -> dict:
        batch = self.get_batch(batch_id)
        if dataset_id is not None and batch["relatedObjects"][0]["id"] != dataset_id:
            raise NotFound("Batch", batch_id)
        if not batch.get("uploading"):
            raise Conflict(
                f"Batch '{batch_id}' is {batch['status']}; files can only be added to an open batch."
            )
        return batch

    def upload_dir(self, batch_id: str) -> Path:
        return self.ctx.landing_dir / UPLOADS / batch_id

    def upload_target(self, batch_id: str, dataset_id: str, file_name: str) -> Path:
        """Where an uploaded file lands (checked: an open batch of that dataset, a plain file name)."""
        if not _FILE_NAME_RE.match(file_name or "") or ".." in file_name:
            raise BadRequest(
                f"fileName: '{str(file_name)[:80]}' is not a plain file name (letters, digits, '.', '_', '-')."
            )
        self._open_batch(batch_id, dataset_id)
        file_format(Path(file_name), shown=file_name)  # Parquet or JSON Lines, whatever inputFormat said
        folder = self.upload_dir(batch_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / file_name

    def upload_file(self, batch_id: str, dataset_id: str, file_name: str, chunks) -> dict:
        """Store one file of an open batch from ``chunks`` (bytes), written aside and renamed when whole."""
        target = self.upload_target(batch_id, dataset_id, file_name)
        part = target.with_name(f".part-{uuid.uuid4().hex}")
        size = 0
        try:
            with open(part, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    out.write(chunk)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return {"batchId": batch_id, "datasetId": dataset_id, "fileName": file_name, "size": size}

    def complete_batch(self, batch_id: str) -> dict:
        """``POST /data/foundation/import/batches/{id}?action=COMPLETE``: ingest the uploaded files."""
        batch = self._open_batch(batch_id)
        folder = self.upload_dir(batch_id)
        files = (
            sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
            if folder.is_dir()
            else []
        )
        if not files:
            raise BadRequest(f"Batch '{batch_id}' has no files; upload at least one before COMPLETE.")
        return self._ingest(batch["relatedObjects"][0]["id"], files, batch_id=batch_id)

    def _drop_batch(self, batch_id: str) -> None:
        with self.ctx.catalog.session() as s:
            repo = self.ctx.repo(s, models.Batch)
            row = repo.get(batch_id)
            if row is not None:
                repo.delete(row)

    def _refresh_store(self, reason: str) -> dict:
        """Bring the profile store current with the new batch (a Dagster run in this process), so that lookups
        and segment jobs see it once ``ingest`` returns. A failed refresh leaves the batch landed and the store
        stale (the sensor, the API's runner or the next segment job refresh it); the batch says so."""
        try:
            return ProfileStoreService(self.ctx).refresh(reason=reason)
        except ApiError as exc:
            return {"status": STALE, "error": exc.message}

    def _duplicate(self, dataset_id: str, digest: str) -> dict | None:
        """An earlier successful batch of the dataset with the same content (it is not ingested again)."""
        with self.ctx.catalog.session(readonly=True) as s:
            self._row(s, dataset_id)
            dup = self.ctx.repo(s, models.Batch).find(
                models.Batch.dataset_id == dataset_id,
                models.Batch.content_hash == digest,
                models.Batch.status == SUCCESS,
            )
            return dup[0].body if dup else None

    def _finish(self, batch_id: str, status: str, extra: dict, **columns) -> dict:
        with self.ctx.catalog.session() as s:
            repo = self.ctx.repo(s, models.Batch)
            row = repo.get(batch_id)
            doc = {**row.body, **extra, "status": status, "updated": now_ms()}
            repo.update(row, status=status, body=doc, **columns)
            return doc

    def batches(self, dataset_id: str, **query) -> dict:
        """Batches of a dataset, keyed by batch id (Catalog shape), oldest first."""
        with self.ctx.catalog.session() as s:
            self._row(s, dataset_id)
            rows = self.ctx.repo(s, models.Batch).find(
                models.Batch.dataset_id == dataset_id, order_by=[models.Batch.created_ms, models.Batch.id]
            )
            return {r.id: r.body for r in rows}

    def get_batch(self, batch_id: str) -> dict:
        with self.ctx.catalog.session() as s:
            row = self.ctx.repo(s, models.Batch).get(batch_id)
            if row is None:
                raise NotFound("Batch", batch_id)
            return row.body

    def delete_batch(self, batch_id: str) -> None:
        """Remove a batch and its files (the next store build no longer sees its rows)."""
        with self.ctx.catalog.session() as s:
            repo = self.ctx.repo(s, models.Batch)
            row = repo.get(batch_id)
            if row is None:
                raise NotFound("Batch", batch_id)
            if row.status == LOADING and not row.body.get("uploading"):
                raise Conflict(f"Batch '{batch_id}' is still loading; delete it once it has finished.")
            dataset_id = row.dataset_id
            repo.delete(row)
        shutil.rmtree(self.layout.batch_dir(dataset_id, batch_id), ignore_errors=True)
        shutil.rmtree(self.upload_dir(batch_id), ignore_errors=True)
        self._refresh_store(f"batch {batch_id} deleted")
        return None

    def rejects(self, batch_id: str, limit: int | str | None = 100) -> list[dict]:
        """The first ``limit`` rejected rows of a batch with their reasons."""

        limit = parse_int(limit, "limit", 100)
        batch = self.get_batch(batch_id)
        dataset_id = batch["relatedObjects"][0]["id"]
        path = self.layout.rejects_path(dataset_id, batch_id)
        if not path.is_file():
            if batch["status"] != SUCCESS:
                raise Conflict(f"Batch '{batch_id}' is {batch['status']}; it has no rejects file.")
            return []
        out = []
        with open(path) as f:
            for line in f:
                if len(out) >= limit:
                    break
                out.append(json.loads(line))
        return out

    # ------------------------------------------------------------ for the store builds
    def successful_batches(self) -> dict[str, list[BatchRef]]:
        """``{"profile": [...], "experienceevent": [...]}``: every complete batch of this sandbox."""
        return successful_batches(self.ctx)

    def schema(self) -> dict:
        """The union schema of every profile dataset and every event dataset (``docs/data-model.md``)."""
        batches = self.successful_batches()
        return {key: schema_paths(merge_columns(*(b.columns for b in refs))) for key, refs in batches.items()}
