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


@pytest.fixture
def three(store):
    svc = Services(store).segment_definitions
    us = svc.create(definition("US", 'homeAddress.countryCode = "US"'))["id"]
    gold = svc.create(definition("Gold", 'loyalty.tier = "gold"'))["id"]
    both = svc.create(definition("US gold", f'inSegment("{us}") and inSegment("{gold}")'))["id"]
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
    key = segments.asset_key
    assert key(us) == dg.AssetKey(["segment", us.replace("-", "_")])
    spec_keys = {k for k in assets.get_all_asset_keys() if k.path[0] == "segment"}
    assert spec_keys == {key(us), key(gold), key(both)}
    node = assets.get(key(both))
    assert {key(us), key(gold)} <= set(node.parent_keys)
    assert any(p.path[:2] == ["profiles", "merged_profiles"] for p in node.parent_keys)
    assert node.group_name == "segments"
    assert "US gold" in node.description and "inSegment" in node.description
    # Readable in the UI: the name as a tag and "audience" as a kind; the key stays the id (stable on rename).
    assert node.tags["audience"] == "US_gold" and "dagster/kind/audience" in node.tags
    Services(store).segment_definitions.update(both, definition("US & gold (renamed)", f'inSegment("{us}")'))
    renamed = load_initial()[0].resolve_asset_graph().get(key(both))
    assert renamed.key == key(both) and renamed.tags["audience"] == "US_gold_renamed"
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
    assert segments.asset_key(both) in keys  # what the run was launched with
    fresh, _ = load_initial()
    assert segments.asset_key(both) not in fresh.resolve_asset_graph().get_all_asset_keys()
    assert json.loads(pinned[SNAPSHOT_KEY])[0]["id"] in {us, gold, both}


def test_materializing_a_subset_evaluates_only_it_in_dependency_order(store, three):
    us, gold, both = three
    defs, _ = load_initial()
    job = defs.resolve_job_def("segment_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[segments.asset_key(both), segments.asset_key(us)],
            tags={"segmentation/evaluation_time": "2026-03-01T00:00:00Z"},
        )
        assert result.success
        mats = result.asset_materializations_for_node("evaluate_segments")
        assert [m.asset_key for m in mats] == [segments.asset_key(us), segments.asset_key(both)]
        meta = {m.asset_key: m.metadata for m in mats}
        assert meta[segments.asset_key(us)]["members"].value == 2  # Ann and Cid live in the US
        assert meta[segments.asset_key(us)]["realized"].value == 2
        assert meta[segments.asset_key(us)]["by_namespace"].value == {"Email": 2}
        assert meta[segments.asset_key(us)]["evaluation_time"].value == "2026-03-01T00:00:00.000Z"
        # gold was not selected: never evaluated, so "US gold" has nobody yet
        assert meta[segments.asset_key(both)]["members"].value == 0
        series = meta[segments.asset_key(us)]["member_counts"].value
        assert [r.data["members"] for r in series.records] == [2]
        assert meta[segments.asset_key(us)]["members_delta"].value == 2  # first evaluation: from 0
    audiences = Services(store).audiences
    assert audiences.members(gold)["evaluationTime"] is None
    assert audiences.members(us)["evaluationTime"] == "2026-03-01T00:00:00.000Z"
