"""The end-to-end suite's segment jobs on Spark: the two days of tests/jobs/test_end_to_end.py (hand-computed
members, realized / existing / exited, metrics) through the public client, in-process and over HTTP, with
``SEGMENTATION_ENGINE=spark``; and a definition Spark cannot express is refused when it is written."""

from __future__ import annotations

import pytest
from service.segment_jobs.conftest import ctx, jobs  # noqa: F401 - the fixtures of the jobs suite
from service.segment_jobs.scenario import Scenario
from service.segment_jobs.test_end_to_end import client, test_two_days_of_segment_jobs  # noqa: F401

from segmentation_pipelines.client import SegmentationClient
from segmentation_pipelines.errors import ApiError

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def spark_engine(monkeypatch):
    # Read by the settings of the test (its `settings` fixture), the client's and the runs'.
    monkeypatch.setenv("SEGMENTATION_ENGINE", "spark")
    monkeypatch.setenv("SEGMENTATION_SPARK_MASTER", "local[2]")


def test_the_jobs_ran_on_spark(ctx) -> None:  # noqa: F811
    from pyspark import SparkContext

    assert ctx.settings.engine == "spark"
    assert SparkContext._active_spark_context is not None  # test_two_days_of_segment_jobs started it


def test_a_definition_spark_cannot_express_is_refused_when_written(ctx, tmp_path) -> None:  # noqa: F811
    local = SegmentationClient(home=ctx.settings.home, sandbox="prod")
    Scenario(local, tmp_path).load()
    with pytest.raises(ApiError) as err:
        local.segment_definitions.create(
            {
                "name": "named group",
                "schema": {"name": "_xdm.context.profile"},
                "expression": {
                    "type": "PQL",
                    "format": "pql/text",
                    "value": 'homeAddress.countryCode matches "(?P<c>U)S"',
                },
            }
        )
    assert err.value.status == 400
    item = err.value.body["errors"]["400"][0]
    assert "(?P<name>...)" in item["reason"] and "Spark" in item["reason"], item
