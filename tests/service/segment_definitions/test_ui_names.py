"""What the Dagster UI lists, by name: the loaded code location's segment assets, schedules, sensors and jobs (a
snapshot of the names; a UUID-named object, or a sensor renamed without thought, fails it)."""

from __future__ import annotations

from segmentation_pipelines.launcher import dagster_schedule_name
from segmentation_pipelines.service.services import Services

from .helpers import definition


def _id8(ident: str) -> str:
    return ident.replace("-", "")[:8]


def test_the_code_location_reads_by_name(store):
    services = Services(store)
    vip = services.segment_definitions.create(
        definition("Käufer (EU) — VIP", 'homeAddress.countryCode = "US"')
    )
    us = services.segment_definitions.create(definition("US", 'homeAddress.countryCode = "US"'))
    nightly = services.schedules.create(
        {
            "name": "Nightly US refresh",
            "type": "batch_segmentation",
            "properties": {"segments": [us["id"]]},
            "schedule": "0 0 1 * * ?",
        }
    )
    from segmentation_pipelines.definitions import defs

    repository = defs().get_repository_def()
    segment_keys = sorted(
        k.to_user_string() for k in repository.asset_graph.get_all_asset_keys() if k.path[0] == "segment"
    )
    assert segment_keys == sorted(
        [f"segment/Kaufer_EU_VIP__{_id8(vip['id'])}", f"segment/US__{_id8(us['id'])}"]
    )
    assert sorted(s.name for s in repository.schedule_defs) == sorted(
        [
            f"Nightly_US_refresh__{_id8(nightly['id'])}",
            *(
                dagster_schedule_name(s["id"], s["name"])  # the sandbox's default schedule
                for s in services.schedules.list()["children"]
                if s["id"] != nightly["id"]
            ),
        ]
    )
    assert nightly["dagster"]["scheduleName"] == f"Nightly_US_refresh__{_id8(nightly['id'])}"
    assert sorted(s.name for s in repository.sensor_defs) == [
        *(
            f"export_job_{what}"
            for what in ("canceled", "failed", "launcher", "reconciler", "started", "succeeded")
        ),
        *(
            f"external_audience_{what}"
            for what in (
                "canceled",
                "failed",
                "files",
                "launcher",
                "maintenance",
                "reconciler",
                "started",
                "succeeded",
            )
        ),
        "profile_store_refresher",
        "schedule_state_writeback",
        *(
            f"segment_job_{what}"
            for what in ("canceled", "failed", "launcher", "reconciler", "started", "succeeded")
        ),
    ]
    assert sorted(j.name for j in repository.get_all_jobs()) == [
        "__ASSET_JOB",
        "export_job",
        "external_audience_ingest",
        "profile_store",
        "segment_job",
    ]
