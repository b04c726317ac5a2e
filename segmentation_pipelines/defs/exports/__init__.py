"""Dagster definitions of the exports domain."""

import dagster as dg


def defs() -> dg.Definitions:
    return dg.Definitions()
