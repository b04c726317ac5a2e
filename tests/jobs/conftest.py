"""Fixtures of the segment-job tests: a service context on a fresh home, and definitions rows to run."""

from __future__ import annotations

import pytest

from segmentation_pipelines.catalog import models
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_jobs import SegmentJobsService


@pytest.fixture
def ctx(settings, monkeypatch) -> ServiceContext:
    # Sensors and run workers read the home from the environment, like a deployed code location.
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    monkeypatch.delenv("SEGMENTATION_CATALOG_URL", raising=False)
    return ServiceContext.create(settings, None, "prod")


@pytest.fixture
def jobs(ctx) -> SegmentJobsService:
    return SegmentJobsService(ctx)


def add_definition_row(ctx: ServiceContext, name: str, pql: str = 'homeAddress.countryCode = "US"', **body) -> str:
    """A segment definition row as the definitions service stores it (for tests that need no evaluation)."""
    doc = {
        "name": name,
        "expression": {"type": "PQL", "format": "pql/text", "value": pql},
        "mergePolicyId": "mp-1",
        "schema": {"name": "_xdm.context.profile"},
        **body,
    }
    with ctx.catalog.session() as session:
        row = ctx.repo(session, models.SegmentDefinition).add(name=name, batch_enabled=True, body=doc)
        return row.id
