"""Time: anchors and relative periods, ``occurs`` windows and their bounds, evaluated at the evaluation time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import timewindows as tw
from segmentation_pipelines.pql.lowering.base import Walker
from segmentation_pipelines.pql.lowering.values import (
    CompileError,
    Ctx,
    V,
)


class Windows(Walker):
    """Time anchors, ``occurs`` windows and their bounds."""

    def v_TimeAnchor(self, n: ast.TimeAnchor, ctx: Ctx) -> V:
        return V("scalar", self.b.ts_lit(self._const_bound(tw.span(n, self.now).start)), "date-time", node=n)

    def v_RelativePeriod(self, n: ast.RelativePeriod, ctx: Ctx) -> V:
        return V("scalar", self.b.ts_lit(self._const_bound(tw.span(n, self.now).start)), "date-time", node=n)

    def _const_bound(self, b: tw.Bound) -> datetime:
        assert isinstance(b.base, datetime)
        return b.base

    def v_Occurs(self, n: ast.Occurs, ctx: Ctx) -> V:
        target = self.value(n.target, ctx)
        if target.kind == "events":
            return self.events_exists(
                target,
                lambda ectx, proj: V(
                    "scalar",
                    self.window_pred(self._ts(proj, n), tw.occurs_window(n, self.now), ectx),
                    "boolean",
                ),
                ctx,
                n,
            )
        if target.kind == "list":
            var = self.b.lambda_var(ctx.lambda_depth + 1)
            body = self.window_pred(
                self._ts(V("scalar", var, target.elem_type), n), tw.occurs_window(n, self.now), ctx
            )
            return V("scalar", self.b.list_any(target.expr, var, body, False), "boolean", node=n)
        return V(
            "scalar",
            self.window_pred(self._ts(target, n), tw.occurs_window(n, self.now), ctx),
            "boolean",
            node=n,
        )

    def _ts(self, v: V, n: ast.Node) -> Any:
        if v.kind != "scalar":
            raise CompileError("occurs applies to a timestamp or date", n)
        return self.b.to_ts(v.expr) if v.type in ("date", "string") else v.expr

    def window_pred(self, ts: Any, w: tw.Window, ctx: Ctx) -> Any:
        b = self.b
        parts = []
        if w.lower is not None:
            parts.append(b.cmp(">=" if w.lower.inclusive else ">", ts, self.bound(w.lower, ctx)))
        if w.upper is not None:
            parts.append(b.cmp("<=" if w.upper.inclusive else "<", ts, self.bound(w.upper, ctx)))
        out = parts[0]
        for p in parts[1:]:
            out = b.and_(out, p)
        return out

    def bound(self, bd: tw.Bound, ctx: Ctx) -> Any:
        b = self.b
        if isinstance(bd.base, datetime):
            return b.ts_lit(bd.base)
        v = self.scalar(bd.base, ctx)
        e = self._ts(v, bd.base)
        if bd.trunc:
            e = b.trunc(e, bd.trunc)
        if bd.amount:
            e = b.add_interval(e, bd.amount, tw.unit_name(bd.unit or "day"))
        return e
