"""The one interface between the shared lowering (``pql.lowering``) and an engine's way of writing expressions.

Every hook the lowering calls is declared here once, as sqlglot's one generator base declares every ``*_sql`` hook
its dialects override: a backend subclasses :class:`Backend` (``SqlBackend`` for DuckDB, ``SparkBackend`` on top of
it, ``PolarsBackend``) and cannot be instantiated while a hook is missing (each hook is abstract); the lowering is
typed against it, so a third engine has one list to implement. ``E`` is the backend's expression type
(``sqlglot.exp.Expression``, ``polars.Expr``).

Conventions shared by the hooks:

* ``kind`` of a literal or a value: a PQL type (``boolean``, ``string``, ``integer``, ``number``, ``date``,
  ``date-time``, ``any``);
* ``var``/``body``/``cap`` of a list hook: the lambda variable (from :meth:`Backend.lambda_var`), the body built over
  it, and whether the body *captures* anything but its element (an enclosing row, an outer variable);
* event aggregates: the lowering describes each one as an ``aggregates.EventAggregate`` (``fn`` of ``value`` over
  the events where ``cond`` holds); :meth:`Backend.agg_ref` renders and registers it and returns the expression
  that reads it on the profile row; :meth:`Backend.chain` registers the aggregates of a chain the same way.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from segmentation_pipelines.pql.lowering.aggregates import EventAggregate

E = TypeVar("E")


@runtime_checkable
class Backend(Protocol[E]):
    """How one engine writes each construct of a lowered PQL query."""

    # literals, columns, names ---------------------------------------------------------------------------------------
    @abstractmethod
    def lit(self, value: Any, kind: str) -> E:
        """A literal of PQL type ``kind``."""

    @abstractmethod
    def is_constant(self, e: E) -> bool:
        """Whether ``e`` reads no column (a lambda body reading it captures nothing)."""

    @abstractmethod
    def ts_lit(self, t: datetime) -> E:
        """A timestamp literal (naive UTC)."""

    @abstractmethod
    def list_lit(self, items: list[E], t: str) -> E:
        """An array literal of elements of PQL type ``t``."""

    @abstractmethod
    def column(self, kind: str, name: str, via_event: bool = False) -> E:
        """Column ``name`` of the profile or the event row (``kind``); ``via_event``: a profile column read from an
        event-row expression (the profile joined to its events)."""

    @abstractmethod
    def field(self, e: E, name: str) -> E:
        """Field ``name`` of a struct."""

    @abstractmethod
    def lambda_var(self, depth: int) -> E:
        """The variable of a list lambda at nesting ``depth``."""

    @abstractmethod
    def event_list(self, node: Any) -> E:
        """The profile's whole event list (ordered by timestamp), read from an event row (pairs of events)."""

    # scalar operators -------------------------------------------------------------------------------------------------
    @abstractmethod
    def cmp(self, op: str, a: E, b: E) -> E:
        """``a op b`` for ``op`` in ``= != < <= > >=``."""

    @abstractmethod
    def gt(self, a: E, b: E) -> E: ...

    @abstractmethod
    def and_(self, a: E, b: E) -> E: ...

    @abstractmethod
    def or_(self, a: E, b: E) -> E: ...

    @abstractmethod
    def not_(self, a: E) -> E: ...

    @abstractmethod
    def coalesce_false(self, e: E) -> E:
        """``e``, false when null (a boolean at a boolean position)."""

    @abstractmethod
    def coalesce(self, e: E, d: E) -> E: ...

    @abstractmethod
    def is_not_null(self, e: E) -> E: ...

    @abstractmethod
    def arith(self, op: str, a: E, b: E) -> E:
        """``a op b`` for ``op`` in ``+ - * / %`` (division and modulo by zero: null)."""

    @abstractmethod
    def neg(self, a: E) -> E: ...

    @abstractmethod
    def concat(self, a: E, b: E) -> E: ...

    @abstractmethod
    def if_(self, c: E, a: E, b: E) -> E: ...

    # time -------------------------------------------------------------------------------------------------------------
    @abstractmethod
    def to_ts(self, e: E) -> E:
        """A date or string as a timestamp."""

    @abstractmethod
    def trunc(self, e: E, unit: str) -> E: ...

    @abstractmethod
    def add_interval(self, e: E, amount: int, unit: str) -> E:
        """``e`` plus ``amount`` units (a unit of ``INTERVAL_STEPS``)."""

    @abstractmethod
    def date_part(self, part: str, e: E) -> E:
        """``month``, ``year`` or ``dayofmonth`` of a date or timestamp."""

    @abstractmethod
    def segment(self, audience_id: str) -> E:
        """Whether the profile is a member of the audience (``inSegment``); registers the audience."""

    # membership and strings -------------------------------------------------------------------------------------------
    @abstractmethod
    def in_values(self, item: E, items: list[E], neg: bool) -> E: ...

    @abstractmethod
    def in_array(self, item: E, arr: E, neg: bool) -> E: ...

    @abstractmethod
    def string_fn(self, name: str, s: E, texts: list[E], cs: bool) -> E:
        """A string function of ``values.STRING_FNS`` (``cs``: case-sensitive)."""

    @abstractmethod
    def like(self, s: E, pattern: str) -> E: ...

    @abstractmethod
    def regex_match(self, s: E, pattern: str) -> E: ...

    @abstractmethod
    def regex_group(self, s: E, pattern: str, group: int) -> E: ...

    # lists ------------------------------------------------------------------------------------------------------------
    @abstractmethod
    def list_filter(self, arr: E, var: E, body: E, cap: bool) -> E: ...

    @abstractmethod
    def list_transform(self, arr: E, var: E, body: E, cap: bool) -> E: ...

    @abstractmethod
    def list_len(self, arr: E) -> E: ...

    @abstractmethod
    def list_any(self, arr: E, var: E, body: E, cap: bool) -> E:
        """Whether some element satisfies ``body``."""

    @abstractmethod
    def list_all(self, arr: E, var: E, body: E | None, cap: bool) -> E:
        """Whether every element satisfies ``body`` (None: true)."""

    @abstractmethod
    def list_flatten(self, arr: E) -> E: ...

    @abstractmethod
    def list_distinct(self, arr: E) -> E: ...

    @abstractmethod
    def list_first(self, arr: E) -> E: ...

    @abstractmethod
    def list_intersect(self, a: E, b: E) -> E: ...

    @abstractmethod
    def list_setop(self, name: str, a: E, b: E) -> E:
        """``intersects``, ``subsetof`` or ``supersetof``."""

    @abstractmethod
    def list_agg(self, fn: str, vals: E) -> E:
        """``sum`` (0 when empty), ``avg``, ``min`` or ``max`` of a list."""

    @abstractmethod
    def list_top(self, arr: E, var: E, key: E, n: int, desc: bool, cap: bool) -> E:
        """The first ``n`` elements by ``key`` (nulls last, ties in the array's order)."""

    @abstractmethod
    def map_get(self, m: E, key: E) -> E: ...

    @abstractmethod
    def map_part(self, m: E, part: str) -> E:
        """The list of keys or values (``part``: ``key``/``value``) of a map."""

    # event aggregates -------------------------------------------------------------------------------------------------
    @abstractmethod
    def event_row(self) -> E:
        """The whole event row as a struct."""

    @abstractmethod
    def agg_ref(self, agg: EventAggregate[E], needs_profile: bool) -> E:
        """Register event aggregate ``agg`` (setting its ``expression``: this backend's rendering of it; equal
        aggregates are one) and return its value on the profile row (an aggregate over no event: its
        ``EMPTY_AGGREGATE`` value, else null). ``needs_profile``: its event rows read profile fields."""

    @abstractmethod
    def any_event(self, e: E, agg: EventAggregate[E], op: str | None, k: E | None) -> E:
        """``e`` at a boolean position, where it holds exactly when some event ``agg`` selects has ``agg.value op k``
        (``op`` None: when ``agg`` selects any event): the backend may return that ``bool_or`` aggregate (a mask bit
        on DuckDB) instead of ``coalesce_false(e)``. ``agg`` is registered and over event rows alone."""

    @abstractmethod
    def some_item(self, e: E, arr: E, var: E, field: str, value: E) -> E:
        """``e`` (a comparison), which holds exactly when some element of the array column ``arr`` has ``field``
        equal to the literal ``value`` (``arr[field = value].count() > 0``; ``var`` the element variable): the
        backend may note it (DuckDB sets such conditions' bits in one pass over the items) or return ``e``."""

    @abstractmethod
    def chain(self, ts: E, conds: list[E], counts: list[int], needs_profile: bool) -> E:
        """Whether the events match the steps ``conds`` in order of ``ts`` (step i ``counts[i]`` times; greedy)."""


__all__ = ["Backend"]
