"""Extension: an export into a PostgreSQL table, replacing the previous export atomically (a real database)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.errors import SegmentationError
from service.segment_jobs.scenario import Scenario, T

PROFILE = {"name": "_xdm.context.profile"}


@pytest.mark.postgres
def test_an_export_replaces_a_postgres_table(tmp_path, pg_url):
    with SegmentationClient(home=tmp_path / "home") as client:
        scenario = Scenario(client, tmp_path).load()
        ids = scenario.ids
        job = client.segment_jobs.create(
            [{"segmentId": ids["us"]}, {"segmentId": ids["loyal"]}], evaluation_time=T, wait=True
        )
        assert job["status"] == "SUCCEEDED", job.get("errors")

        def export(segment: str) -> dict:
            return client.export_jobs.create(
                {
                    "fields": "person.name.firstName,loyalty.points",
                    "filter": {"segments": [{"segmentId": ids[segment]}]},
                    "destination": {"postgres": {"url": pg_url, "table": "audience_members"}},
                    "schema": PROFILE,
                },
                wait=True,
            )

        first = export("us")
        assert first["status"] == "SUCCEEDED", first.get("errors")
        engine = create_engine(pg_url)
        query = text(
            "SELECT person->'name'->>'firstName', (loyalty->>'points')::int, "
            "\"segmentMembership\"->'ups'->:id->>'status' FROM audience_members ORDER BY 1"
        )
        try:
            with engine.connect() as conn:
                assert conn.execute(query, {"id": ids["us"]}).fetchall() == [
                    ("Ann", 500, "realized"),
                    ("Bob", 50, "realized"),
                    ("Eve", 300, "realized"),
                ]
            second = export("loyal")
            assert second["status"] == "SUCCEEDED" and second["destination"]["rowCount"] == 3
            with engine.connect() as conn:
                names = [r[0] for r in conn.execute(query, {"id": ids["loyal"]})]
                assert names == ["Ann", "Cat", "Fay"]  # replaced, not appended
                tables = conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                ).fetchall()
                assert [t[0] for t in tables] == ["audience_members"]  # no load table left behind
        finally:
            engine.dispose()
        with pytest.raises(SegmentationError, match="not a plain SQL name"):
            client.export_jobs.create(
                {"destination": {"postgres": {"url": pg_url, "table": "x; drop"}}, "schema": PROFILE}
            )
