"""Fixtures of the segments suite: a sandbox whose profile store holds a few known people and events."""

from __future__ import annotations

import pytest

from segmentation_pipelines.service.context import ServiceContext

from .helpers import EVENT, PROFILE, build_store, ident, ingest

PEOPLE = [
    {
        "identityMap": ident(Email="ann@x.com"),
        "person": {"name": {"firstName": "Ann"}},
        "homeAddress": {"countryCode": "US"},
        "loyalty": {"tier": "gold", "points": 500},
    },
    {
        "identityMap": ident(Email="bob@x.com"),
        "person": {"name": {"firstName": "Bob"}},
        "homeAddress": {"countryCode": "DE"},
        "loyalty": {"tier": "silver", "points": 50},
    },
    {
        "identityMap": ident(Email="cid@x.com"),
        "person": {"name": {"firstName": "Cid"}},
        "homeAddress": {"countryCode": "US"},
        "loyalty": {"tier": "bronze", "points": 5},
    },
]
EVENTS = [
    {
        "identityMap": ident(Email="ann@x.com"),
        "_id": "e1",
        "timestamp": "2026-02-27T10:00:00Z",
        "eventType": "commerce.purchases",
        "commerce": {"order": {"priceTotal": 120.0}},
    },
    {
        "identityMap": ident(Email="bob@x.com"),
        "_id": "e2",
        "timestamp": "2026-02-10T10:00:00Z",
        "eventType": "commerce.purchases",
        "commerce": {"order": {"priceTotal": 30.0}},
    },
]


@pytest.fixture
def ctx(settings, tmp_path, monkeypatch) -> ServiceContext:
    # The Dagster side reads settings from the environment: point it at this test's home.
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    return ServiceContext.create(settings, sandbox="prod")


@pytest.fixture
def store(ctx, tmp_path) -> ServiceContext:
    """``ctx`` with the three people and two purchases ingested and the store built."""
    data = tmp_path / "data"
    data.mkdir()
    ingest(ctx, data, "crm", PROFILE, PEOPLE)
    ingest(ctx, data, "web", EVENT, EVENTS)
    build_store(ctx)
    return ctx
