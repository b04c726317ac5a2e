"""The incremental profile store equals a full rebuild from the same batches, on seeded random batch sequences;
manifests, staleness and the fall-backs to a full build."""

from __future__ import annotations

import json

import pytest

from segmentation_pipelines.profiles import events_store, identity, merged_store
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.store import (
    build_events_store,
    build_identity_graph_store,
    build_merged_profiles,
    stale_parts,
    store_version,
)

from .store_checks import DP, POLICIES, TS, World, build_all, full_rebuild, snapshot, stats_of

STEPS = [
    ("profiles", {"new": 12, "updates": 0, "links": 0}),
    ("events", {"known": 40, "unknown": 5, "linked": 0}),
    ("profiles", {"new": 3, "updates": 8, "links": 0}),
    ("events", {"known": 30, "unknown": 4, "linked": 3, "kiosk": 30, "commerce": False}),
    ("profiles", {"new": 2, "updates": 6, "links": 3}),
    ("events", {"known": 25, "unknown": 2, "linked": 2, "kiosk": 25}),
    ("profiles", {"new": 4, "updates": 10, "links": 2}),
    ("events", {"known": 20, "unknown": 3, "linked": 0}),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_builds_equal_a_full_rebuild(tmp_path, monkeypatch, seed):
    # Tiny batches would trigger compaction (a full events build) at once: keep appending, to test the deltas.
    monkeypatch.setattr(events_store, "MAX_DELTA_SHARE", 1.0)
    monkeypatch.setattr(events_store, "MAX_DELTA_PARTS", 100)
    layout = StoreLayout(tmp_path / "inc")
    world = World(seed, tmp_path, layout)
    modes = []
    for i, (kind, args) in enumerate(STEPS):
        (world.profile_batch if kind == "profiles" else world.event_batch)(**args)
        results = build_all(layout, world.profiles, world.events)
        modes.append({k: r["mode"] for k, r in results.items()})
        assert stale_parts(layout, world.profiles, world.events, POLICIES) == []
        full, expected = full_rebuild(tmp_path / f"full-{i}", layout, world.profiles, world.events)
        assert snapshot(layout) == snapshot(full), f"step {i} ({kind}): {modes[-1]}"
        assert stats_of(results) == stats_of(expected), f"step {i}"
    # Everything after the first build followed incrementally (the identity graph of the first events step and
    # every later step), so the equality above is the incremental logic's, not a full build's.
    assert all(m["identity_graph"] == "incremental" for m in modes[1:]), modes
    assert all(set(m.values()) <= {"incremental", "unchanged"} for m in modes[2:]), "\n".join(map(str, modes))
    graph = json.loads((layout.identity_graph_dir() / "current" / "manifest.json").read_text())
    assert graph["stats"]["excluded_components"] == 1  # the kiosk outgrew the guardrail on the way


def test_unchanged_build_writes_nothing_and_stale_parts_names_what_changed(tmp_path):
    layout = StoreLayout(tmp_path / "inc")
    world = World(7, tmp_path, layout)
    assert stale_parts(layout, [], [], POLICIES) == ["identity_graph", "events", "merged/ts", "merged/dp"]
    assert store_version(layout, ["ts"]) == {
        "identityGraph": None,
        "events": None,
        "mergedProfiles": {"ts": None},
    }
    world.profile_batch(new=5, updates=0, links=0)
    world.event_batch(known=10, unknown=2, linked=0)
    build_all(layout, world.profiles, world.events)
    before = store_version(layout, ["ts", "dp"])
    again = build_all(layout, world.profiles, world.events)
    assert {r["mode"] for r in again.values()} == {"unchanged"}
    assert store_version(layout, ["ts", "dp"]) == before
    assert {r["version"] for r in again.values()} == {
        before["identityGraph"],
        before["events"],
        *before["mergedProfiles"].values(),
    }

    world.event_batch(known=5, unknown=0, linked=0)
    assert stale_parts(layout, world.profiles, world.events, POLICIES) == [
        "identity_graph",
        "events",
        "merged/ts",
        "merged/dp",
    ]
    assert build_identity_graph_store(layout, world.profiles, world.events)["mode"] == "incremental"
    assert stale_parts(layout, world.profiles, world.events, POLICIES) == ["events", "merged/ts", "merged/dp"]
    assert build_events_store(layout, world.events)["mode"] == "incremental"
    assert stale_parts(layout, world.profiles, world.events, POLICIES) == ["merged/ts", "merged/dp"]
    build_merged_profiles(layout, world.profiles, TS)
    changed = {**DP, "attributeMerge": {"type": "dataSetPrecedence", "order": ["crm", "loy"]}}
    assert stale_parts(layout, world.profiles, world.events, [TS, changed]) == ["merged/dp"]
    manifest = json.loads((layout.merged_dir("ts") / "current" / "manifest.json").read_text())
    assert manifest["batches"] == sorted(b.batch_id for b in world.profiles)
    assert manifest["identityGraph"] == store_version(layout, [])["identityGraph"]
    assert manifest["part"] == "merged/ts" and len(manifest["attributeMerge"]) == 16


def test_deleted_batch_changed_policy_and_missing_manifest_rebuild_in_full(tmp_path):
    layout = StoreLayout(tmp_path / "inc")
    world = World(11, tmp_path, layout)
    world.profile_batch(new=8, updates=0, links=0)
    world.event_batch(known=20, unknown=3, linked=0)
    world.profile_batch(new=2, updates=4, links=1)
    world.event_batch(known=10, unknown=1, linked=1)
    build_all(layout, world.profiles, world.events)

    # A deleted batch: every part it reached is rebuilt from scratch.
    profiles, events = world.profiles[:-1], world.events[:-1]
    results = build_all(layout, profiles, events)
    assert {k: r["mode"] for k, r in results.items()} == {k: "full" for k in results}
    full, _ = full_rebuild(tmp_path / "full-1", layout, profiles, events)
    assert snapshot(layout) == snapshot(full)

    # A changed attributeMerge re-merges that policy only, in full.
    swapped = {**DP, "attributeMerge": {"type": "dataSetPrecedence", "order": ["crm", "loy"]}}
    assert build_merged_profiles(layout, profiles, swapped)["mode"] == "full"
    assert build_merged_profiles(layout, profiles, TS)["mode"] == "unchanged"
    full, _ = full_rebuild(tmp_path / "full-2", layout, profiles, events, [TS, swapped])
    assert snapshot(layout, [TS, swapped]) == snapshot(full, [TS, swapped])

    # A missing or unreadable manifest: unknown, so the part is stale and rebuilt in full.
    (layout.events_dir() / "current" / "manifest.json").write_text("{not json")
    (layout.merged_dir("ts") / "current" / "manifest.json").unlink()
    assert stale_parts(layout, profiles, events, [TS]) == ["events", "merged/ts"]
    assert build_events_store(layout, events)["mode"] == "full"
    assert build_merged_profiles(layout, profiles, TS)["mode"] == "full"
    assert stale_parts(layout, profiles, events, [TS]) == []


def test_a_part_two_graph_steps_behind_rebuilds_in_full(tmp_path):
    layout = StoreLayout(tmp_path / "inc")
    world = World(5, tmp_path, layout)
    world.profile_batch(new=6, updates=0, links=0)
    world.event_batch(known=15, unknown=2, linked=0)
    build_all(layout, world.profiles, world.events)
    for _ in range(2):  # two identity-graph steps without the events following
        world.profile_batch(new=1, updates=2, links=1)
        assert build_identity_graph_store(layout, world.profiles, world.events)["mode"] == "incremental"
    assert build_events_store(layout, world.events)["mode"] == "full"
    assert build_merged_profiles(layout, world.profiles, TS)["mode"] == "full"
    full, _ = full_rebuild(tmp_path / "full", layout, world.profiles, world.events, [TS])
    assert snapshot(layout, [TS]) == snapshot(full, [TS])


def test_delta_parts_are_compacted_by_a_full_build(tmp_path, monkeypatch):
    monkeypatch.setattr(events_store, "MAX_DELTA_PARTS", 3)
    monkeypatch.setattr(events_store, "MAX_DELTA_SHARE", 1.0)
    layout = StoreLayout(tmp_path / "inc")
    world = World(3, tmp_path, layout)
    world.profile_batch(new=6, updates=0, links=0)
    world.event_batch(known=15, unknown=2, linked=0)
    build_all(layout, world.profiles, world.events, [TS])
    modes = []
    for _ in range(4):
        world.event_batch(known=5, unknown=1, linked=0)
        build_identity_graph_store(layout, world.profiles, world.events)
        modes.append(build_events_store(layout, world.events)["mode"])
    assert modes == ["incremental", "incremental", "incremental", "full"]
    manifest = json.loads((layout.events_dir() / "current" / "manifest.json").read_text())
    assert {p["kind"] for p in manifest["parts"]} == {"base"}


def _files(part_dir):
    current = part_dir / "current"
    previous = part_dir / "previous"
    names = {f.name for f in current.glob("*.parquet")}
    kept = {
        n
        for n in names
        if (previous / n).exists() and (previous / n).stat().st_ino == (current / n).stat().st_ino
    }
    return names, kept


def test_a_batch_rewrites_only_the_range_files_holding_the_profiles_it_changes(tmp_path, monkeypatch):
    # Small range files (DuckDB cuts files at 2,048-row granularity), so that a few thousand people fill several.
    monkeypatch.setattr(identity, "PART_ROWS", 2048)
    monkeypatch.setattr(merged_store, "PART_ROWS", 2048)
    layout = StoreLayout(tmp_path / "inc")
    world = World(11, tmp_path, layout)
    world.profile_batch(new=8000, updates=0, links=0)
    world.event_batch(known=50, unknown=2, linked=0)
    build_all(layout, world.profiles, world.events, [TS])
    graph_files = {f.name for f in layout.identities_dir().glob("*.parquet")}
    merged_files = {f.name for f in layout.profiles_dir("ts").glob("*.parquet")}
    assert len(graph_files) >= 8 and len(merged_files) >= 4, (graph_files, merged_files)

    # One link merges two people: the graph and the merged profiles keep every file not holding them.
    world.profile_batch(new=0, updates=0, links=1)
    results = build_all(layout, world.profiles, world.events, [TS])
    assert {r["mode"] for r in results.values()} == {"incremental"}, results
    names, kept = _files(layout.identity_graph_dir())
    assert len(kept) >= len(graph_files) - 4, (names, kept)  # each person's identities: one file, or two
    names, kept = _files(layout.merged_dir("ts"))
    assert len(kept) >= len(merged_files) - 4 and kept, (names, kept)
    full, _ = full_rebuild(tmp_path / "full-1", layout, world.profiles, world.events, [TS])
    assert snapshot(layout, [TS]) == snapshot(full, [TS])

    # Updates of people spread over every range: each touched range is rewritten in place (ranges.step).
    world.profile_batch(new=20, updates=3000, links=2)
    results = build_all(layout, world.profiles, world.events, [TS])
    assert {r["mode"] for r in results.values()} == {"incremental"}, results
    manifest = json.loads((layout.profiles_dir("ts") / "manifest.json").read_text())
    bases = sorted((p["lo"], p["hi"]) for p in manifest["parts"] if p["kind"] == "base")
    assert all(a[1] < b[0] for a, b in zip(bases, bases[1:], strict=False))  # ranges do not overlap
    full, _ = full_rebuild(tmp_path / "full-2", layout, world.profiles, world.events, [TS])
    assert snapshot(layout, [TS]) == snapshot(full, [TS])


def test_batches_spread_over_every_range_rewrite_each_range_in_place(tmp_path, monkeypatch):
    """Updates of people spread over every range (a 10k-profile batch hits every merged-profiles file): each file
    is rewritten on its own range, without the replaced rows and with the new ones of that range (no global
    re-sort, no delta file), delta files of earlier steps are folded into their ranges, and after each of
    several such batches the store equals a full rebuild."""
    monkeypatch.setattr(identity, "PART_ROWS", 2048)
    monkeypatch.setattr(merged_store, "PART_ROWS", 2048)
    layout = StoreLayout(tmp_path / "inc")
    world = World(5, tmp_path, layout)
    world.profile_batch(new=8000, updates=0, links=0)
    world.event_batch(known=50, unknown=2, linked=0)
    build_all(layout, world.profiles, world.events, [TS])

    def bases():
        manifest = json.loads((layout.profiles_dir("ts") / "manifest.json").read_text())
        return manifest["parts"], sorted((p["lo"], p["hi"]) for p in manifest["parts"] if p["kind"] == "base")

    _, before = bases()
    assert len(before) >= 4, before
    # A link between two people: a sparse step (a delta file), then dense steps that fold it in.
    world.profile_batch(new=0, updates=0, links=1)
    build_all(layout, world.profiles, world.events, [TS])
    assert any(p["kind"] == "delta" for p in bases()[0])
    for i, args in enumerate(
        ({"new": 300, "updates": 3000, "links": 2}, {"new": 50, "updates": 2500, "links": 0})
    ):
        world.profile_batch(**args)
        results = build_all(layout, world.profiles, world.events, [TS])
        assert {r["mode"] for r in results.values()} == {"incremental"}, results
        parts, after = bases()
        assert all(p["kind"] == "base" for p in parts), parts
        # The same ranges: as many files, each within the slot of one file before (from its first id to the
        # next file's), the first one reaching down to new ids smaller than every earlier one.
        assert len(after) == len(before), (before, after)
        starts = [lo for lo, _ in before[1:]]
        for k, (lo, hi) in enumerate(after):
            assert k == 0 or lo >= before[k][0], (k, before, after)
            assert k == len(after) - 1 or hi < starts[k], (k, before, after)
        full, _ = full_rebuild(tmp_path / f"full-{i}", layout, world.profiles, world.events, [TS])
        assert snapshot(layout, [TS]) == snapshot(full, [TS])
