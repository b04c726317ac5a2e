"""Where exports go, as the Dagster code location sees them: each destination (a dataset, a folder, a PostgreSQL
table) is an export asset downstream of the segments exported to it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from segmentation_pipelines.catalog import models


def destination_key(destination: Mapping[str, Any]) -> str:
    """What names a destination in the asset graph: the dataset id, or ``folder_<hash of the path>``."""
    folder = destination.get("folder")
    if isinstance(folder, Mapping) and isinstance(folder.get("path"), str):
        return "folder_" + hashlib.sha1(folder["path"].encode()).hexdigest()[:12]
    table = destination.get("postgres")
    if isinstance(table, Mapping) and isinstance(table.get("table"), str):
        return f"postgres_{table.get('schema', 'public')}_{table['table']}"
    return str(destination.get("datasetId"))


def destinations_snapshot(catalog) -> list[dict[str, Any]]:
    """Every export destination (from export jobs and export schedules) and the segments exported to it: what the
    code location makes export assets of, downstream of those segments' assets."""
    found: dict[tuple[str, str, str], set[str]] = {}
    with catalog.session(readonly=True) as session:
        rows = [(r.org_id, r.sandbox, r.body) for r in session.scalars(select(models.ExportJob))]
        schedules = session.scalars(select(models.Schedule).where(models.Schedule.type == "export"))
        rows += [(r.org_id, r.sandbox, (r.body or {}).get("properties") or {}) for r in schedules]
    for org, sandbox, body in rows:
        destination = (body or {}).get("destination") or {}
        if not isinstance(destination.get("datasetId"), str) and not (
            destination.get("folder") or destination.get("postgres")
        ):
            continue
        dataset = destination_key(destination)
        segments = ((body.get("filter") or {}).get("segments")) or []
        ids = {
            s.get("segmentId")
            for s in segments
            if isinstance(s, Mapping) and isinstance(s.get("segmentId"), str)
        }
        found.setdefault((org, sandbox, dataset), set()).update(ids)
    return [
        {"org_id": o, "sandbox": s, "dataset_id": d, "segments": sorted(ids)}
        for (o, s, d), ids in sorted(found.items())
    ]


def destination_known(session, org_id: str, sandbox: str, request: Mapping[str, Any]) -> bool:
    """Whether earlier export jobs of the sandbox already sent all of ``request``'s segments to its destination (so
    the code location has its export asset); if not, the code location must reload."""
    dataset = destination_key(request["destination"])
    wanted = {s["segmentId"] for s in (request.get("filter") or {}).get("segments") or []}
    seen: set[str] = set()
    m = models.ExportJob
    found = False
    for body in session.scalars(select(m.body).where(m.org_id == org_id, m.sandbox == sandbox)):
        if destination_key(body.get("destination") or {}) == dataset:
            found = True
            seen.update(s.get("segmentId") for s in (body.get("filter") or {}).get("segments") or [])
    return found and wanted <= seen
