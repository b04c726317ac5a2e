"""Test helpers: write JSON Lines fixtures, ingest them into a store layout, build the store."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from segmentation_pipelines.profiles.ingest import ingest_files
from segmentation_pipelines.profiles.layout import StoreLayout, publish_dir
from segmentation_pipelines.profiles.store import (
    BatchRef,
    build_events_store,
    build_identity_graph_store,
    build_merged_profiles,
)
from segmentation_pipelines.profiles.xdm import EVENT_CLASS


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def ingest(layout: StoreLayout, dataset_id: str, xdm_class: str, path: Path, ingested_ms: int | None = None):
    batch_id = uuid.uuid4().hex
    tmp = layout.dataset_dir(dataset_id) / f".tmp-{batch_id}"
    result = ingest_files([path], xdm_class, tmp, {})
    publish_dir(tmp, layout.batch_dir(dataset_id, batch_id))
    ref = BatchRef(dataset_id, batch_id, ingested_ms or int(time.time() * 1000), result.columns)
    return ref, result


def build(layout: StoreLayout, refs: list[tuple[BatchRef, str]], policies: list[dict]):
    profiles = [r for r, cls in refs if cls != EVENT_CLASS]
    events = [r for r, cls in refs if cls == EVENT_CLASS]
    graph = build_identity_graph_store(layout, profiles, events)
    ev = build_events_store(layout, events)
    merged = [build_merged_profiles(layout, profiles, p) for p in policies]
    return graph, ev, merged


def ident(**namespaces) -> dict:
    return {ns: [{"id": i, "primary": False}] for ns, i in namespaces.items()}
