"""Frames and names: profile and event fields, ``xEvent``, element scopes, variables, ``^``, ``this``, ``$1``,
``let``; unknown names with a suggestion."""

from __future__ import annotations

import difflib

from segmentation_pipelines.pql import types as T
from segmentation_pipelines.pql.checker.base import (
    CheckerBase,
    _schema_type,
    _Scope,
)
from segmentation_pipelines.pql.checker.messages import _a, _all_paths, _dotted
from segmentation_pipelines.pql.checker.result import Resolution
from segmentation_pipelines.pql.errors import PQLValidationError
from segmentation_pipelines.pql.types import PQLType


class Names(CheckerBase):
    """Name resolution on the scopes; the fields a query reads."""

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

    def v_Let(self, node, scopes):
        value = self.visit(node.value, scopes)
        return self.visit(node.body, scopes + [_Scope("vars", node, names={node.var: value})])
