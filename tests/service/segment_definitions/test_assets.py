"""Segment definitions as Dagster assets: specs from the pinned catalog snapshot, subset materialization."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType
from dagster._core.definitions.repository_definition.repository_definition import RepositoryLoadData

from segmentation_pipelines.defs import segments
from segmentation_pipelines.defs.segments.assets import SNAPSHOT_KEY
from segmentation_pipelines.service.services import Services

from .helpers import definition

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


NAMES = {}  # id -> name of the definitions the fixture created


def key(ident: str) -> dg.AssetKey:
    return segments.asset_key(ident, NAMES[ident])


@pytest.fixture
def three(store):
    svc = Services(store).segment_definitions
    us = svc.create(definition("US", 'homeAddress.countryCode = "US"'))["id"]
    gold = svc.create(definition("Gold", 'loyalty.tier = "gold"'))["id"]
    both = svc.create(definition("US gold", f'inSegment("{us}") and inSegment("{gold}")'))["id"]
    NAMES.update({us: "US", gold: "Gold", both: "US gold"})
    return us, gold, both


def load_initial() -> tuple[dg.Definitions, dict]:
    """Load as a code server does; return the definitions and the reconstruction metadata it pinned."""
    context = DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION)
    with DefinitionsLoadContext.scoped(context):
        defs = segments.defs()
    return defs, dict(context.get_pending_reconstruction_metadata())


def test_one_spec_per_definition_with_deps_and_description(store, three):
    us, gold, both = three
    defs, pinned = load_initial()
    assets = defs.resolve_asset_graph()
    # Readable keys: the name first (what the UI's catalog, search and lineage show), the id's start for uniqueness.
    assert key(us) == dg.AssetKey(["segment", f"US__{us.replace('-', '')[:8]}"])
    assert key(both).path[1].startswith("US_gold__")
    spec_keys = {k for k in assets.get_all_asset_keys() if k.path[0] == "segment"}
    assert spec_keys == {key(us), key(gold), key(both)}
    node = assets.get(key(both))
    assert {key(us), key(gold)} <= set(node.parent_keys)
    assert any(p.path[:2] == ["profiles", "merged_profiles"] for p in node.parent_keys)
    assert node.group_name == "segments"
    assert "US gold" in node.description and "inSegment" in node.description
    assert node.tags["audience"] == "US_gold" and "dagster/kind/audience" in node.tags
    assert node.partitions_def is not None and node.partitions_def.get_partition_keys()[0] == "2020-01-01"
    # A rename keeps the key (its history, its URL and what depends on it); the name shown follows the rename.
    renamed = Services(store).segment_definitions.update(
        both, definition("US & gold (renamed)", f'inSegment("{us}")')
    )
    assert renamed["dagster"]["assetKey"] == key(both).to_user_string()
    renamed_graph = load_initial()[0].resolve_asset_graph()
    node = renamed_graph.get(key(both))
    assert node.tags["audience"] == "US_gold_renamed"
    assert node.description.startswith("US & gold (renamed)\n")
    assert {k for k in renamed_graph.get_all_asset_keys() if k.path[0] == "segment"} == spec_keys
    assert SNAPSHOT_KEY in pinned
    assert defs.resolve_job_def("segment_job") is not None


def test_run_worker_uses_the_pinned_snapshot(store, three):
    us, gold, both = three
    _, pinned = load_initial()
    Services(store).segment_definitions.delete(both)  # the catalog changes after the location loaded
    context = DefinitionsLoadContext(
        load_type=DefinitionsLoadType.RECONSTRUCTION,
        repository_load_data=RepositoryLoadData(reconstruction_metadata=pinned),
    )
    with DefinitionsLoadContext.scoped(context):
        defs = segments.defs()
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert key(both) in keys  # what the run was launched with
    fresh, _ = load_initial()
    assert key(both) not in fresh.resolve_asset_graph().get_all_asset_keys()
    assert json.loads(pinned[SNAPSHOT_KEY])[0]["id"] in {us, gold, both}


def test_materializing_a_subset_evaluates_only_it_in_dependency_order(store, three):
    us, gold, both = three
    defs, _ = load_initial()
    job = defs.resolve_job_def("segment_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[key(both), key(us)],
            tags={"segmentation/evaluation_time": "2026-03-01T00:00:00Z"},
            partition_key="2026-02-28",  # the day whose end is the evaluation time
        )
        assert result.success
        mats = result.asset_materializations_for_node("evaluate_segments")
        assert [m.asset_key for m in mats] == [key(us), key(both)]
        meta = {m.asset_key: m.metadata for m in mats}
        assert meta[key(us)]["members"].value == 2  # Ann and Cid live in the US
        assert meta[key(us)]["realized"].value == 2
        assert meta[key(us)]["by_namespace"].value == {"Email": 2}
        assert meta[key(us)]["evaluation_time"].value == "2026-03-01T00:00:00.000Z"
        # gold was not selected: never evaluated, so "US gold" has nobody yet
        assert meta[key(both)]["members"].value == 0
        series = meta[key(us)]["member_counts"].value
        assert [r.data["members"] for r in series.records] == [2]
        assert meta[key(us)]["members_delta"].value == 2  # first evaluation: from 0
        assert meta[key(us)]["dagster/row_count"].value == 2  # what the lineage node shows
        assert {m.partition for m in mats} == {"2026-02-28"}
    audiences = Services(store).audiences
    assert audiences.members(gold)["evaluationTime"] is None
    assert audiences.members(us)["evaluationTime"] == "2026-03-01T00:00:00.000Z"


def test_a_partition_evaluates_as_of_its_day_and_a_rename_keeps_the_asset(store, three):
    """A run of an evaluation-day partition without a job (the UI's materialize/backfill) evaluates as of the end of
    that day; after a rename the definition is the same asset: its days stay together under one key."""
    us, _, _ = three
    with dg.instance_for_test() as instance:
        job = load_initial()[0].resolve_job_def("segment_job")
        result = job.execute_in_process(
            instance=instance, asset_selection=[key(us)], partition_key="2026-03-05"
        )
        assert result.success
        (mat,) = result.asset_materializations_for_node("evaluate_segments")
        assert mat.partition == "2026-03-05"
        assert mat.metadata["evaluation_time"].value == "2026-03-06T00:00:00.000Z"
        assert "renamed_from" not in mat.metadata
        body = Services(store).segment_definitions.get(us)
        Services(store).segment_definitions.update(us, {**body, "name": "United States"})
        job = load_initial()[0].resolve_job_def("segment_job")
        result = job.execute_in_process(
            instance=instance, asset_selection=[key(us)], partition_key="2026-03-06"
        )
        (mat,) = result.asset_materializations_for_node("evaluate_segments")
        assert mat.asset_key == key(us) and "renamed_from" not in mat.metadata
        assert mat.metadata["members_delta"].value == 0
        assert instance.get_materialized_partitions(key(us)) == {"2026-03-05", "2026-03-06"}
        assert list(instance.get_asset_keys(prefix=["segment"])) == [key(us)]
    assert Services(store).audiences.members(us)["evaluationTime"] == "2026-03-07T00:00:00.000Z"


@pytest.mark.parametrize("earlier", ["id_only", "lower_case_name"])
def test_history_under_the_keys_of_earlier_versions_is_linked(store, three, earlier):
    """Earlier versions keyed segments by id, then by their current lower-cased name (moving on a rename): an
    upgraded instance's first materialization under the kept key links the history left under those."""
    us, _, _ = three
    with dg.instance_for_test() as instance:
        old = dg.AssetKey(
            ["segment", us.replace("-", "_") if earlier == "id_only" else f"us__{us.replace('-', '')[:8]}"]
        )
        instance.report_runless_asset_event(dg.AssetMaterialization(old, metadata={"members": 2}))
        job = load_initial()[0].resolve_job_def("segment_job")
        result = job.execute_in_process(
            instance=instance, asset_selection=[key(us)], partition_key="2026-03-05"
        )
        (mat,) = result.asset_materializations_for_node("evaluate_segments")
        assert mat.metadata["renamed_from"].value == old
