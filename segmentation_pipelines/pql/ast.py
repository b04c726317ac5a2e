"""The PQL syntax tree: small frozen dataclasses, one per construct of the language (see ``pql.md`` §3).

Every node carries ``pos``: the (line, column) where it starts in the source text (1-based), so that the checker
and the compilers can point at it. The parser builds these; the checker annotates types separately (it never
mutates nodes); the compilers and the pql/json converter walk them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar
from typing import Literal as L

Pos = tuple[int, int]
NO_POS: Pos = (0, 0)

TimeUnit = L[
    "millisecond",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
    "decade",
    "century",
    "millennium",
]
CompOp = L["=", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Node:
    """Base of every node; the one traversal of the tree (as sqlglot's ``walk``/``find_all``/``transform``)."""

    pos: Pos = field(default=NO_POS, compare=False, kw_only=True)

    def children(self) -> Iterator[Node]:
        """The direct child nodes, in field order (through tuples, e.g. an object literal's entries)."""
        for f in fields(self):
            if f.name != "pos":
                yield from _nodes_in(getattr(self, f.name))

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, in pre-order; iterative, so depth is no limit."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(tuple(node.children())))

    def find_all(self, *types: type[N]) -> Iterator[N]:
        """The nodes of the given types, in pre-order."""
        return (node for node in self.walk() if isinstance(node, types))  # type: ignore[misc]

    def transform(self, fn: Callable[[Node], Node]) -> Node:
        """The tree rebuilt bottom-up with ``fn`` applied to every node (children first); unchanged subtrees are
        shared, not copied."""
        changes = {}
        for f in fields(self):
            if f.name == "pos":
                continue
            value = getattr(self, f.name)
            new = _transform_in(value, fn)
            if new is not value:
                changes[f.name] = new
        return fn(replace(self, **changes) if changes else self)


N = TypeVar("N", bound=Node)


def _nodes_in(value: Any) -> Iterator[Node]:
    if isinstance(value, Node):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _nodes_in(item)


def _transform_in(value: Any, fn: Callable[[Node], Node]) -> Any:
    if isinstance(value, Node):
        return value.transform(fn)
    if isinstance(value, tuple):
        items = tuple(_transform_in(item, fn) for item in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


# --- literals ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Literal(Node):
    """A string, integer, double or boolean constant. ``kind`` says which."""

    value: str | int | float | bool
    kind: L["string", "integer", "number", "boolean"]


@dataclass(frozen=True)
class ListLiteral(Node):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class ObjectLiteral(Node):
    entries: tuple[tuple[str, Expr], ...]


# --- names and paths -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Name(Node):
    """A bare identifier: a field of the current scope (profile, element, event), a variable, or ``xEvent``."""

    name: str


@dataclass(frozen=True)
class Param(Node):
    """``$1``, ``$2``...: positional parameter (``$1`` is the profile)."""

    index: int


@dataclass(frozen=True)
class This(Node):
    """``this``: the current element or group."""


@dataclass(frozen=True)
class Up(Node):
    """``^name`` / ``^^.name``: ``name`` resolved ``levels`` filter levels out."""

    levels: int
    name: str


@dataclass(frozen=True)
class Member(Node):
    """``obj.name``: field access (flattens through arrays, see pql.md §4)."""

    obj: Expr
    name: str


@dataclass(frozen=True)
class MethodCall(Node):
    """``obj.name(args)``: string/array/map/object/aggregation/date methods."""

    obj: Expr
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Call(Node):
    """``name(args)``: free functions (``date``, ``currentMonth``, ``if``, ``inSegment``, ``mapEntry``, ...)."""

    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Filter(Node):
    """``obj[cond]``: the elements of ``obj`` for which ``cond`` holds (names in ``cond`` resolve on the element)."""

    obj: Expr
    cond: Expr


@dataclass(frozen=True)
class Lambda(Node):
    """``(K, G) => body``."""

    params: tuple[str, ...]
    body: Expr


# --- operators -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unary(Node):
    """``not e`` / ``!e`` (op ``"not"``) and ``-e`` (op ``"-"``)."""

    op: L["not", "-"]
    operand: Expr


@dataclass(frozen=True)
class Binary(Node):
    """Arithmetic (``+ - * / %``), comparison (``= != < <= > >=``), boolean (``and or``),
    membership (``in notIn``) and string matching (``like matches``)."""

    op: str
    left: Expr
    right: Expr


# --- time ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeAnchor(Node):
    """``now``, ``today``, ``yesterday``, ``tomorrow``."""

    name: L["now", "today", "yesterday", "tomorrow"]


@dataclass(frozen=True)
class RelativePeriod(Node):
    """``this|last|next <unit>``: a whole calendar period (``last month``)."""

    which: L["this", "last", "next"]
    unit: TimeUnit


@dataclass(frozen=True)
class Occurs(Node):
    """``target occurs ...`` in its four forms.

    * ``form="offset"``: ``occurs <op> <amount> <unit> <direction> <ref>``
    * ``form="direction"``: ``occurs before|after|from <ref>``
    * ``form="on"``: ``occurs [on] <ref>``
    * ``form="between"``: ``occurs between <ref> and <ref2>``
    ``ref``/``ref2`` are a :class:`TimeAnchor`, a :class:`RelativePeriod`, a ``date(...)`` :class:`Call` or a
    timestamp expression.
    """

    target: Expr
    form: L["offset", "direction", "on", "between"]
    ref: Expr
    op: CompOp | None = None
    amount: int | None = None
    unit: TimeUnit | None = None
    direction: L["before", "after", "from"] | None = None
    ref2: Expr | None = None


# --- comprehension forms -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VarDecl(Node):
    """``V from source [where cond]`` (also ``V from source : cond``)."""

    var: str
    source: Expr
    where: Expr | None = None


@dataclass(frozen=True)
class Select(Node):
    """``select V1 from A1 where C1, V2 from A2 where C2, ...``: the tuples satisfying every condition."""

    decls: tuple[VarDecl, ...]


@dataclass(frozen=True)
class Quantifier(Node):
    """``exists ...`` / ``forall ...`` over the same declarations as ``select``."""

    kind: L["exists", "forall"]
    decls: tuple[VarDecl, ...]


@dataclass(frozen=True)
class AggregateOver(Node):
    """``sum|average|min|max <value> over decls`` or the simple form ``sum V from A where C`` (``value=None``:
    the aggregated value is the variable of the single declaration)."""

    fn: L["sum", "average", "min", "max"]
    value: Expr | None
    decls: tuple[VarDecl, ...]


@dataclass(frozen=True)
class Let(Node):
    """``let var = value in body``."""

    var: str
    value: Expr
    body: Expr


# --- chain -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class When(Node):
    """A chain step's ``WHEN(...)``: ``< 24 hours before now`` (``op``/``amount``/``unit``/``direction``/``ref``),
    ``before today`` (``direction``/``ref``) or ``today`` (``ref`` only)."""

    ref: Expr
    op: CompOp | None = None
    amount: int | None = None
    unit: TimeUnit | None = None
    direction: L["before", "after", "from"] | None = None


@dataclass(frozen=True)
class ChainStep(Node):
    label: str
    what: Expr
    where: Expr | None = None
    when: When | None = None
    count: int | None = None


@dataclass(frozen=True)
class Chain(Node):
    """``chain(source, timestampField, [steps])``."""

    source: Expr
    timestamp_field: str
    steps: tuple[ChainStep, ...]


# --- top level -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query(Node):
    """A whole expression, with its optional lambda head ``(Profile) => ...`` naming parameter 1."""

    body: Expr
    params: tuple[str, ...] = ()


Expr = (
    Literal
    | ListLiteral
    | ObjectLiteral
    | Name
    | Param
    | This
    | Up
    | Member
    | MethodCall
    | Call
    | Filter
    | Lambda
    | Unary
    | Binary
    | TimeAnchor
    | RelativePeriod
    | Occurs
    | Select
    | Quantifier
    | AggregateOver
    | Let
    | Chain
)
