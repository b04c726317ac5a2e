"""The part of PQL compilation every engine shares: name resolution, value kinds and the reduction of event
conditions to per-profile aggregates. It emits nothing itself: every construct is handed to a *backend*
(:class:`backend.Backend`; ``compile_sql.SqlBackend`` builds sqlglot trees for DuckDB, ``compile_spark.SparkBackend``
for Spark, ``compile_polars.PolarsBackend`` Polars expressions), so the compilers agree on what a query means and
differ only in how each engine says it — which is what the differential tests then check.

The evaluation shape (architecture.md §5): a query becomes

* a boolean *predicate* over one row per profile (the profile's columns, plus one column per event aggregate, plus one
  boolean column per ``inSegment`` reference), and
* named *event aggregates*: expressions over the event rows of one profile (``bool_or``, ``count_if``,
  ``sum(...) FILTER (WHERE ...)``, chain step timestamps), all computed by one ``GROUP BY profile_id`` over the
  events, shared by every definition of a run (named by a hash of their rendering).

One module per seam: ``values`` (frames, values, context, constants), ``base`` (entry, dispatch, boolean
positions), ``names`` (frames and names), ``scalars`` (literals, operators, calls), ``events`` (event aggregates,
chains), ``lists`` (lists, lambdas, comprehensions), ``strings``, ``windows`` (time); :class:`Lowering` is their
composition.
"""

from __future__ import annotations

from segmentation_pipelines.pql.lowering.backend import Backend
from segmentation_pipelines.pql.lowering.events import Events
from segmentation_pipelines.pql.lowering.lists import Lists
from segmentation_pipelines.pql.lowering.names import Names
from segmentation_pipelines.pql.lowering.scalars import Scalars
from segmentation_pipelines.pql.lowering.strings import Strings
from segmentation_pipelines.pql.lowering.values import (
    AGG_METHODS,
    EMPTY_AGGREGATE,
    INTERVAL_STEPS,
    NUMERIC,
    STRING_FNS,
    TEMPORAL,
    CompileError,
    Ctx,
    Frame,
    V,
    query_of,
)
from segmentation_pipelines.pql.lowering.windows import Windows


class Lowering(Names, Scalars, Events, Lists, Strings, Windows):
    """Walks one query and calls the backend (``Lowering(backend, schema, evaluation_time).predicate(query)``);
    the backend collects the aggregates and segment references the predicate reads."""


__all__ = [
    "AGG_METHODS",
    "EMPTY_AGGREGATE",
    "INTERVAL_STEPS",
    "NUMERIC",
    "STRING_FNS",
    "TEMPORAL",
    "Backend",
    "CompileError",
    "Ctx",
    "Frame",
    "Lowering",
    "V",
    "query_of",
]
