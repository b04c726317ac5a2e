"""Building the profile store from dataset batches: the identity graph, the experience events keyed to merged
profile ids, and the merged profiles of each merge policy (``docs/data-model.md``).

Each build writes a new version folder and publishes it by replacing the ``current`` link, so readers see either
the previous store or the new one. Every version folder has a ``manifest.json`` saying what it was built from
(:mod:`profiles.manifest`); a build compares it with its inputs and either returns ``unchanged``, applies only
the new batches (``incremental``: new identity links re-stitch the components they touch, events of new batches
are appended, profiles of touched components are merged again), or builds in ``full`` (a batch was deleted, the
policy's attributeMerge or a dataset's schema changed, the manifest is missing, or the identity graph moved on by
more than one step). Each part is built under an exclusive lock, after which its manifest is read again, so two
processes refreshing the same sandbox never lose a batch. Inputs are plain values (:class:`BatchRef`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from segmentation_pipelines import duck
from segmentation_pipelines.duck import sql_list
from segmentation_pipelines.profiles import events_store, merged_store
from segmentation_pipelines.profiles.batches import BatchRef, batch_files
from segmentation_pipelines.profiles.identity import build_identity_graph, restitch_identity_graph
from segmentation_pipelines.profiles.layout import (
    StoreLayout,
    clean_versions,
    new_version_dir,
    publish_version,
)
from segmentation_pipelines.profiles.manifest import (
    MANIFEST,
    attribute_merge_of,
    batch_ids,
    current_version,
    fingerprint,
    part_lock,
    read_manifest,
    write_manifest,
)
from segmentation_pipelines.profiles.schema import merge_columns

__all__ = [
    "BatchRef",
    "build_events_store",
    "build_identity_graph_store",
    "build_merged_profiles",
    "stale_parts",
    "store_version",
]

# Incremental graph versions: the re-stitched identities, old and new profile ids (in a sub-folder: not one of
# the graph's range files, which readers take as ``current/*.parquet``).
AFFECTED = "step/affected.parquet"


def _connect(layout: StoreLayout):
    return duck.connect(layout.tmp_dir())


def _now_ms() -> int:
    return int(time.time() * 1000)


def _identity_sources(con, name: str, files: list[str]) -> str | None:
    if not files:
        return None
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT identityMap FROM read_parquet({sql_list(files)}, "
        "union_by_name=true)"
    )
    return name


def _paths(layout: StoreLayout, batches: list[BatchRef]) -> list[str]:
    return [f for f, _, _ in batch_files(layout, batches)]


class _Build:
    """One build of one store part: the lock held, left-overs of killed builds removed, a fresh version folder
    that is deleted again unless published."""

    def __init__(self, parent: Path):
        self.parent = parent
        self.started = time.perf_counter()
        self._lock = part_lock(parent)
        self.version: Path | None = None

    def __enter__(self):
        self._lock.__enter__()
        clean_versions(self.parent)
        return self

    def new_version(self) -> Path:
        self.version = new_version_dir(self.parent)
        return self.version

    def publish(self, manifest: Mapping) -> dict:
        assert self.version is not None
        body = write_manifest(self.version, manifest)
        publish_version(self.parent, self.version)
        self.version = None
        return body

    def __exit__(self, *exc):
        try:
            if self.version is not None:
                shutil.rmtree(self.version, ignore_errors=True)
        finally:
            self._lock.__exit__(*exc)
        return False

    def result(self, manifest: Mapping, mode: str) -> dict:
        return {
            **manifest["stats"],
            "mode": mode,
            "version": manifest["version"],
            "seconds": round(time.perf_counter() - self.started, 3),
        }


def _graph(layout: StoreLayout) -> tuple[str, str, dict | None]:
    """The published identity graph: (version name, the glob of its range files, its manifest or None)."""
    parent = layout.identity_graph_dir()
    name = current_version(parent)
    if name is None or not (parent / name / MANIFEST).exists():
        raise FileNotFoundError(f"the identity graph of {layout.sandbox_root} has not been built yet")
    return name, str(parent / name / "*.parquet"), read_manifest(parent)


def _graph_step(
    layout: StoreLayout, graph_version: str, graph: dict | None, built_on: str
) -> str | None | bool:
    """How a part keyed to identity-graph version ``built_on`` follows the graph: False = it is current, a path =
    apply that step's re-stitched identities, None = it cannot follow (rebuild in full)."""
    if built_on == graph_version:
        return False
    if graph and graph.get("mode") == "incremental" and graph.get("base") == built_on:
        path = layout.identity_graph_dir() / graph_version / AFFECTED
        if path.exists():
            return str(path)
    return None


