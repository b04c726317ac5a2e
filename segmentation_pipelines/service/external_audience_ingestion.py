"""The ingestion of an external audience's files and the life of its members: what the run's asset executes (both
stages, then the membership published), the file-arrival check, and the maintenance that exits members whose TTL
passed and re-resolves pending identities once the profile store changed. See ``engine/external_ingest.py`` and
``docs/decisions/external-audiences.md``."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from segmentation_pipelines import duck
from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.engine import external_ingest as ingest
from segmentation_pipelines.engine import memberships
from segmentation_pipelines.errors import ApiError
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.xdm import STANDARD_NAMESPACES
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.external_audience_rules import (
    audience_row,
    fingerprint,
    source_files,
    unprocessable,
)
from segmentation_pipelines.service.external_audience_runs import (
    ACTIVE,
    PROCESSING,
    SUCCESS,
    ExternalAudienceRunsService,
)
from segmentation_pipelines.service.merge_policies import MergePoliciesService
from segmentation_pipelines.service.profile_store import ProfileStoreService
from segmentation_pipelines.service.tracked_runs import INTERNAL

log = logging.getLogger(__name__)


def _version_key(version: Mapping[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(version.items())).encode()).hexdigest()[:16]


class ExternalAudienceIngestion:
    """Ingestion and member upkeep of the external audiences of one (org, sandbox); see the module docstring."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.layout = StoreLayout(ctx.sandbox_root)
        self.runs = ExternalAudienceRunsService(ctx)

    def extend_ttl(self, id: str, *, at_ms: int | None = None) -> dict:  # noqa: A002
        """Re-ingest the last successful data now: every member is valid for another ``ttlInDays``."""
        with self.ctx.catalog.session(readonly=True) as session:
            row = audience_row(self.ctx, session, id)
            doc = copy.deepcopy(row.body)
            busy = self.ctx.repo(session, models.ExternalAudienceRun).find(
                models.ExternalAudienceRun.audience_id == id, models.ExternalAudienceRun.status.in_(ACTIVE)
            )
        if busy:
            raise unprocessable(
                f"External audience '{id}' has a run in progress ({busy[0].id}); extend it later."
            )
        data = (doc.get(INTERNAL) or {}).get("dataPath")
        if not data or not Path(data).exists():
            raise unprocessable(f"External audience '{id}' has no successful ingestion to extend yet.")
        now = at_ms or now_ms()
        folder = self.data_dir(id)
        staged = folder / f".extend-{uuid.uuid4().hex}.parquet"
        ingest.restamp(Path(data), now, staged)
        final = folder / f"{now}-extend.parquet"
        os.replace(staged, final)
        self.publish_membership(id, final, now, run_id=None, ttl=int(doc["ttlInDays"]))
        return {"audienceId": id, "name": doc["name"]}

    def execute(
        self, run_id: str, dagster_run: str | None = None, report: Callable[[str], None] | None = None
    ) -> dict:
        """The ingestion itself (the asset's body): both stages, then the membership is published. Raises
        :class:`segmentation_pipelines.engine.external_ingest.IngestError` with what is wrong (nothing published)."""
        say = report or (lambda _msg: None)
        with self.ctx.catalog.session(readonly=True) as session:
            run = self.runs._row(session, run_id)
            audience = audience_row(self.ctx, session, run.audience_id)
            doc, run_body, audience_id = copy.deepcopy(audience.body), dict(run.body), audience.id
        internal = doc.get(INTERNAL) or {}
        run_internal = run_body.get(INTERNAL) or {}
        now = now_ms()
        ingestion_ms = int(run_internal.get("ingestionMs") or now)
        confined = bool(internal.get("confined"))
        self.runs.record_stage(run_id, 0, PROCESSING, dagster_run)
        folder = self.data_dir(audience_id)
        folder.mkdir(parents=True, exist_ok=True)
        staged = folder / f".run-{run_id}.parquet"
        # Both stages in one DuckDB connection: stage 2 reads the rows stage 1 keeps in memory.
        with ingest.Ingestion(folder) as run:
            try:
                fmt, files = source_files(self.ctx, doc, confined=confined, required=True)
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
                rows = run.ingest_rows(
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
                self.runs.fail_stage(run_id, 0, exc.message)
                raise ingest.IngestError(exc.message) from None
            except ingest.IngestError as exc:
                staged.unlink(missing_ok=True)
                self.runs.fail_stage(run_id, 0, str(exc))
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
            self.runs.record_stage(run_id, 0, SUCCESS, dagster_run, metrics=metrics)
            self.runs.record_stage(run_id, 1, PROCESSING, dagster_run)
            try:
                counts = self.publish_membership(
                    audience_id,
                    final,
                    now,
                    run_id=run_id,
                    ttl=int(doc["ttlInDays"]),
                    namespaces=[ns for ns in namespaces.values() if ns],
                    run=run,
                )
            except Exception as exc:
                final.unlink(missing_ok=True)
                self.runs.fail_stage(run_id, 1, f"{type(exc).__name__}: {exc}")
                raise
            metrics.update(
                members=counts["members"], exited=counts["exited"], pendingRows=counts.get("pending", 0)
            )
            self.runs.record_stage(run_id, 1, SUCCESS, dagster_run, metrics=metrics)
            return metrics

    def maintain(self, at_ms: int | None = None) -> int:
        """Exit members whose TTL passed, and re-resolve pending rows after the profile store changed; the number
        of audiences republished."""

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
            internal = doc.get(INTERNAL) or {}
            data = internal.get("dataPath")
            if ident in busy or not data or not Path(data).exists():
                continue
            expiry = internal.get("nextExpiryMs")
            due = expiry is not None and int(expiry) <= now
            if not due and internal.get("pending"):
                version = version or ProfileStoreService(self.ctx).version()
                due = internal.get("storeVersion") != _version_key(version)
            if due:
                self.publish_membership(ident, Path(data), now, run_id=None, ttl=int(doc["ttlInDays"]))
                done += 1
        return done

    def arrivals(self) -> list[tuple[str, str]]:
        """File-arrival check: a ``NEW`` differential run for each audience whose source changed since its last
        ingestion (its files' fingerprint); ``[(run id, fingerprint)]`` of the runs written."""
        out = []
        with self.ctx.catalog.session(readonly=True) as session:
            rows = [
                (r.id, copy.deepcopy(r.body)) for r in self.ctx.repo(session, models.ExternalAudience).find()
            ]
            m = models.ExternalAudienceRun
            seen = {
                (r.audience_id, (r.body.get(INTERNAL) or {}).get("fingerprint"))
                for r in self.ctx.repo(session, m).find()
            }
            busy = {r.audience_id for r in self.ctx.repo(session, m).find(m.status.in_(ACTIVE))}
        for ident, doc in rows:
            if ident in busy:
                continue
            try:
                _fmt, files = source_files(
                    self.ctx, doc, confined=bool((doc.get(INTERNAL) or {}).get("confined"))
                )
            except ApiError:
                continue  # the source is gone: nothing arrived
            if not files:
                continue
            fp = fingerprint(files)
            if fp == (doc.get(INTERNAL) or {}).get("fingerprint") or (ident, fp) in seen:
                continue
            try:
                run = self.runs.new_run(
                    ident, {"differentialIngestion": True}, trigger="file", mode=False, fingerprint=fp
                )
            except ApiError as exc:  # a limit: the next tick tries again
                log.warning("External audience %s: new files not ingested yet: %s", ident, exc.message)
                continue
            out.append((run["runId"], fp))
        return out

    def namespaces_of(self, fields: list[dict]) -> dict[str, str | None]:
        """Each identity field's namespace as this sandbox spells it (None: the sandbox does not know it)."""
        known = {n.lower(): n for n in STANDARD_NAMESPACES}
        graph = self.layout.identities_path()
        if self.layout.identities_dir().exists():
            con = duck.connect()
            try:
                for (ns,) in con.execute(
                    "SELECT DISTINCT namespace FROM read_parquet($p)", {"p": str(graph)}
                ).fetchall():
                    known[str(ns).lower()] = str(ns)
            finally:
                con.close()
        return {f["name"]: known.get(str(f["identityNs"]).lower()) for f in fields if f.get("identityNs")}

    def publish_membership(
        self,
        audience_id: str,
        data: Path,
        now: int,
        run_id: str | None,
        ttl: int,
        namespaces: list[str] | None = None,
        run: ingest.Ingestion | None = None,
    ) -> dict:
        """Build the membership from ``data`` at ``now`` and publish it (file renamed into place, then the catalog
        row, then the audience's pointers). ``run``: the ingestion whose stage 1 wrote ``data`` (stage 2 reads its
        rows from memory); without it ``data`` is read from the file."""

        evaluations = AudienceEvaluations(self.ctx)
        previous = evaluations.latest(audience_id, before_ms=now + 1)
        policy = MergePoliciesService(self.ctx).ensure_default()["id"]
        version = _version_key(ProfileStoreService(self.ctx).version())
        staging_root = self.layout.memberships_dir()
        staging = staging_root / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            build = run.build_membership if run is not None else ingest.build_membership
            result = build(
                data_path=data,
                identities_path=self.layout.identities_path(),
                profiles_path=self.layout.profiles_path(policy),
                previous_membership=previous.path if previous else None,
                evaluation_ms=now,
                ttl_days=ttl,
                out_path=staging / "members.parquet",
                namespaces=namespaces,
                memberships_root=staging_root,
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
            row = audience_row(self.ctx, session, audience_id, lock=True)
            internal = dict(row.body.get(INTERNAL) or {})
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
            row.body = {**row.body, INTERNAL: internal}
            session.flush()
        if old and old != str(data):
            Path(old).unlink(missing_ok=True)
        return result.counts

    def data_dir(self, audience_id: str) -> Path:
        return self.ctx.sandbox_root / "external_audiences" / memberships.safe_name(audience_id)
