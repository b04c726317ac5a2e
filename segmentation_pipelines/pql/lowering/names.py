"""Frames and names: ``$1``, ``this``, ``^``, bare names, declared variables, ``let``, field access."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.lowering.base import Walker
from segmentation_pipelines.pql.lowering.values import (
    CompileError,
    Ctx,
    Frame,
    V,
)
from segmentation_pipelines.pql.schema import ClassSchema


class Names(Walker):
    """Name resolution on the frames of the context; fields of structs and lists of structs."""

    def v_Param(self, n: ast.Param, ctx: Ctx) -> V:
        if n.index != 1:
            raise CompileError(f"${n.index}: a segment definition has one parameter, the profile ($1)", n)
        return self._row(ctx.frames[0], ctx)

    def v_This(self, n: ast.This, ctx: Ctx) -> V:
        return self._row(ctx.frames[-1], ctx)

    def v_Up(self, n: ast.Up, ctx: Ctx) -> V:
        if n.levels >= len(ctx.frames):
            raise CompileError(
                f"'^' steps out of {n.levels} levels but only {len(ctx.frames) - 1} enclose it", n
            )
        return self._lookup(n.name, ctx, ctx.frames[: len(ctx.frames) - n.levels], n)

    def v_Name(self, n: ast.Name, ctx: Ctx) -> V:
        if n.name in ctx.lets:
            return ctx.lets[n.name]
        if n.name in ctx.profile_names:
            return self._row(ctx.frames[0], ctx)
        for f in reversed(ctx.frames):
            if f.var == n.name:
                return self._row(f, ctx)
        if n.name == "xEvent":
            if ctx.in_event:
                # Pairs of events: the inner range is the profile's whole event list (a list of event structs,
                # ordered by timestamp), joined to each event row like the profile's fields.
                self.needs_profile = True
                lst = self.b.event_list(n)
                return V("list", lst, "array", schema=self.schema.event, path=(), elem_type="object", node=n)
            return V("events", node=n)
        return self._lookup(n.name, ctx, ctx.frames, n)

    def _lookup(self, name: str, ctx: Ctx, frames: tuple[Frame, ...], node: ast.Node) -> V:
        untyped: Frame | None = None
        for f in reversed(frames):
            if f.kind == "elem" and f.elem_type != "object":
                if f.elem_type == "any" and untyped is None:
                    untyped = f
                continue
            t = f.schema.lookup((*f.path, name))
            if t is not None:
                return self._field(self._row(f, ctx), name, t, node)
        if untyped is not None:
            # Elements of untyped arrays (map values): the name is a field of the element, typed at run time.
            self._note_access(untyped, ctx)
            return V("scalar", self.b.field(untyped.ref, name), "any", frame=untyped, node=node)
        raise CompileError(f"unknown field {name!r}", node)

    def _row(self, f: Frame, ctx: Ctx) -> V:
        """The row of frame ``f`` as a value (a struct, or the scalar element of an array of scalars)."""
        self._note_access(f, ctx)
        if f.kind == "elem":
            if f.elem_type != "object":
                return V("scalar", f.ref, f.elem_type, frame=f)
            return V("struct", f.ref, "object", schema=f.schema, path=f.path, frame=f)
        return V("struct", None, "object", schema=f.schema, path=f.path, frame=f)

    def _note_access(self, f: Frame, ctx: Ctx) -> None:
        innermost = ctx.frames[-1]
        if ctx.lambda_depth and f is not innermost:
            self.captures = True
        if ctx.in_event and f.kind == "profile":
            self.needs_profile = True

    def _field(self, obj: V, name: str, t: str, node: ast.Node) -> V:
        """``obj.name`` where ``obj`` is a struct value; ``t`` the field's schema type."""
        f = obj.frame
        assert obj.schema is not None
        path = (*obj.path, name)
        if obj.expr is None:
            assert f is not None
            e = self.b.column(f.kind, name, via_event=f.kind == "profile" and self._in_event_now)
            return replace(self._typed(e, obj.schema, path, t, node, f), column=e)
        e = self.b.field(obj.expr, name)
        v = self._typed(e, obj.schema, path, t, node, f)
        if f is not None and f.kind == "elem" and obj.expr is f.ref:
            v.elem_field = (f, name, e)
        return v

    def _typed(
        self, e: Any, schema: ClassSchema, path: tuple[str, ...], t: str, node: ast.Node, f: Frame | None
    ) -> V:
        if t == "array":
            ep = (*path, "[]")
            et = schema.lookup(ep) or "any"
            return V("list", e, "array", schema=schema, path=ep, elem_type=et, frame=f, node=node)
        if t == "object":
            return V("struct", e, "object", schema=schema, path=path, frame=f, node=node)
        return V("scalar", e, t, schema=schema, path=path, frame=f, node=node)

    def v_Member(self, n: ast.Member, ctx: Ctx) -> V:
        obj = self.value(n.obj, ctx)
        return self.member(obj, n.name, n, ctx)

    def member(self, obj: V, name: str, n: ast.Node, ctx: Ctx) -> V:
        if obj.kind == "events":
            path = (*obj.proj, name)
            t = _lookup_through_arrays(self.schema.event, path)
            if t is None:
                raise CompileError(f"unknown event field {'.'.join(path)!r}", n)
            return replace(obj, proj=path, type=t, node=n)
        if obj.kind == "struct":
            assert obj.schema is not None
            t = obj.schema.lookup((*obj.path, name))
            if t is None:
                raise CompileError(f"unknown field {'.'.join((*obj.path, name))!r}", n)
            return self._field(obj, name, t, n)
        if obj.kind == "list" and obj.schema is not None and obj.elem_type == "object":
            # Flattening through an array: the list of the field over all elements.
            t = obj.schema.lookup((*obj.path, name))
            if t is None:
                raise CompileError(f"unknown field {'.'.join((*obj.path, name))!r}", n)
            var = self.b.lambda_var(ctx.lambda_depth + 1)
            inner = self._typed(self.b.field(var, name), obj.schema, (*obj.path, name), t, n, None)
            if inner.kind == "list":
                flat = self.b.list_flatten(self.b.list_transform(obj.expr, var, inner.expr, False))
                return replace(inner, expr=flat, frame=None)
            et = t if inner.kind == "scalar" else "object"
            return V(
                "list",
                self.b.list_transform(obj.expr, var, inner.expr, False),
                "array",
                schema=obj.schema,
                path=(*obj.path, name) if et == "object" else (*obj.path, name),
                elem_type=et,
                node=n,
            )
        raise CompileError(f"cannot read field {name!r} of a {obj.type} value", n)

    def v_Let(self, n: ast.Let, ctx: Ctx) -> V:
        v = self.value(n.value, ctx)
        return self.value(n.body, replace(ctx, lets={**ctx.lets, n.var: v}))


def _lookup_through_arrays(schema: ClassSchema, names: tuple[str, ...]) -> str | None:
    path: tuple[str, ...] = ()
    t = None
    for name in names:
        if t == "array":
            path = (*path, "[]")
        path = (*path, name)
        t = schema.lookup(path)
        if t is None:
            return None
    return t