# ------------------------------------------------------------------ identity graph


def build_identity_graph_store(
    layout: StoreLayout, profile_batches: list[BatchRef], event_batches: list[BatchRef]
) -> dict:
    """Stitch every profile fragment and event; publish ``identity_graph/current/*.parquet`` (range files)."""
    batches = [*profile_batches, *event_batches]
    want = batch_ids(batches)
    with _Build(layout.identity_graph_dir()) as build:
        prev = read_manifest(build.parent)
        if prev and prev["batches"] == want:
            return build.result(prev, "unchanged")
        version = build.new_version()
        con = _connect(layout)
        try:
            if prev and set(prev["batches"]) <= set(want) and prev.get("parts"):
                done = set(prev["batches"])
                new = [b for b in batches if b.batch_id not in done]
                profile_ids = {b.batch_id for b in profile_batches}
                new_profiles = [b for b in new if b.batch_id in profile_ids]
                sources = [
                    s
                    for s in (
                        _identity_sources(con, "new_fragments", _paths(layout, new_profiles)),
                        _identity_sources(
                            con, "new_events", _paths(layout, [b for b in new if b not in new_profiles])
                        ),
                    )
                    if s
                ]
                stats, parts = restitch_identity_graph(
                    con,
                    build.parent / prev["version"],
                    prev["parts"],
                    sources,
                    version,
                    str(version / AFFECTED),
                    old_stats=prev.get("stats"),
                )
                mode, base = "incremental", prev["version"]
            else:
                sources = [
                    s
                    for s in (
                        _identity_sources(con, "fragments", _paths(layout, profile_batches)),
                        _identity_sources(con, "events", _paths(layout, event_batches)),
                    )
                    if s
                ]
                stats, parts = build_identity_graph(con, sources, version)
                mode, base = "full", None
        finally:
            con.close()
        out = stats.as_dict()
        out.pop("seconds")
        manifest = build.publish(
            {
                "part": "identity_graph",
                "mode": mode,
                "base": base,
                "batches": want,
                "parts": parts,
                "builtMs": _now_ms(),
                "stats": out,
            }
        )
        return build.result(manifest, mode)


# ------------------------------------------------------------------ events


def _event_schema(event_batches: list[BatchRef]) -> str:
    return fingerprint(merge_columns(*(dict(b.columns or {}) for b in event_batches)))


def build_events_store(layout: StoreLayout, event_batches: list[BatchRef]) -> dict:
    """Key every event to its merged profile; publish ``events/current/*.parquet``, clustered by ``profile_id``
    (the engine's one ``GROUP BY profile_id`` then updates each profile's aggregate states from consecutive rows).
    Incrementally: events of new batches are appended as a delta part, events of merged profiles are moved."""
    want = batch_ids(event_batches)
    with _Build(layout.events_dir()) as build:
        graph_version, ids_path, graph = _graph(layout)
        schema = _event_schema(event_batches)
        prev = read_manifest(build.parent)
        if prev and prev["batches"] == want and prev["identityGraph"] == graph_version:
            return build.result(prev, "unchanged")
        step = None
        if prev and set(prev["batches"]) <= set(want) and prev.get("schema") == schema:
            step = _graph_step(layout, graph_version, graph, prev["identityGraph"])
            if step is not None and events_store.needs_compaction(prev["parts"]):
                step = None
        version = build.new_version()
        con = _connect(layout)
        try:
            if step is None:
                parts, stats = events_store.full_build(
                    con, version, _paths(layout, event_batches), str(ids_path)
                )
                mode = "full"
            else:
                done = set(prev["batches"])
                parts, stats = events_store.incremental_step(
                    con,
                    version,
                    build.parent / prev["version"],
                    prev["parts"],
                    prev["stats"],
                    _paths(layout, [b for b in event_batches if b.batch_id not in done]),
                    str(ids_path),
                    step or None,
                )
                mode = "incremental"
        finally:
            con.close()
        manifest = build.publish(
            {
                "part": "events",
                "mode": mode,
                "batches": want,
                "identityGraph": graph_version,
                "schema": schema,
                "parts": parts,
                "builtMs": _now_ms(),
                "stats": stats,
            }
        )
        return build.result(manifest, mode)


# ------------------------------------------------------------------ merged profiles


