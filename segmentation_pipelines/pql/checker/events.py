"""Events over time: time anchors, ``occurs`` windows and their anchors, and ``chain`` steps."""

from __future__ import annotations

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import types as T
from segmentation_pipelines.pql.checker.base import (
    CheckerBase,
    _Scope,
)
from segmentation_pipelines.pql.checker.messages import _a, _short
from segmentation_pipelines.pql.limits import MAX_CHAIN_STEPS
from segmentation_pipelines.pql.types import PQLType


class Events(CheckerBase):
    """Time anchors, ``occurs`` and ``chain``."""

    def v_TimeAnchor(self, node, scopes):
        return T.DATETIME if node.name == "now" else T.DATE

    def v_RelativePeriod(self, node, scopes):
        return T.PERIOD

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
