"""The export job request (``CreateExportJobRequest``, aep-api §8) checked and normalised before anything is stored:
each refusal names the field and what is wrong (400)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from segmentation_pipelines.catalog import models
from segmentation_pipelines.engine.export_postgres import valid_name
from segmentation_pipelines.errors import BadRequest
from segmentation_pipelines.landing import resolve_path
from segmentation_pipelines.profiles.xdm import PROFILE_CLASS
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.datasets import DatasetsService

MEMBER_STATUSES = ("realized", "existing", "exited")
DEFAULT_STATUSES = ["realized", "existing"]
SCHEMA_NAME = PROFILE_CLASS


def parse_rfc3339(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}: expected an RFC 3339 date-time string such as 2026-01-31T00:00:00Z.")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    except ValueError:
        raise BadRequest(
            f"{where}: '{text[:60]}' is not an RFC 3339 date-time (e.g. 2026-01-31T00:00:00Z)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class ExportRequests:
    """Validation of export requests in one (org, sandbox)."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def validated(self, body: Any) -> dict:
        if not isinstance(body, Mapping):
            raise BadRequest("body: expected an export job request object (destination, schema, filter...).")
        schema = body.get("schema")
        if not isinstance(schema, Mapping) or not isinstance(schema.get("name"), str):
            raise BadRequest(f"schema.name: required (e.g. '{SCHEMA_NAME}').")
        if schema["name"] != SCHEMA_NAME:
            raise BadRequest(f"schema.name: only '{SCHEMA_NAME}' is supported (got '{schema['name']}').")
        destination = body.get("destination")
        if isinstance(destination, Mapping) and destination.get("postgres") is not None:
            out = {"destination": self._table_destination(destination), "schema": {"name": SCHEMA_NAME}}
            return self._validated_rest(body, out)
        if isinstance(destination, Mapping) and destination.get("folder") is not None:
            out = {"destination": self._folder_destination(destination), "schema": {"name": SCHEMA_NAME}}
            return self._validated_rest(body, out)
        if not isinstance(destination, Mapping) or not isinstance(destination.get("datasetId"), str):
            raise BadRequest("destination.datasetId: required, the id of a profile dataset to export to.")
        per_batch = destination.get("segmentPerBatch", False)
        if not isinstance(per_batch, bool):
            raise BadRequest("destination.segmentPerBatch: expected true or false.")
        dataset_id = destination["datasetId"]
        with self.ctx.catalog.session(readonly=True) as session:
            dataset = self.ctx.repo(session, models.Dataset).get(dataset_id)
            if dataset is None:
                raise BadRequest(
                    f"destination.datasetId: dataset '{dataset_id}' was not found in this sandbox."
                )
            if dataset.xdm_class != PROFILE_CLASS:
                raise BadRequest(
                    f"destination.datasetId: dataset '{dataset_id}' is of class {dataset.xdm_class}; "
                    f"exports need a {PROFILE_CLASS} dataset."
                )
        out: dict[str, Any] = {
            "destination": {"datasetId": dataset_id, "segmentPerBatch": per_batch},
            "schema": {"name": SCHEMA_NAME},
        }
        return self._validated_rest(body, out)

    def _folder_destination(self, destination: Mapping) -> dict:
        """Extension: ``{"folder": {"path", "format": "parquet"|"csv"}, "segmentPerBatch"}``: files in a folder
        (inside the landing area for REST callers), written aside and renamed into ``export-<job>-<batch>/``."""

        folder = destination["folder"]
        if not isinstance(folder, Mapping) or not isinstance(folder.get("path"), str):
            raise BadRequest(
                'destination.folder: expected {"path": "<folder>", "format": "parquet" | "csv"}.'
            )
        fmt = folder.get("format", "parquet")
        if fmt not in ("parquet", "csv"):
            raise BadRequest(f"destination.folder.format: 'parquet' or 'csv' (got {fmt!r}).")
        per_batch = destination.get("segmentPerBatch", False)
        if not isinstance(per_batch, bool):
            raise BadRequest("destination.segmentPerBatch: expected true or false.")
        path = resolve_path(
            folder["path"],
            self.ctx.landing_dir,
            confined=self.ctx.confined,
            kind="folder",
            what="destination.folder.path",
        )
        return {"folder": {"path": str(path), "format": fmt}, "segmentPerBatch": per_batch}

    def _table_destination(self, destination: Mapping) -> dict:
        """Extension: ``{"postgres": {"table", "schema"?: "public"}}`` in the database of
        ``SEGMENTATION_EXPORT_PG_URL``; in-process callers may name another with ``url`` (REST callers may not)."""

        spec = destination["postgres"]
        if not isinstance(spec, Mapping) or not isinstance(spec.get("table"), str):
            raise BadRequest('destination.postgres: expected {"table": "<name>", "schema": "public"}.')
        for key in ("table", "schema"):
            if key in spec and not valid_name(str(spec[key])):
                raise BadRequest(f"destination.postgres.{key}: '{spec[key]}' is not a plain SQL name.")
        if destination.get("segmentPerBatch"):
            raise BadRequest("destination.segmentPerBatch: a PostgreSQL table holds one export; use false.")
        url = spec.get("url")
        if url is not None and self.ctx.confined:
            raise BadRequest(
                "destination.postgres.url: not accepted over REST; the server's SEGMENTATION_EXPORT_PG_URL is used."
            )
        if not (url or self.ctx.settings.export_pg_url):
            raise BadRequest(
                "destination.postgres: no database: set SEGMENTATION_EXPORT_PG_URL on the server."
            )
        out = {"table": spec["table"], "schema": spec.get("schema", "public")}
        if url:
            out["url"] = url
        return {"postgres": out, "segmentPerBatch": False}

    def _validated_rest(self, body: Mapping, out: dict) -> dict:
        fields = body.get("fields")
        if fields is not None:
            if not isinstance(fields, str) or not fields.strip():
                raise BadRequest(
                    "fields: expected a comma-separated string of dot paths (e.g. person.name,identityMap)."
                )
            self._check_fields(fields)
            out["fields"] = fields
        segments = self._validated_filter(body.get("filter"), out)
        out["mergePolicy"] = self._merge_policy(body.get("mergePolicy"), segments)
        info = body.get("evaluationInfo")
        if info is not None:
            if not isinstance(info, Mapping) or not isinstance(info.get("segmentation", False), bool):
                raise BadRequest("evaluationInfo.segmentation: expected true or false.")
            out["evaluationInfo"] = {"segmentation": bool(info.get("segmentation", False))}
            if out["evaluationInfo"]["segmentation"] and not segments:
                raise BadRequest(
                    "evaluationInfo.segmentation: needs filter.segments (the segments to evaluate)."
                )
        extra = body.get("additionalFields")
        if extra is not None:
            if not isinstance(extra, Mapping):
                raise BadRequest("additionalFields: expected an object with eventList.")
            if extra.get("eventList") is not None:
                out["additionalFields"] = {"eventList": self._validated_event_list(extra["eventList"])}
        gates = body.get("publishGates")
        if gates is not None:
            override = gates.get("override") if isinstance(gates, Mapping) else None
            if not (
                override is True
                or override is False
                or (isinstance(override, list) and all(isinstance(c, str) for c in override))
            ):
                raise BadRequest("publishGates.override: expected true (all gates) or a list of check names.")
            out["publishGates"] = {"override": override}
        return out

    def _validated_filter(self, flt: Any, out: dict) -> list[dict]:
        if flt is None:
            return []
        if not isinstance(flt, Mapping):
            raise BadRequest("filter: expected an object (segments, segmentQualificationTime, ...).")
        result: dict[str, Any] = {}
        segments = flt.get("segments")
        checked: list[dict] = []
        if segments is not None:
            if not isinstance(segments, list) or not segments:
                raise BadRequest('filter.segments: expected a non-empty array of {"segmentId": ...}.')
            with self.ctx.catalog.session(readonly=True) as session:
                for i, seg in enumerate(segments):
                    where = f"filter.segments[{i}]"
                    if not isinstance(seg, Mapping) or not isinstance(seg.get("segmentId"), str):
                        raise BadRequest(f"{where}.segmentId: required, a segment definition id.")
                    ident = seg["segmentId"]
                    if self.ctx.repo(session, models.SegmentDefinition).get(ident) is None:
                        raise BadRequest(
                            f"{where}.segmentId: segment definition '{ident}' was not found in this sandbox."
                        )
                    namespace = seg.get("segmentNs", "ups")
                    if namespace != "ups":
                        raise BadRequest(
                            f"{where}.segmentNs: only 'ups' audiences are evaluated here (got {namespace!r})."
                        )
                    statuses = seg.get("status", DEFAULT_STATUSES)
                    if not isinstance(statuses, list) or not statuses:
                        raise BadRequest(
                            f"{where}.status: expected a non-empty array of realized, existing, exited."
                        )
                    bad = [s for s in statuses if s not in MEMBER_STATUSES]
                    if bad:
                        raise BadRequest(f"{where}.status: '{bad[0]}' is not realized, existing or exited.")
                    if any(c["segmentId"] == ident for c in checked):
                        raise BadRequest(f"{where}.segmentId: segment '{ident}' is listed twice.")
                    checked.append(
                        {"segmentId": ident, "segmentNs": namespace, "status": list(dict.fromkeys(statuses))}
                    )
            result["segments"] = checked
        window = flt.get("segmentQualificationTime")
        if window is not None:
            if not isinstance(window, Mapping):
                raise BadRequest("filter.segmentQualificationTime: expected {startTime?, endTime?}.")
            bounds = {}
            for key in ("startTime", "endTime"):
                if window.get(key) is not None:
                    bounds[key] = parse_rfc3339(window[key], f"filter.segmentQualificationTime.{key}")
            if len(bounds) == 2 and bounds["startTime"] > bounds["endTime"]:
                raise BadRequest("filter.segmentQualificationTime: startTime is after endTime.")
            result["segmentQualificationTime"] = {k: window[k] for k in bounds}
        if flt.get("fromIngestTimestamp") is not None:
            parse_rfc3339(flt["fromIngestTimestamp"], "filter.fromIngestTimestamp")
            result["fromIngestTimestamp"] = flt["fromIngestTimestamp"]
        if flt.get("emptyProfiles") is not None:
            if not isinstance(flt["emptyProfiles"], bool):
                raise BadRequest("filter.emptyProfiles: expected true or false.")
            result["emptyProfiles"] = flt["emptyProfiles"]
        out["filter"] = result
        return checked

    def _validated_event_list(self, spec: Any) -> dict:
        where = "additionalFields.eventList"
        if not isinstance(spec, Mapping):
            raise BadRequest(f"{where}: expected an object with fields and filter.")
        out: dict[str, Any] = {}
        fields = spec.get("fields")
        if fields is not None:
            if not isinstance(fields, str) or not fields.strip():
                raise BadRequest(f"{where}.fields: expected a comma-separated string of event field paths.")

            known = DatasetsService(self.ctx).schema().get("experienceevent") or {}
            for path in (f.strip() for f in fields.split(",")):
                if not path or (known and path not in known):
                    raise BadRequest(
                        f"{where}.fields: '{path}' is not a field of the event schema of this sandbox."
                    )
            out["fields"] = fields
        flt = spec.get("filter")
        if flt is not None:
            if not isinstance(flt, Mapping):
                raise BadRequest(f"{where}.filter: expected {{fromIngestTimestamp?, toIngestTimestamp?}}.")
            out["filter"] = {}
            for key in ("fromIngestTimestamp", "toIngestTimestamp"):
                if flt.get(key) is not None:
                    parse_rfc3339(flt[key], f"{where}.filter.{key}")
                    out["filter"][key] = flt[key]
        return out

    def _merge_policy(self, given: Any, segments: list[dict]) -> dict:
        with self.ctx.catalog.session(readonly=True) as session:
            if given is not None:
                if not isinstance(given, Mapping) or not isinstance(given.get("id"), str):
                    raise BadRequest("mergePolicy.id: expected the id of a merge policy.")
                if self.ctx.repo(session, models.MergePolicy).get(given["id"]) is None:
                    raise BadRequest(
                        f"mergePolicy.id: merge policy '{given['id']}' was not found in this sandbox."
                    )
                return {"id": given["id"], "version": given.get("version", 1)}
            policies = {
                (self.ctx.repo(session, models.SegmentDefinition).get(s["segmentId"]).body or {}).get(
                    "mergePolicyId"
                )
                for s in segments
            }
            policies.discard(None)
            if len(policies) > 1:
                raise BadRequest(
                    "mergePolicy: the segments use different merge policies "
                    f"({', '.join(sorted(policies))}); name the one to export with."
                )
            if policies:
                return {"id": policies.pop(), "version": 1}
            default = self.ctx.repo(session, models.MergePolicy).find(models.MergePolicy.is_default.is_(True))
            if not default:
                raise BadRequest(
                    "mergePolicy: this sandbox has no merge policy yet; ingest profile data first."
                )
            return {"id": default[0].id, "version": 1}

    def _check_fields(self, fields: str) -> None:

        known = DatasetsService(self.ctx).schema().get("profile") or {}
        for i, path in enumerate(fields.split(",")):
            path = path.strip()
            if not path:
                raise BadRequest(
                    f"fields: entry {i + 1} is empty (fields is a comma-separated list of dot paths)."
                )
            if path.split(".")[0] in ("identityMap", "segmentMembership"):
                continue
            if known and path not in known:
                raise BadRequest(f"fields: '{path}' is not a field of the profile schema of this sandbox.")
