"""Dagster objects only, one folder per domain. Each domain module exposes ``defs() -> dagster.Definitions``;
they stay thin and call the layers below (service, engine, profiles)."""

DOMAINS = ("profiles", "segments", "jobs", "schedules", "exports", "external_audiences")