def _merge_inputs(profile_batches: list[BatchRef], policy: Mapping) -> tuple[dict, str, str]:
    attribute_merge = attribute_merge_of(policy)
    schema = fingerprint(merge_columns(*(dict(b.columns or {}) for b in profile_batches)))
    return attribute_merge, fingerprint(attribute_merge), schema


def build_merged_profiles(layout: StoreLayout, profile_batches: list[BatchRef], policy: Mapping) -> dict:
    """Merge the fragments of every non-excluded component under ``policy``; publish
    ``merged/<policyId>/current/*.parquet`` (range files). Incrementally: only the profiles of re-stitched components
    and of new fragments are merged again."""
    policy_id = policy["id"]
    want = batch_ids(profile_batches)
    with _Build(layout.merged_dir(policy_id)) as build:
        graph_version, ids_path, graph = _graph(layout)
        attribute_merge, merge_fp, schema = _merge_inputs(profile_batches, policy)
        prev = read_manifest(build.parent)
        same_inputs = prev and prev.get("attributeMerge") == merge_fp and prev.get("schema") == schema
        if same_inputs and prev["batches"] == want and prev["identityGraph"] == graph_version:
            return {"merge_policy_id": policy_id, **build.result(prev, "unchanged")}
        step = None
        if same_inputs and set(prev["batches"]) <= set(want) and prev.get("parts"):
            step = _graph_step(layout, graph_version, graph, prev["identityGraph"])
        version = build.new_version()
        con = _connect(layout)
        try:
            if step is None:
                stats, parts = merged_store.full_merge(
                    con, layout, str(ids_path), profile_batches, attribute_merge, version
                )
                mode = "full"
            else:
                done = set(prev["batches"])
                stats, parts = merged_store.incremental_merge(
                    con,
                    layout,
                    str(ids_path),
                    step or None,
                    profile_batches,
                    [b for b in profile_batches if b.batch_id not in done],
                    attribute_merge,
                    build.parent / prev["version"],
                    prev["parts"],
                    prev["stats"],
                    version,
                )
                mode = "incremental"
        finally:
            con.close()
        manifest = build.publish(
            {
                "part": f"merged/{policy_id}",
                "mode": mode,
                "batches": want,
                "identityGraph": graph_version,
                "attributeMerge": merge_fp,
                "schema": schema,
                "parts": parts,
                "builtMs": _now_ms(),
                "stats": stats,
            }
        )
        return {"merge_policy_id": policy_id, **build.result(manifest, mode)}


# ------------------------------------------------------------------ staleness and versions


def stale_parts(
    layout: StoreLayout,
    profile_batches: list[BatchRef],
    event_batches: list[BatchRef],
    policies: list[Mapping],
) -> list[str]:
    """The store parts that are not current for these inputs, in build order: ``"identity_graph"``,
    ``"events"``, ``"merged/<policyId>"``. A part is stale when it is missing, its manifest is unreadable, it
    does not hold exactly these batches, it is keyed to another identity-graph version than the published one
    (or the graph itself is stale), or, for merged profiles, the policy's attributeMerge or the profile schema
    changed. Reads only the small manifest files."""
    out = []
    graph = read_manifest(layout.identity_graph_dir())
    graph_ok = bool(graph) and graph["batches"] == batch_ids([*profile_batches, *event_batches])
    if not graph_ok:
        out.append("identity_graph")
    graph_version = graph["version"] if graph else None
    events = read_manifest(layout.events_dir())
    if not (
        graph_ok
        and events
        and events["batches"] == batch_ids(event_batches)
        and events.get("identityGraph") == graph_version
        and events.get("schema") == _event_schema(event_batches)
    ):
        out.append("events")
    want = batch_ids(profile_batches)
    for policy in policies:
        merged = read_manifest(layout.merged_dir(policy["id"]))
        _, merge_fp, schema = _merge_inputs(profile_batches, policy)
        if not (
            graph_ok
            and merged
            and merged["batches"] == want
            and merged.get("identityGraph") == graph_version
            and merged.get("attributeMerge") == merge_fp
            and merged.get("schema") == schema
        ):
            out.append(f"merged/{policy['id']}")
    return out


def store_version(layout: StoreLayout, policy_ids: list[str]) -> dict:
    """The published version of each part (None when not built yet): what a segment job records as the store
    version it evaluated."""
    return {
        "identityGraph": current_version(layout.identity_graph_dir()),
        "events": current_version(layout.events_dir()),
        "mergedProfiles": {p: current_version(layout.merged_dir(p)) for p in policy_ids},
    }
