"""Dagster objects only, one folder per domain (profiles, segments, jobs, schedules, exports, external_audiences).
Each domain module exposes ``defs() -> dagster.Definitions``, merged by name in ``definitions.py``; they stay thin
and call the layers below (service, engine, profiles)."""
