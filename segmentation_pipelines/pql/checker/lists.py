"""Lists and lambdas: method calls (dispatched by the receiver's type), element scopes, filters, ``groupBy``, and the
comprehension forms (``select``/``exists``/``forall``/aggregation over declarations)."""

from __future__ import annotations

import difflib

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import types as T
from segmentation_pipelines.pql.checker.base import (
    _DATE_METHODS,
    _MAP_METHODS,
    _OBJECT_METHODS,
    _STRING_METHODS,
    ALL_METHODS,
    CheckerBase,
    _Scope,
)
from segmentation_pipelines.pql.checker.messages import _a, _dotted, _short
from segmentation_pipelines.pql.types import PQLType


class Lists(CheckerBase):
    """Methods, lambdas and comprehensions."""

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

    def v_Filter(self, node, scopes):
        holder = self.visit(node.obj, scopes)
        if holder.kind not in ("array", "any"):
            raise self.fail(node, f"[...] filters an array, but '{_dotted(node.obj)}' is {_a(holder)}")
        self.visit(node.cond, scopes + [_Scope("element", node, holder.elem())])
        return holder if holder.kind == "array" else T.array_of(T.ANY)

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
