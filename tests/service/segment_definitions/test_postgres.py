"""The segments services on a PostgreSQL catalog: definitions, references, evaluation and members."""

from __future__ import annotations

import datetime as dt

import pytest

from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_evaluation import run_evaluation
from segmentation_pipelines.service.services import Services
from segmentation_pipelines.settings import Settings

from .conftest import EVENTS, PEOPLE
from .helpers import EVENT, PROFILE, build_store, definition, ingest


@pytest.mark.postgres
def test_definitions_and_evaluation_on_postgres(pg_url, tmp_path, monkeypatch):
    settings = Settings(home=tmp_path / "home", catalog_url=pg_url, api_tokens=None, dagster_url=None)
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    ctx = ServiceContext.create(settings, sandbox="prod")
    data = tmp_path / "data"
    data.mkdir()
    ingest(ctx, data, "crm", PROFILE, PEOPLE)
    ingest(ctx, data, "web", EVENT, EVENTS)
    build_store(ctx)
    svc = Services(ctx).segment_definitions
    us = svc.create(definition("US", 'homeAddress.countryCode = "US"'))["id"]
    gold = svc.create(definition("US gold", f'inSegment("{us}") and loyalty.tier = "gold"'))["id"]
    with pytest.raises(SegmentationError) as err:
        svc.create(definition("us", "loyalty.points > 1"))
    assert err.value.status == 422
    with pytest.raises(SegmentationError) as err:
        svc.delete(us)
    assert err.value.status == 400
    run_evaluation(ctx, [gold, us], dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    page = Services(ctx).audiences.members(gold)
    assert [m["identityMap"]["Email"][0]["id"] for m in page["children"]] == ["ann@x.com"]
    assert svc.list(sort="name:asc")["page"]["totalCount"] == 2
