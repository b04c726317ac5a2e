"""Test helpers for the segments suite: a sandbox with real datasets (ingestion builds the profile store), and
definitions."""

from __future__ import annotations

import json
from pathlib import Path

from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.services import Services

PROFILE = "_xdm.context.profile"
EVENT = "_xdm.context.experienceevent"


def ident(**namespaces) -> dict:
    return {ns: [{"id": i, "primary": True}] for ns, i in namespaces.items()}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ingest(ctx: ServiceContext, tmp: Path, name: str, xdm_class: str, rows: list[dict]) -> dict:
    services = Services(ctx)
    existing = list(services.datasets.list(name=name))
    dataset_id = (
        existing[0] if existing else services.datasets.create({"name": name, "xdmClass": xdm_class})["id"]
    )
    path = write_jsonl(tmp / f"{name}-{len(list(tmp.glob(name + '-*')))}.jsonl", rows)
    return services.datasets.ingest(dataset_id, [str(path)])


def build_store(ctx: ServiceContext) -> dict:
    """The default merge policy, once the profile store is current (ingestion already made it so; this checks)."""
    services = Services(ctx)
    policy = services.merge_policies.ensure_default()
    status = services.profile_store.status()
    assert status["status"] == "current", status
    return policy


def definition(name: str, pql: str, **extra) -> dict:
    return {
        "name": name,
        "expression": {"type": "PQL", "format": "pql/text", "value": pql},
        "schema": {"name": PROFILE},
        **extra,
    }
