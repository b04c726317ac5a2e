"""The PQL checker: resolves every name against the union schema, infers types, rejects what cannot run.

``check(query_or_text, schema, resolve_audience=None, *, allow_non_boolean=False, dependencies=None,
self_id=None) -> CheckedQuery``.

What a :class:`CheckedQuery` gives the compilers (stable API):

* ``.query``: the :class:`ast.Query`; ``.result_type``: :class:`PQLType` of the whole expression.
* ``.type_of(node) -> PQLType`` for every expression node (``any`` when unknown).
* ``.resolution(node) -> Resolution | None`` for every ``Name``, ``Member``, ``Up``, ``This`` and ``Param`` node
  that denotes a path. ``Resolution.kind`` is one of

  - ``"profile"``: a profile field (``path`` below the profile; ``()`` for ``$1`` / the lambda-head parameter);
  - ``"xevent"``: the ``xEvent`` array itself (``path == ()``) or a field flattened through all events;
  - ``"element"``: a field (or, with ``path == ()``, the element itself, i.e. ``this``) of the element of an
    anonymous element scope; ``binder`` is that scope's node: a :class:`ast.Filter` (``arr[cond]``), a
    :class:`ast.MethodCall` (per-element method argument: ``filter exists map groupBy topN bottomN sum average min
    max count``; for ``.map`` after ``groupBy`` the element is the group), or a :class:`ast.ChainStep`
    (``WHAT``/``WHERE``: the event);
  - ``"variable"``: a named variable and a path below it; ``binder`` is the :class:`ast.VarDecl` (select, exists,
    forall, aggregation-over), the :class:`ast.Lambda` or the :class:`ast.Let` that introduced ``var``;
  - ``"value"``: a field of a computed value (``x.head().core``): ``path == (name,)``, ``binder is None``.

  ``schema_class`` (``"profile"``/``"event"``/None) and ``schema_path`` (with ``"[]"`` for array elements) say
  where in the schema the value lives, when known.
* ``.coercion(node) -> PQLType | None``: for a literal the compiler must convert (``"true"`` compared with a
  boolean field -> boolean; ISO ``"2020-01-01"`` compared with a date).
* ``.referenced_audiences`` (canonical ids, in order), ``.profile_fields`` / ``.event_fields`` (dotted schema
  paths read, ``[]`` after arrays), ``.warnings`` (``(message, (line, column))``: valid but questionable, e.g. a
  list compared existentially with a scalar).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal as L

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import types as T
from segmentation_pipelines.pql.errors import PQLValidationError
from segmentation_pipelines.pql.limits import DEPTH_MESSAGE, MAX_CHAIN_STEPS, too_deep  # noqa: E402
from segmentation_pipelines.pql.parser import parse
from segmentation_pipelines.pql.references import find_cycle
from segmentation_pipelines.pql.regex import regex_problem  # noqa: E402
from segmentation_pipelines.pql.schema import ClassSchema, Schema
from segmentation_pipelines.pql.types import PQLType


@dataclass(frozen=True)
class Resolution:
    """What a path node denotes (see the module docstring)."""

    kind: L["profile", "xevent", "element", "variable", "value"]
    path: tuple[str, ...] = ()
    var: str | None = None
    binder: ast.Node | None = field(default=None, compare=False)
    schema_class: str | None = None
    schema_path: tuple[str, ...] | None = None

    def child(self, name: str, schema_path: tuple[str, ...] | None) -> Resolution:
        return Resolution(
            self.kind, self.path + (name,), self.var, self.binder, self.schema_class, schema_path
        )


@dataclass
class CheckedQuery:
    query: ast.Query
    result_type: PQLType
    referenced_audiences: tuple[str, ...]
    profile_fields: set[str]
    event_fields: set[str]
    warnings: list[tuple[str, ast.Pos]]
    _types: dict[int, PQLType] = field(repr=False)
    _resolutions: dict[int, Resolution] = field(repr=False)
    _coercions: dict[int, PQLType] = field(repr=False)

    def type_of(self, node: ast.Node) -> PQLType:
        return self._types.get(id(node), T.ANY)

    def resolution(self, node: ast.Node) -> Resolution | None:
        return self._resolutions.get(id(node))

    def coercion(self, node: ast.Node) -> PQLType | None:
        return self._coercions.get(id(node))

    @property
    def fields_read(self) -> dict[str, list[str]]:
        return {"profile": sorted(self.profile_fields), "event": sorted(self.event_fields)}


# --- scopes -------------------------------------------------------------------------------------------------------
@dataclass
class _Scope:
    kind: L["root", "element", "vars"]
    binder: ast.Node | None = None
    element: PQLType = T.ANY  # element scopes
    names: dict[str, PQLType] = field(default_factory=dict)  # vars scopes


def _schema_type(schema: Schema, cls: str, path: tuple[str, ...]) -> PQLType | None:
    klass: ClassSchema = schema.profile if cls == "profile" else schema.event
    kind = klass.lookup(path)
    if kind is None:
        return None
    return _typed(kind, cls, path, klass)


def _typed(kind: str, cls: str, path: tuple[str, ...], klass: ClassSchema) -> PQLType:
    if kind == "array":
        elem_path = path + ("[]",)
        elem_kind = klass.lookup(elem_path) or "any"
        element = _typed(elem_kind, cls, elem_path, klass) if elem_kind != "any" else T.ANY
        return PQLType("array", element=element, origin=(cls, path))
    if kind in ("object", "map"):
        return PQLType(kind, origin=(cls, path))
    return PQLType(kind if kind in T.SCALARS else "any")


_STRING_TESTS = {"contains", "doesNotContain", "startsWith", "doesNotStartWith", "endsWith", "doesNotEndWith"}
_ELEMENT_METHODS = {
    "filter",
    "exists",
    "map",
    "groupBy",
    "topN",
    "bottomN",
    "sum",
    "average",
    "min",
    "max",
    "count",
}
_ARRAY_METHODS = {
    "count", "sum", "average", "min", "max", "distinct", "head", "includes", "intersects", "intersection",
    "subsetOf", "supersetOf", "filter", "exists", "map", "groupBy", "topN", "bottomN",
}  # fmt: skip
_MAP_METHODS = {"get", "keys", "values", "count"}
_OBJECT_METHODS = {"isNull", "isNotNull"}
_DATE_METHODS = {"getMonth", "getYear", "getDayOfMonth"}
_STRING_METHODS = _STRING_TESTS | {"equals", "notEqualTo", "matches", "regexGroup"}
ALL_METHODS = _ARRAY_METHODS | _MAP_METHODS | _OBJECT_METHODS | _DATE_METHODS | _STRING_METHODS
FUNCTIONS = {"date", "currentMonth", "currentYear", "currentDayOfMonth", "if", "inSegment", "mapEntry"}


class _Checker:
    def __init__(self, schema, resolve_audience, dependencies, self_id):
        self.schema = schema
        self.resolve_audience = resolve_audience
        self.dependencies = dependencies
        self.self_id = self_id
        self.types: dict[int, PQLType] = {}
        self.res: dict[int, Resolution] = {}
        self.coercions: dict[int, PQLType] = {}
        self.audiences: list[str] = []
        self.fields: dict[str, set[str]] = {"profile": set(), "event": set()}
        self.warnings: list[tuple[str, ast.Pos]] = []
        self.chain_text: str | None = None  # the whole dotted path being resolved, for error messages
        self.root_params: tuple[str, ...] = ()

    # --- errors ------------------------------------------------------------------------------------------------
    def fail(
        self, node: ast.Node, message: str, text: str = "", expected: Iterable[str] = ()
    ) -> PQLValidationError:
        return PQLValidationError(message, node.pos[0], node.pos[1], text, list(expected))

    # --- entry --------------------------------------------------------------------------------------------------
    def run(self, query: ast.Query) -> PQLType:
        self.root_params = query.params
        if len(query.params) > 1:
            raise self.fail(
                query, "a segment expression takes one parameter (the profile): write '(Profile) => ...'"
            )
        return self.visit(query.body, [_Scope("root")])

    def visit(self, node: ast.Node, scopes: list[_Scope]) -> PQLType:
        method = getattr(self, "v_" + type(node).__name__, None)
        if method is None:
            raise self.fail(node, f"'{type(node).__name__}' cannot be used here")
        t = method(node, scopes)
        self.types[id(node)] = t
        return t

    # --- literals ----------------------------------------------------------------------------------------------
    def v_Literal(self, node, scopes):
        if node.kind in ("number", "integer") and not math.isfinite(float(node.value)):
            raise self.fail(node, f"the number {node.value} is out of range (numbers must be finite)")
        if node.kind == "integer" and not -(2**63) <= int(node.value) < 2**63:
            raise self.fail(node, f"the integer {node.value} is out of range (64-bit integers)")
        if node.kind == "string":
            try:
                str(node.value).encode("utf-8")
            except UnicodeEncodeError:
                raise self.fail(
                    node, "the string contains an unpaired surrogate (e.g. \\ud800): not valid Unicode text"
                ) from None
        return {"string": T.STRING, "integer": T.INTEGER, "number": T.NUMBER, "boolean": T.BOOLEAN}[node.kind]

    def v_ListLiteral(self, node, scopes):
        item = None
        for x in node.items:
            t = self.visit(x, scopes)
            if item is None or item.kind == "null":
                item = t
            elif not T.comparable(item, t):
                raise self.fail(x, f"a list must hold values of one type, but it mixes {item} and {t}")
            else:
                item = T.unify(item, t)
        return T.array_of(item or T.ANY)

    def v_ObjectLiteral(self, node, scopes):
        return PQLType("object", fields=tuple((k, self.visit(v, scopes)) for k, v in node.entries))

    def v_TimeAnchor(self, node, scopes):
        return T.DATETIME if node.name == "now" else T.DATE

    def v_RelativePeriod(self, node, scopes):
        return T.PERIOD

    # --- names and paths ------------------------------------------------------------------------------------------
    def _record(self, node, resolution: Resolution, t: PQLType) -> PQLType:
        self.res[id(node)] = resolution
        if resolution.schema_class and resolution.schema_path:
            dotted = ".".join(resolution.schema_path).replace(".[]", "[]")
            self.fields["profile" if resolution.schema_class == "profile" else "event"].add(dotted)
        return t

    def _xevent(self, node):
        t = PQLType("array", element=PQLType("object", origin=("event", ())), origin=("event", ()))
        return self._record(node, Resolution("xevent", schema_class=None), t)

    def _field_of(
        self, holder: PQLType, name: str
    ) -> tuple[PQLType, tuple[str, ...] | None, str | None] | None:
        """Type of field ``name`` of a value of type ``holder`` (flattening through arrays), its schema path and
        class; None when ``holder`` has no such field."""
        flatten = 0
        while holder.kind == "array":
            holder = holder.elem()
            flatten += 1
        if holder.kind == "any" or holder.kind == "map":
            return (T.ANY, None, None)
        if holder.fields is not None:
            for k, v in holder.fields:
                if k == name:
                    return (self._wrap(v, flatten), None, None)
            return None
        if holder.kind == "object" and holder.origin is not None:
            cls, path = holder.origin
            t = _schema_type(self.schema, cls, path + (name,))
            if t is None:
                return None
            return (self._wrap(t, flatten), path + (name,), cls)
        return None

    @staticmethod
    def _wrap(t: PQLType, flatten: int) -> PQLType:
        if flatten:
            while t.kind == "array":  # nested arrays flatten into one list of values
                t = t.elem()
            return T.array_of(t)
        return t

    def _children_names(self, holder: PQLType) -> list[str]:
        while holder.kind == "array":
            holder = holder.elem()
        if holder.fields is not None:
            return [k for k, _ in holder.fields]
        if holder.origin is not None:
            cls, path = holder.origin
            klass = self.schema.profile if cls == "profile" else self.schema.event
            return list(klass.children(path))
        return []

    def v_Name(self, node, scopes):
        return self._resolve_name(node, node.name, scopes, len(scopes) - 1)

    def _resolve_name(self, node, name, scopes, start):
        if name == "xEvent":
            return self._xevent(node)
        for i in range(start, -1, -1):
            scope = scopes[i]
            if scope.kind == "vars" and name in scope.names:
                t = scope.names[name]
                origin = t.origin
                return self._record(
                    node,
                    Resolution(
                        "variable",
                        (),
                        name,
                        scope.binder,
                        origin[0] if origin else None,
                        None,
                    ),
                    t,
                )
            if scope.kind == "element":
                found = self._field_of(scope.element, name)
                if found is not None:
                    t, path, cls = found
                    return self._record(
                        node, Resolution("element", (name,), None, scope.binder, cls, path), t
                    )
            if scope.kind == "root":
                if name in self.root_params:
                    t = PQLType("object", origin=("profile", ()))
                    return self._record(node, Resolution("profile", (), None, None, "profile", None), t)
                t = _schema_type(self.schema, "profile", (name,))
                if t is not None:
                    return self._record(
                        node, Resolution("profile", (name,), None, None, "profile", (name,)), t
                    )
        raise self._unknown(node, name, scopes, start)

    def _unknown(self, node, name, scopes, start) -> PQLValidationError:
        candidates: list[str] = ["xEvent"]
        for i in range(start, -1, -1):
            scope = scopes[i]
            if scope.kind == "vars":
                candidates.extend(scope.names)
            elif scope.kind == "element":
                candidates.extend(self._children_names(scope.element))
            else:
                candidates.extend(self.root_params)
                candidates.extend(self.schema.profile.children(()))
        shown = self.chain_text if self.chain_text and self.chain_text.startswith(name) else name
        suggestion = None
        if shown != name:
            paths = [f.replace("[]", "") for f in _all_paths(self.schema.profile)]
            near = difflib.get_close_matches(shown, paths, n=1, cutoff=0.75)
            suggestion = near[0] if near else None
        if suggestion is None:
            near = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
            if near:
                suggestion = near[0] + shown[len(name) :]
        where = "profile" if len(scopes) == 1 else "profile, event or variable"
        message = f"unknown field '{shown}': it is not a {where} field of the schema"
        if suggestion:
            message += f"; did you mean '{suggestion}'?"
        else:
            message += "; check the spelling (names are case-sensitive)"
        return self.fail(node, message, shown, [suggestion] if suggestion else [])

    def v_Param(self, node, scopes):
        if node.index != 1:
            raise self.fail(node, f"only $1 (the profile) exists in a segment expression, not ${node.index}")
        t = PQLType("object", origin=("profile", ()))
        return self._record(node, Resolution("profile", (), None, None, "profile", None), t)

    def v_This(self, node, scopes):
        for scope in reversed(scopes):
            if scope.kind == "element":
                return self._record(node, Resolution("element", (), None, scope.binder), scope.element)
        raise self.fail(node, "'this' can only be used inside [...] or a method argument such as map({...})")

    def v_Up(self, node, scopes):
        remaining = node.levels
        for i in range(len(scopes) - 1, -1, -1):
            if scopes[i].kind == "element":
                remaining -= 1
                if remaining == 0:
                    return self._resolve_name(node, node.name, scopes, i - 1)
        raise self.fail(node, f"'{'^' * node.levels}' steps out of more [...] levels than there are here")

    def v_Member(self, node, scopes):
        outer = self.chain_text is None
        if outer:
            self.chain_text = _dotted(node)
        try:
            holder = self.visit(node.obj, scopes)
        finally:
            if outer:
                self.chain_text = None
        found = self._field_of(holder, node.name)
        base = self.res.get(id(node.obj))
        if found is None:
            if holder.kind in T.SCALARS or holder.kind in ("boolean", "period", "lambda", "mapentry"):
                raise self.fail(
                    node, f"'{_dotted(node.obj)}' is {_a(holder)}; it has no field '{node.name}'", node.name
                )
            names = self._children_names(holder)
            near = difflib.get_close_matches(node.name, names, n=1, cutoff=0.6)
            path = _dotted(node)
            message = f"unknown field '{path}'"
            if near:
                message += f"; did you mean '{path[: -len(node.name)]}{near[0]}'?"
            elif names:
                message += f"; '{_dotted(node.obj)}' has the fields {', '.join(sorted(names)[:12])}"
            raise self.fail(node, message, path, near)
        t, schema_path, cls = found
        if holder.kind == "array" and base is not None and base.kind != "xevent":
            self.warnings.append(
                (
                    f"'{_dotted(node)}' reads a field through an array: it is the list of values of all elements",
                    node.pos,
                )
            )
        if base is not None and base.kind != "value":
            resolution = base.child(node.name, schema_path)
            if cls and resolution.schema_class is None:
                resolution = Resolution(
                    resolution.kind, resolution.path, resolution.var, resolution.binder, cls, schema_path
                )
        else:
            resolution = Resolution("value", (node.name,), None, None, cls, schema_path)
        return self._record(node, resolution, t)

    def v_Filter(self, node, scopes):
        holder = self.visit(node.obj, scopes)
        if holder.kind not in ("array", "any"):
            raise self.fail(node, f"[...] filters an array, but '{_dotted(node.obj)}' is {_a(holder)}")
        self.visit(node.cond, scopes + [_Scope("element", node, holder.elem())])
        return holder if holder.kind == "array" else T.array_of(T.ANY)

    # --- functions ------------------------------------------------------------------------------------------------
    def v_Call(self, node, scopes):
        name, args = node.name, node.args
        if name not in FUNCTIONS:
            near = difflib.get_close_matches(name, sorted(FUNCTIONS), n=1)
            hint = (
                f"; did you mean '{near[0]}'?"
                if near
                else f"; known functions: {', '.join(sorted(FUNCTIONS))}"
            )
            raise self.fail(node, f"unknown function '{name}'{hint}", name, near)
        if name == "date":
            self._arity(node, 3, 3)
            for a in args:
                self._expect(a, self.visit(a, scopes), T.NUMERIC, "a whole number")
            return T.DATE
        if name in ("currentMonth", "currentYear", "currentDayOfMonth"):
            self._arity(node, 0, 0)
            return T.INTEGER
        if name == "if":
            self._arity(node, 3, 3)
            self.visit(args[0], scopes)
            return T.unify(self.visit(args[1], scopes), self.visit(args[2], scopes))
        if name == "mapEntry":
            self._arity(node, 2, 2)
            self.visit(args[0], scopes)
            self.visit(args[1], scopes)
            return T.MAPENTRY
        # inSegment
        self._arity(node, 1, 1)
        arg = args[0]
        if not (isinstance(arg, ast.Literal) and arg.kind == "string"):
            raise self.fail(
                arg, 'inSegment needs the audience id or name in quotes: inSegment("<audience id>")'
            )
        self.types[id(arg)] = T.STRING
        self._audience(node, arg.value)
        return T.BOOLEAN

    def _audience(self, node, ref: str) -> None:
        canonical = ref
        if self.resolve_audience is not None:
            canonical = self.resolve_audience(ref)
            if canonical is None:
                raise self.fail(
                    node,
                    f"unknown audience '{ref}': no segment definition or audience has this id or name",
                    ref,
                )
        if self.self_id is not None and canonical == self.self_id:
            raise self.fail(node, f'the definition refers to itself through inSegment("{ref}")', ref)
        if self.dependencies is not None and self.self_id is not None:
            cycle = find_cycle(self.self_id, [canonical], self.dependencies)
            if cycle:
                chain = " -> ".join(cycle)
                raise self.fail(node, f'inSegment("{ref}") makes a cycle of audiences: {chain}', ref)
        if canonical not in self.audiences:
            self.audiences.append(canonical)

    def _arity(self, node, low: int, high: int | None) -> None:
        n = len(node.args)
        if n < low or (high is not None and n > high):
            want = (
                str(low) if low == high else (f"{low} to {high}" if high is not None else f"at least {low}")
            )
            raise self.fail(
                node, f"'{node.name}' takes {want} argument{'s' if want != '1' else ''}, not {n}", node.name
            )

    def _expect(self, node, t: PQLType, kinds, words: str) -> None:
        base = T.scalar_of(t)
        if base.is_any or base.kind == "null" or base.kind in kinds:
            return
        raise self.fail(
            node, f"expected {words} here, but '{_short(node)}' is {_a(t)}", _short(node), [words]
        )

    def v_MethodCall(self, node, scopes):
        name, args = node.name, node.args
        receiver = self.visit(node.obj, scopes)
        if name not in ALL_METHODS:
            near = difflib.get_close_matches(name, sorted(ALL_METHODS), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise self.fail(node, f"unknown method '.{name}()'{hint}", name, near)
        kind = receiver.kind
        if name in _OBJECT_METHODS:
            self._arity(node, 0, 0)
            return T.BOOLEAN
        if name in _DATE_METHODS:
            self._arity(node, 0, 0)
            self._expect(node.obj, receiver, T.TEMPORAL, "a date or timestamp")
            return T.array_of(T.INTEGER) if kind == "array" else T.INTEGER
        if name in _STRING_METHODS and kind not in ("map", "groups"):
            if kind == "array":  # a list of strings (path through an array): true when any element matches
                if T.scalar_of(receiver).kind not in ("string", "any"):
                    raise self.fail(
                        node, f"'.{name}()' applies to strings, but '{_short(node.obj)}' is {_a(receiver)}"
                    )
                self._existential(node)
                result = self._string_method(node, T.scalar_of(receiver), scopes)
                return T.array_of(result) if name == "regexGroup" else result
            return self._string_method(node, receiver, scopes)
        if kind == "map" or (name in ("get", "keys", "values") and kind == "any"):
            if name not in _MAP_METHODS:
                raise self.fail(
                    node, f"'.{name}()' does not apply to a map; maps have get, keys, values, count"
                )
            if name == "get":
                self._arity(node, 1, 1)
                self._expect(args[0], self.visit(args[0], scopes), {"string"}, "a key in quotes")
                return T.ANY
            self._arity(node, 0, 0)
            return {"keys": T.array_of(T.STRING), "values": T.array_of(T.ANY), "count": T.INTEGER}[name]
        if kind == "groups":
            if name != "map" and name != "count":
                raise self.fail(node, f"after groupBy(...), use .map(...), not '.{name}()'")
            if name == "count":
                return T.INTEGER
            return self._map_groups(node, receiver, scopes)
        if kind not in ("array", "any"):
            if name in _STRING_METHODS:
                return self._string_method(node, receiver, scopes)
            raise self.fail(
                node, f"'.{name}()' applies to an array, but '{_short(node.obj)}' is {_a(receiver)}"
            )
        return self._array_method(node, receiver, scopes)

    def _string_method(self, node, receiver, scopes):
        name, args = node.name, node.args
        self._expect(node.obj, receiver, {"string"}, "a string")
        types = [self.visit(a, scopes) for a in args]
        if name in ("matches", "regexGroup", "like") and args:
            # The engines compile patterns once per query: a pattern is a string literal, valid on both engines.
            if not (isinstance(args[0], ast.Literal) and args[0].kind == "string"):
                raise self.fail(args[0], f"the pattern of '.{name}()' must be a string in quotes")
            problem = regex_problem(str(args[0].value)) if name != "like" else None
            if problem:
                raise self.fail(args[0], problem)
        if name == "regexGroup":
            self._arity(node, 1, 2)
            self._expect(args[0], types[0], {"string"}, "a regular expression in quotes")
            if len(args) == 2:
                self._expect(args[1], types[1], T.NUMERIC, "a group number")
            return T.STRING
        if name == "matches":
            self._arity(node, 1, 1)
            self._expect(args[0], types[0], {"string"}, "a regular expression in quotes")
            return T.BOOLEAN
        high = None if name == "equals" else 2
        self._arity(node, 1, high)
        strings = args
        if len(args) >= 2 and types[-1].kind == "boolean":
            strings = args[:-1]
        for a, t in zip(strings, types, strict=False):
            self._expect(a, t, {"string"}, "a string")
        if name != "equals" and len(strings) > 1:
            raise self.fail(args[1], f"the second argument of '.{name}()' is the case switch: true or false")
        return T.BOOLEAN

    def _array_method(self, node, receiver, scopes):
        name, args = node.name, node.args
        elem = receiver.elem()
        inner = scopes + [_Scope("element", node, elem)]
        if name in ("count", "distinct", "head"):
            self._arity(node, 0, 1 if name == "count" else 0)
            for a in args:
                self.visit(a, inner)
            return {"count": T.INTEGER, "distinct": receiver, "head": elem}[name]
        if name in ("sum", "average", "min", "max"):
            self._arity(node, 0, 1)
            value = self.visit(args[0], inner) if args else elem
            if name in ("sum", "average"):
                self._expect(args[0] if args else node.obj, value, T.NUMERIC, f"numbers to {name}")
                return T.NUMBER if name == "average" or not value.kind == "integer" else T.INTEGER
            return T.scalar_of(value)
        if name in ("includes",):
            self._arity(node, 1, 1)
            item = self.visit(args[0], scopes)
            self._compare_types(node, elem, item, args[0], "=")
            return T.BOOLEAN
        if name in ("intersects", "intersection", "subsetOf", "supersetOf"):
            self._arity(node, 1, 1)
            other = self.visit(args[0], scopes)
            if other.kind not in ("array", "any"):
                raise self.fail(args[0], f"'.{name}()' needs an array, but got {_a(other)}")
            return receiver if name == "intersection" else T.BOOLEAN
        if name in ("filter", "exists"):
            self._arity(node, 1, 1)
            self.visit(args[0], inner)
            return receiver if name == "filter" else T.BOOLEAN
        if name in ("topN", "bottomN"):
            self._arity(node, 2, 2)
            self.visit(args[0], inner)
            self._expect(args[1], self.visit(args[1], scopes), {"integer"}, "a whole number")
            return receiver
        if name == "groupBy":
            self._arity(node, 1, 1)
            key = self.visit(args[0], inner)
            return PQLType("groups", element=receiver, fields=(("key", key),))
        # map
        self._arity(node, 1, 1)
        arg = args[0]
        if isinstance(arg, ast.Lambda):
            if len(arg.params) != 1:
                raise self.fail(arg, "map over an array takes a one-parameter lambda: (X) => ...")
            t = self._lambda(arg, [elem], scopes)
        else:
            t = self.visit(arg, inner)
        return T.array_of(t)

    def _map_groups(self, node, groups, scopes):
        self._arity(node, 1, 1)
        arg = node.args[0]
        key = groups.fields[0][1] if groups.fields else T.ANY
        if isinstance(arg, ast.Lambda):
            if len(arg.params) != 2:
                raise self.fail(
                    arg, "map after groupBy takes a lambda of the key and the group: (K, G) => ..."
                )
            self._lambda(arg, [key, groups.elem()], scopes)
        else:
            self.visit(arg, scopes + [_Scope("element", node, groups.elem())])
        return T.MAP

    def _lambda(self, node: ast.Lambda, param_types: list[PQLType], scopes) -> PQLType:
        scope = _Scope("vars", node, names=dict(zip(node.params, param_types, strict=True)))
        body = self.visit(node.body, scopes + [scope])
        self.types[id(node)] = T.LAMBDA
        return body

    def v_Lambda(self, node, scopes):
        raise self.fail(
            node, "a lambda '(A, B) => ...' can only be the argument of map(...) or head the expression"
        )

    # --- operators ------------------------------------------------------------------------------------------------
    def v_Unary(self, node, scopes):
        t = self.visit(node.operand, scopes)
        if node.op == "not":
            return T.BOOLEAN
        self._expect(node.operand, t, T.NUMERIC, "a number")
        return t

    def v_Binary(self, node, scopes):
        op = node.op
        left = self.visit(node.left, scopes)
        right = self.visit(node.right, scopes)
        if op in ("and", "or"):
            return T.BOOLEAN
        if op in ("+", "-", "*", "/", "%"):
            for side, t in ((node.left, left), (node.right, right)):
                if t.kind == "array":
                    raise self.fail(
                        side, f"'{op}' needs single numbers, but '{_short(side)}' is a list of values"
                    )
                self._expect(side, t, T.NUMERIC, f"a number on each side of '{op}'")
            if op != "/" and left.kind == "integer" and right.kind == "integer":
                return T.INTEGER
            return T.NUMBER
        if op in ("in", "notIn"):
            if right.kind not in ("array", "any"):
                raise self.fail(
                    node.right, f'\'{op}\' needs a list on its right, e.g. ["CA", "OR"], but got {_a(right)}'
                )
            self._compare_types(node, T.scalar_of(left), right.elem(), node.left, "=", node.right)
            return T.BOOLEAN
        if op in ("like", "matches"):
            self._expect(node.left, left, {"string"}, f"a string on the left of '{op}'")
            self._expect(node.right, right, {"string"}, f"a pattern in quotes on the right of '{op}'")
            if left.kind == "array":
                self._existential(node)
            return T.BOOLEAN
        # comparison
        if (left.kind == "array" and right.kind != "array") or (
            right.kind == "array" and left.kind != "array"
        ):
            if not (left.is_any or right.is_any):
                self._existential(node)
            self._compare_types(node, T.scalar_of(left), T.scalar_of(right), node.left, op, node.right)
        else:
            self._compare_types(node, left, right, node.left, op, node.right)
        return T.BOOLEAN

    def _existential(self, node) -> None:
        self.warnings.append(
            ("a list of values is compared with a single value: true when any element matches", node.pos)
        )

    def _compare_types(self, node, a: PQLType, b: PQLType, left, op: str, right=None) -> None:
        if op in ("<", "<=", ">", ">="):
            for side, t in ((left, a), (right, b)):
                if t.kind in ("boolean", "object", "map", "tuple", "array", "mapentry") and side is not None:
                    raise self.fail(
                        side, f"'{op}' orders numbers, dates or strings, not {_a(t)}", _short(side)
                    )
        if T.comparable(a, b):
            return
        for lit, target in ((right, a), (left, b)):
            if isinstance(lit, ast.Literal) and lit.kind == "string":
                coerced = _coerce(lit.value, target)
                if coerced is not None:
                    self.coercions[id(lit)] = coerced
                    return
        lt = _short(left)
        hint = ""
        if a.is_numeric and isinstance(right, ast.Literal) and right.kind == "string":
            hint = "; write the number without quotes"
        elif b.is_numeric and isinstance(left, ast.Literal) and left.kind == "string":
            hint = "; write the number without quotes"
        elif a.kind == "string" and isinstance(right, ast.Literal) and right.kind != "string":
            hint = f'; put the value in quotes: "{right.value}"'
        raise self.fail(node, f"cannot compare '{lt}' ({a}) with {_show(right)} ({b}){hint}", lt)

    # --- time ----------------------------------------------------------------------------------------------------
    def v_Occurs(self, node, scopes):
        target = self.visit(node.target, scopes)
        self._expect_temporal(node.target, target, "'occurs' needs a date or timestamp field on its left")
        if target.kind == "array":
            self._existential(node)
        for ref in (node.ref, node.ref2):
            if ref is not None:
                self._time_ref(ref, scopes)
        if node.form == "offset" and node.amount is not None and node.amount < 0:
            raise self.fail(node, "the amount of time must not be negative")
        return T.BOOLEAN

    def _expect_temporal(self, node, t: PQLType, message: str) -> None:
        base = T.scalar_of(t)
        if base.is_any or base.kind == "null" or base.is_temporal:
            return
        raise self.fail(
            node, f"{message}, but '{_short(node)}' is {_a(t)}", _short(node), ["a date or timestamp"]
        )

    def _time_ref(self, ref, scopes) -> None:
        t = self.visit(ref, scopes)
        if t.kind != "period":
            self._expect_temporal(
                ref, t, "expected a time (now, today, last month, date(y, m, d) or a timestamp field)"
            )

    # --- comprehension forms ----------------------------------------------------------------------------------
    def _decls(self, decls, scopes) -> list[_Scope]:
        scopes = list(scopes)
        seen: set[str] = set()
        for decl in decls:
            source = self.visit(decl.source, scopes)
            if source.kind not in ("array", "any"):
                raise self.fail(
                    decl.source,
                    f"'{decl.var} from ...' needs an array (such as xEvent), but '{_short(decl.source)}' is {_a(source)}",
                )
            if decl.var in seen:
                raise self.fail(decl, f"the variable '{decl.var}' is declared twice")
            seen.add(decl.var)
            elem = source.elem()
            scopes = scopes + [_Scope("vars", decl, names={decl.var: elem})]
            self.types[id(decl)] = elem
            if decl.where is not None:
                self.visit(decl.where, scopes)
        return scopes

    def v_Select(self, node, scopes):
        self._decls(node.decls, scopes)
        if len(node.decls) == 1:  # a one-variable tuple is the element itself: (select X ...).head().field
            return T.array_of(self.types[id(node.decls[0])])
        return T.array_of(PQLType("tuple"))

    def v_Quantifier(self, node, scopes):
        self._decls(node.decls, scopes)
        return T.BOOLEAN

    def v_AggregateOver(self, node, scopes):
        inner = self._decls(node.decls, scopes)
        if node.value is None:
            value = self.types[id(node.decls[0])]
            where = node.decls[0]
        else:
            value = self.visit(node.value, inner)
            where = node.value
        if node.fn in ("sum", "average"):
            self._expect(where, value, T.NUMERIC, f"numbers to {node.fn}")
            return T.NUMBER if node.fn == "average" or value.kind != "integer" else T.INTEGER
        return T.scalar_of(value)

    def v_Let(self, node, scopes):
        value = self.visit(node.value, scopes)
        return self.visit(node.body, scopes + [_Scope("vars", node, names={node.var: value})])

    # --- chain ----------------------------------------------------------------------------------------------------
    def v_Chain(self, node, scopes):
        # A chain is a condition on a whole profile's events: inside a condition evaluated per element or per event
        # (brackets, select/exists/forall, method arguments, chain steps) it has no meaning the engines evaluate.
        if any(s.kind == "element" or isinstance(s.binder, ast.VarDecl | ast.Lambda) for s in scopes):
            raise self.fail(
                node,
                "chain(...) is a condition on the whole profile: it cannot stand inside a condition over array "
                "elements or events; combine it with 'and'/'or' outside that condition",
            )
        source = self.visit(node.source, scopes)
        if source.kind not in ("array", "any"):
            raise self.fail(node.source, f"chain(...) runs over the events (xEvent), not {_a(source)}")
        if len(node.steps) > MAX_CHAIN_STEPS:
            raise self.fail(
                node.steps[MAX_CHAIN_STEPS],
                f"a chain has at most {MAX_CHAIN_STEPS} steps, this one has {len(node.steps)}; split it into several chains",
            )
        elem = source.elem()
        ts = self._field_of(elem, node.timestamp_field)
        if ts is None:
            raise self.fail(
                node,
                f"the events have no field '{node.timestamp_field}' to order the chain by",
                node.timestamp_field,
            )
        self._expect_temporal(
            node, ts[0], f"the chain orders events by '{node.timestamp_field}', which must be a timestamp"
        )
        if ts[1] is not None:
            self.fields["event" if ts[2] == "event" else "profile"].add(".".join(ts[1]))
        labels: set[str] = set()
        for step in node.steps:
            if step.label in labels:
                raise self.fail(step, f"the chain step label '{step.label}' is used twice")
            labels.add(step.label)
            inner = scopes + [_Scope("element", step, elem)]
            self.visit(step.what, inner)
            if step.where is not None:
                self.visit(step.where, inner)
            if step.when is not None:
                self._time_ref(step.when.ref, scopes)
            if step.count is not None and step.count < 1:
                raise self.fail(step, "COUNT(n) needs n of at least 1")
        return T.BOOLEAN


def _a(t) -> str:
    """``an integer``, ``a string``: the type with its article."""
    text = str(t)
    return ("an " if text[:1] in "aeiou" else "a ") + text


def _all_paths(klass: ClassSchema) -> list[str]:
    return [".".join(p).replace(".[]", "[]") for p in klass.fields]


def _dotted(node) -> str:
    """The written form of a path (``homeAddress.country``), or a short description of other expressions."""
    parts: list[str] = []
    while isinstance(node, ast.Member):
        parts.append(node.name)
        node = node.obj
    if isinstance(node, ast.Name):
        parts.append(node.name)
    elif isinstance(node, ast.Param):
        parts.append(f"${node.index}")
    elif isinstance(node, ast.This):
        parts.append("this")
    elif isinstance(node, ast.Up):
        parts.append("^" * node.levels + node.name)
    else:
        parts.append("(...)")
    return ".".join(reversed(parts))


def _short(node) -> str:
    if node is None:
        return "the value"
    if isinstance(node, ast.Literal):
        return _show(node)
    if isinstance(node, ast.MethodCall):
        return f"{_dotted(node.obj)}.{node.name}(...)"
    if isinstance(node, ast.Call):
        return f"{node.name}(...)"
    return _dotted(node)


def _show(node) -> str:
    if isinstance(node, ast.Literal):
        if node.kind == "string":
            return f'"{node.value}"'
        if node.kind == "boolean":
            return "true" if node.value else "false"
        return repr(node.value)
    return f"'{_short(node)}'"


def _coerce(value: str, target: PQLType) -> PQLType | None:
    """The type a string literal can stand for when compared with ``target`` (documented coercions only)."""
    if target.kind == "boolean" and value.lower() in ("true", "false"):
        return T.BOOLEAN
    if target.kind == "date":
        try:
            date.fromisoformat(value)
            return T.DATE
        except ValueError:
            return None
    if target.kind == "date-time":
        try:
            datetime.fromisoformat(value)
            return T.DATETIME
        except ValueError:
            return None
    return None


_SEGMENT_RESULTS = {"boolean", "any", "array", "null"}


def check(
    query: ast.Query | str,
    schema: Schema,
    resolve_audience: Callable[[str], str | None] | None = None,
    *,
    allow_non_boolean: bool = False,
    dependencies: Callable[[str], Iterable[str]] | None = None,
    self_id: str | None = None,
) -> CheckedQuery:
    """Check ``query`` against ``schema``; raise :class:`PQLValidationError` naming the position and the fix.

    ``resolve_audience(id_or_name)`` returns the canonical audience id or None (unknown audience);
    ``dependencies(audience_id)`` gives the audiences that audience's definition references, and ``self_id`` is the
    id of the definition being checked: together they reject ``inSegment`` cycles. ``allow_non_boolean`` accepts
    value results (computed attributes, ranking formulas); segment definitions must be conditions.
    """
    if isinstance(query, str):
        query = parse(query)
    deep = too_deep(query)  # a tree built other than by the parser is held to the same limit
    if deep is not None:
        raise PQLValidationError(DEPTH_MESSAGE, *deep.pos)
    checker = _Checker(schema, resolve_audience, dependencies, self_id)
    result = checker.run(query)
    if not allow_non_boolean and result.kind not in _SEGMENT_RESULTS and not _is_path(query.body):
        raise checker.fail(
            query.body,
            f"a segment definition must be a condition (true or false), but this expression gives {_a(result)}; "
            "compare it with something, e.g. '... > 0'",
        )
    if not allow_non_boolean:
        _reject_value_constructs(checker, query.body)
    return CheckedQuery(
        query=query,
        result_type=result,
        referenced_audiences=tuple(checker.audiences),
        profile_fields=_maximal(checker.fields["profile"]),
        event_fields=_maximal(checker.fields["event"]),
        warnings=checker.warnings,
        _types=checker.types,
        _resolutions=checker.res,
        _coercions=checker.coercions,
    )


_VALUE_KINDS = ("object", "map", "mapentry", "tuple", "groups")


def _reject_value_constructs(checker: _Checker, body: ast.Node) -> None:
    """Segment definitions are conditions evaluated by the engines; the constructs that only build computed-attribute
    values (groups, maps, map entries, objects) are rejected here, with their position, so that the compilers cover
    everything ``check`` accepts on a segment definition (docs/decisions/engine.md)."""
    for node in body.walk():
        if isinstance(node, ast.ObjectLiteral):
            raise checker.fail(
                node, "an object literal '{...}' builds a computed-attribute value, not a condition"
            )
        if isinstance(node, ast.Lambda):
            raise checker.fail(node, "a lambda builds a computed-attribute value, not a condition")
        if isinstance(node, ast.Call) and node.name == "mapEntry":
            raise checker.fail(node, "mapEntry(...) builds a computed-attribute value, not a condition")
        if isinstance(node, ast.MethodCall) and node.name == "groupBy":
            raise checker.fail(
                node,
                "groupBy(...) builds a map (a computed-attribute value), not a condition; "
                "count distinct keys with '.<key>.distinct().count()'",
            )
        if isinstance(node, ast.Binary) and node.op in ("=", "!="):
            for side in (node.left, node.right):
                t = checker.types.get(id(side))
                if t is not None and t.kind in _VALUE_KINDS:
                    raise checker.fail(
                        side, f"'{node.op}' compares values, not {_a(t)}: compare their fields", _short(side)
                    )


def _is_path(node) -> bool:
    return isinstance(node, ast.Name | ast.Member | ast.Param | ast.Up | ast.This)


def _maximal(paths: set[str]) -> set[str]:
    """Drop paths that only lead to a longer path also read (``homeAddress`` when ``homeAddress.city`` is read)."""
    out = set()
    for p in paths:
        if not any(q != p and (q.startswith(p + ".") or q.startswith(p + "[]")) for q in paths):
            out.add(p)
    return out
