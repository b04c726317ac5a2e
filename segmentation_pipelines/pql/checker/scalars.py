"""Literals, operators (comparison types and coercions, existential comparisons) and function calls
(``inSegment`` audiences and their cycles)."""

from __future__ import annotations

import difflib
import math

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import types as T
from segmentation_pipelines.pql.checker.base import (
    FUNCTIONS,
    CheckerBase,
    _coerce,
)
from segmentation_pipelines.pql.checker.messages import _a, _short, _show
from segmentation_pipelines.pql.references import find_cycle
from segmentation_pipelines.pql.types import PQLType


class Scalars(CheckerBase):
    """Literals, operators and calls."""

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
