"""Generated requests over every route of the app's own OpenAPI document (schemathesis): never a 5xx, and every
response valid against the app's schema. Bounded for CI: ``SCHEMATHESIS_EXAMPLES`` examples per operation
(default 15; the audit that found the issues ran ~50,000 requests)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from segmentation_pipelines.api import create_app
from segmentation_pipelines.settings import Settings

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "15"))
HOME = Path(tempfile.mkdtemp(prefix="schemathesis-")) / "home"
APP = create_app(Settings(home=HOME, catalog_url=None, api_tokens=None, dagster_url=None, runner="off"))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=bool(os.environ.get("CI")),
)
def test_no_5xx_and_responses_match_the_schema(case):
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
