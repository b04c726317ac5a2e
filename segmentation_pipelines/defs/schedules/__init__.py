"""Dagster definitions of the schedules domain."""

import dagster as dg


def defs() -> dg.Definitions:
    return dg.Definitions()
