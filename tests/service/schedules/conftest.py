"""Fixtures of the schedule tests: a service context on a fresh home (the environment points there too, as in a
deployed code location), a segment-definition row helper, and a Dagster command (daemon, webserver) to run."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import pytest

from segmentation_pipelines.catalog import models
from segmentation_pipelines.dagster_home import PROJECT_ROOT
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.schedules import SchedulesService


@pytest.fixture
def ctx(settings, monkeypatch) -> ServiceContext:
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    monkeypatch.delenv("SEGMENTATION_CATALOG_URL", raising=False)
    monkeypatch.delenv("SEGMENTATION_DAGSTER_URL", raising=False)
    return ServiceContext.create(settings, None, "prod")


@pytest.fixture
def schedules(ctx) -> SchedulesService:
    return SchedulesService(ctx)


def add_definition_row(ctx: ServiceContext, name: str, pql: str = 'homeAddress.countryCode = "US"') -> str:
    """A batch segment definition row as the definitions service stores it (for tests that need no evaluation)."""
    doc = {
        "name": name,
        "expression": {"type": "PQL", "format": "pql/text", "value": pql},
        "mergePolicyId": "mp-1",
        "schema": {"name": "_xdm.context.profile"},
        "evaluationInfo": {"batch": {"enabled": True}},
    }
    with ctx.catalog.session() as session:
        return ctx.repo(session, models.SegmentDefinition).add(name=name, batch_enabled=True, body=doc).id


@contextmanager
def dagster_command(argv: list[str], env: dict[str, str], log: IO[str]) -> Iterator[subprocess.Popen]:
    """``argv`` (``dagster-daemon``, ``dagster-webserver`` on the project's workspace) run from the project root with
    its output in ``log``; stopped on exit (killed if it has not stopped within 30 s)."""
    process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
