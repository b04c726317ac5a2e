"""pql/text <-> pql/json: the JSON syntax tree of the Segmentation API (``POST /segment/conversion``).

Node shapes (pql.md §1; ours where Adobe's are undocumented, marked *):

* ``literal{literalType, value}``: ``String``, ``Integer``, ``Double``, ``Boolean``; *``Array`` (value: list of
  nodes), *``Object`` (value: ``{key: node}``), *``TimeAnchor`` (``"now"``...), *``RelativePeriod``
  (``{"which": "last", "unit": "month"}``).
* ``fieldLookup{fieldName, object}``: a field of ``object``. A free name is a lookup on
  ``parameterReference{position: 1}`` (the profile) at the top level, as Adobe's converter writes it, and on
  *``implicitReference{}`` inside ``[...]``, method arguments and chain steps (where PQL resolves it on the element
  first, pql.md §0). ``$1`` written explicitly is ``parameterReference{position, explicit: true}``.
* ``varRef{varName}``: a variable (select/exists/forall/aggregation variable, lambda or let name, ``xEvent``,
  ``this``); *``upReference{levels, fieldName}`` for ``^name``.
* ``fnApply{fnName, params}``: operators (``= != < <= > >= and or not + - * / % in notIn like matches``, unary
  minus is ``-`` with one param), free functions (``date``, ``if``, ``inSegment``...), methods (``method: true``,
  receiver first), *``[]`` (bracket filter), ``occurs`` (+ ``form op amount unit direction``), ``exists`` /
  ``forall`` / ``sum`` ... over a ``set``.
* ``set{variables: [varDecl{varName, range, where?}]}`` (``select``), ``fnCreate{params: [{varName}], body}``
  (a lambda; also the ``(Profile) => ...`` head), *``let{varName, value, body}``,
  *``chain{object, timestampField, steps: [{label, what, where?, when?, count?}]}``.
"""

from __future__ import annotations

import json
from typing import Any

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.errors import PQLError, PQLSyntaxError
from segmentation_pipelines.pql.limits import DEPTH_MESSAGE, json_too_deep
from segmentation_pipelines.pql.parser import parse
from segmentation_pipelines.pql.printer import to_text

_FUNCTIONS = {"date", "currentMonth", "currentYear", "currentDayOfMonth", "if", "inSegment", "mapEntry"}
_OCCURS_KEYS = ("form", "op", "amount", "unit", "direction")


def to_json(query: ast.Query | str) -> dict:
    """The pql/json tree (a dict) of PQL text or of a parsed :class:`ast.Query`."""
    if isinstance(query, str):
        query = parse(query)
    body = _ToJson(query.params).node(query.body, implicit=False)
    if query.params:
        return {"nodeType": "fnCreate", "params": [{"varName": p} for p in query.params], "body": body}
    return body


class _ToJson:
    def __init__(self, params: tuple[str, ...]) -> None:
        self.bound: list[str] = list(params)

    def node(self, n, implicit: bool) -> dict:  # noqa: C901 - one case per node type
        j = self.node
        match n:
            case ast.Literal(value=v, kind=k):
                kind = {"string": "String", "integer": "Integer", "number": "Double", "boolean": "Boolean"}[k]
                if isinstance(v, float) and v != v:  # NaN cannot come from text, keep JSON valid anyway
                    v = None
                return {"nodeType": "literal", "literalType": kind, "value": v}
            case ast.ListLiteral(items=items):
                return {
                    "nodeType": "literal",
                    "literalType": "Array",
                    "value": [j(x, implicit) for x in items],
                }
            case ast.ObjectLiteral(entries=entries):
                value = {k: j(v, implicit) for k, v in entries}
                return {"nodeType": "literal", "literalType": "Object", "value": value}
            case ast.TimeAnchor(name=name):
                return {"nodeType": "literal", "literalType": "TimeAnchor", "value": name}
            case ast.RelativePeriod(which=w, unit=u):
                return {
                    "nodeType": "literal",
                    "literalType": "RelativePeriod",
                    "value": {"which": w, "unit": u},
                }
            case ast.Name(name=name):
                if name in self.bound or name == "xEvent":
                    return {"nodeType": "varRef", "varName": name}
                root = (
                    {"nodeType": "implicitReference"}
                    if implicit
                    else {"nodeType": "parameterReference", "position": 1}
                )
                return {"nodeType": "fieldLookup", "fieldName": name, "object": root}
            case ast.Param(index=i):
                return {"nodeType": "parameterReference", "position": i, "explicit": True}
            case ast.This():
                return {"nodeType": "varRef", "varName": "this"}
            case ast.Up(levels=lv, name=name):
                return {"nodeType": "upReference", "levels": lv, "fieldName": name}
            case ast.Member(obj=o, name=name):
                return {"nodeType": "fieldLookup", "fieldName": name, "object": j(o, implicit)}
            case ast.MethodCall(obj=o, name=name, args=args):
                params = [j(o, implicit)] + [j(a, True) for a in args]
                return {"nodeType": "fnApply", "fnName": name, "method": True, "params": params}
            case ast.Call(name=name, args=args):
                out = {"nodeType": "fnApply", "fnName": name, "params": [j(a, implicit) for a in args]}
                if name not in _FUNCTIONS:
                    out["function"] = True
                return out
            case ast.Filter(obj=o, cond=c):
                return {"nodeType": "fnApply", "fnName": "[]", "params": [j(o, implicit), j(c, True)]}
            case ast.Lambda(params=ps, body=b):
                return {
                    "nodeType": "fnCreate",
                    "params": [{"varName": p} for p in ps],
                    "body": self._bound(ps, b, implicit),
                }
            case ast.Unary(op=op, operand=o):
                return {"nodeType": "fnApply", "fnName": op, "params": [j(o, implicit)]}
            case ast.Binary(op=op, left=left, right=right):
                return {
                    "nodeType": "fnApply",
                    "fnName": op,
                    "params": [j(left, implicit), j(right, implicit)],
                }
            case ast.Occurs():
                params = [j(n.target, implicit), j(n.ref, implicit)]
                if n.ref2 is not None:
                    params.append(j(n.ref2, implicit))
                out = {"nodeType": "fnApply", "fnName": "occurs", "params": params}
                out.update({k: getattr(n, k) for k in _OCCURS_KEYS if getattr(n, k) is not None})
                return out
            case ast.Select(decls=decls):
                return self._set(decls, implicit)[0]
            case ast.Quantifier(kind=k, decls=decls):
                return {"nodeType": "fnApply", "fnName": k, "params": [self._set(decls, implicit)[0]]}
            case ast.AggregateOver(fn=fn, value=v, decls=decls):
                the_set, names = self._set(decls, implicit)
                params = [the_set]
                if v is not None:
                    params.insert(0, self._bound(names, v, implicit))
                return {"nodeType": "fnApply", "fnName": fn, "over": True, "params": params}
            case ast.Let(var=var, value=v, body=b):
                return {
                    "nodeType": "let",
                    "varName": var,
                    "value": j(v, implicit),
                    "body": self._bound((var,), b, implicit),
                }
            case ast.Chain(source=s, timestamp_field=ts, steps=steps):
                return {
                    "nodeType": "chain",
                    "object": j(s, implicit),
                    "timestampField": ts,
                    "steps": [self._step(x, implicit) for x in steps],
                }
        raise TypeError(f"cannot convert {type(n).__name__}")

    def _bound(self, names, body, implicit: bool) -> dict:
        self.bound.extend(names)
        try:
            return self.node(body, implicit)
        finally:
            del self.bound[len(self.bound) - len(names) :]

    def _set(self, decls, implicit: bool) -> tuple[dict, list[str]]:
        variables, names = [], []
        for d in decls:
            item = {"nodeType": "varDecl", "varName": d.var, "range": self.node(d.source, implicit)}
            self.bound.append(d.var)
            names.append(d.var)
            if d.where is not None:
                item["where"] = self.node(d.where, implicit)
            variables.append(item)
        del self.bound[len(self.bound) - len(names) :]
        return {"nodeType": "set", "variables": variables}, names

    def _step(self, step: ast.ChainStep, implicit: bool) -> dict:
        out: dict[str, Any] = {"label": step.label, "what": self.node(step.what, True)}
        if step.where is not None:
            out["where"] = self.node(step.where, True)
        if step.when is not None:
            w = step.when
            when = {
                k: getattr(w, k) for k in ("op", "amount", "unit", "direction") if getattr(w, k) is not None
            }
            when["ref"] = self.node(w.ref, implicit)
            out["when"] = when
        if step.count is not None:
            out["count"] = step.count
        return out


# --- json -> ast ---------------------------------------------------------------------------------------------------
class _Bad(Exception):
    pass


def from_json(tree: dict | str) -> ast.Query:
    """An :class:`ast.Query` from a pql/json tree (dict or JSON text); bad trees raise :class:`PQLSyntaxError`."""
    try:
        if isinstance(tree, str):
            tree = json.loads(tree)
        if not isinstance(tree, dict):
            raise _Bad("the pql/json value must be a JSON object")
        if json_too_deep(tree):
            raise PQLSyntaxError(f"invalid pql/json: {DEPTH_MESSAGE}")
        if tree.get("nodeType") == "fnCreate" and "body" in tree:
            query = ast.Query(_node(tree["body"]), tuple(_var(p) for p in tree.get("params", [])))
        else:
            query = ast.Query(_node(tree))
        text = to_text(query)
    except (_Bad, KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as err:
        if isinstance(err, RecursionError):
            raise PQLSyntaxError("invalid pql/json: nested too deeply") from None
        if isinstance(err, PQLError):
            raise
        what = f"missing field {err}" if isinstance(err, KeyError) else str(err)
        raise PQLSyntaxError(f"invalid pql/json: {what}") from None
    # The tree is valid when its text is PQL: re-parsing checks every invariant (names are identifiers, occurs
    # has its unit and direction, ...) and gives the canonical tree the compilers expect.
    try:
        return parse(text)
    except PQLSyntaxError as err:
        raise PQLSyntaxError(f"invalid pql/json: it does not describe a PQL expression ({err})") from None


def _var(p) -> str:
    name = p["varName"] if isinstance(p, dict) else p
    if not isinstance(name, str) or not name:
        raise _Bad("varName must be a non-empty string")
    return name


def _node(d: dict):  # noqa: C901 - one case per node type
    if not isinstance(d, dict):
        raise _Bad(f"expected a node object, found {json.dumps(d)[:40]}")
    kind = d.get("nodeType")
    if kind == "literal":
        lt = str(d.get("literalType", "")).lower()
        v = d.get("value")
        if lt == "string":
            return ast.Literal(str(v), "string")
        if lt in ("integer", "int", "long"):
            return ast.Literal(int(v), "integer")
        if lt in ("double", "number", "float"):
            return ast.Literal(float(v), "number")
        if lt == "boolean":
            return ast.Literal(v if isinstance(v, bool) else str(v).lower() == "true", "boolean")
        if lt == "array":
            return ast.ListLiteral(tuple(_node(x) for x in v))
        if lt == "object":
            return ast.ObjectLiteral(tuple((str(k), _node(x)) for k, x in v.items()))
        if lt == "timeanchor":
            return ast.TimeAnchor(v)
        if lt == "relativeperiod":
            return ast.RelativePeriod(v["which"], v["unit"])
        if lt == "xdmobject" and v == "profile":
            return ast.Param(1)
        raise _Bad(f"unknown literalType '{d.get('literalType')}'")
    if kind == "parameterReference":
        return ast.Param(int(d.get("position", 1)))
    if kind == "varRef":
        name = _var(d)
        return ast.This() if name == "this" else ast.Name(name)
    if kind == "upReference":
        return ast.Up(int(d["levels"]), str(d["fieldName"]))
    if kind == "fieldLookup":
        obj = d.get("object")
        name = str(d["fieldName"])
        if obj is None or obj.get("nodeType") == "implicitReference":
            return ast.Name(name)
        if (
            obj.get("nodeType") == "parameterReference"
            and not obj.get("explicit")
            and int(obj.get("position", 1)) == 1
        ):
            return ast.Name(name)
        if obj.get("nodeType") == "literal" and obj.get("literalType") == "XDMObject":  # legacy root
            return ast.Name(name)
        return ast.Member(_node(obj), name)
    if kind == "fnCreate":
        return ast.Lambda(tuple(_var(p) for p in d["params"]), _node(d["body"]))
    if kind == "set":
        return ast.Select(_decls(d))
    if kind == "let":
        return ast.Let(_var(d), _node(d["value"]), _node(d["body"]))
    if kind == "chain":
        steps = tuple(_step(s) for s in d["steps"])
        return ast.Chain(_node(d["object"]), str(d["timestampField"]), steps)
    if kind == "fnApply":
        return _apply(d)
    raise _Bad(f"unknown nodeType '{kind}'")


def _decls(d: dict) -> tuple[ast.VarDecl, ...]:
    out = []
    for v in d["variables"]:
        where = _node(v["where"]) if v.get("where") is not None else None
        out.append(ast.VarDecl(_var(v), _node(v["range"]), where))
    if not out:
        raise _Bad("a set needs at least one variable")
    return tuple(out)


def _apply(d: dict):
    name = d.get("fnName", d.get("function"))
    if not isinstance(name, str):
        raise _Bad("fnApply needs a fnName")
    params = d.get("params", [])
    if d.get("method"):
        if not params:
            raise _Bad(f"method '{name}' needs its receiver as first param")
        return ast.MethodCall(_node(params[0]), name, tuple(_node(p) for p in params[1:]))
    if d.get("function") is True:
        return ast.Call(name, tuple(_node(p) for p in params))
    if name == "occurs":
        extra = {k: d[k] for k in _OCCURS_KEYS if k in d}
        ref2 = _node(params[2]) if len(params) > 2 else None
        return ast.Occurs(_node(params[0]), ref=_node(params[1]), ref2=ref2, **{"form": "on", **extra})
    if name in ("exists", "forall") and len(params) == 1 and params[0].get("nodeType") == "set":
        return ast.Quantifier(name, _decls(params[0]))
    if d.get("over") and name in ("sum", "average", "min", "max"):
        value = _node(params[0]) if len(params) == 2 else None
        return ast.AggregateOver(name, value, _decls(params[-1]))
    if name == "[]" and len(params) == 2:
        return ast.Filter(_node(params[0]), _node(params[1]))
    if name in ("not", "-") and len(params) == 1:
        return ast.Unary(name, _node(params[0]))
    if name in _BINARY and len(params) == 2:
        return ast.Binary(name, _node(params[0]), _node(params[1]))
    return ast.Call(name, tuple(_node(p) for p in params))


_BINARY = {
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "and",
    "or",
    "+",
    "-",
    "*",
    "/",
    "%",
    "in",
    "notIn",
    "like",
    "matches",
}


def _step(s: dict) -> ast.ChainStep:
    when = None
    if s.get("when") is not None:
        w = s["when"]
        when = ast.When(_node(w["ref"]), w.get("op"), w.get("amount"), w.get("unit"), w.get("direction"))
    where = _node(s["where"]) if s.get("where") is not None else None
    return ast.ChainStep(str(s["label"]), _node(s["what"]), where, when, s.get("count"))


# --- the conversion endpoint -------------------------------------------------------------------------------------
def convert_expression(expression: dict, to_format: str | None = None) -> dict:
    """Convert an ``{"type": "PQL", "format": "pql/text"|"pql/json", "value": ...}`` envelope to the other format
    (or to ``to_format``). The pql/json value is JSON text, as in the Segmentation API. Raises :class:`PQLError`."""
    if not isinstance(expression, dict):
        raise PQLSyntaxError("expression must be an object with type, format and value")
    fmt = expression.get("format", "pql/text")
    value = expression.get("value")
    if fmt not in ("pql/text", "pql/json"):
        raise PQLSyntaxError(f"unknown expression format '{fmt}': use pql/text or pql/json")
    target = to_format or ("pql/json" if fmt == "pql/text" else "pql/text")
    if target not in ("pql/text", "pql/json"):
        raise PQLSyntaxError(f"unknown target format '{target}': use pql/text or pql/json")
    if fmt == "pql/text":
        if not isinstance(value, str):
            raise PQLSyntaxError("a pql/text expression value must be a string")
        query = parse(value)
    else:
        query = from_json(value)
    out_value = json.dumps(to_json(query), separators=(",", ":")) if target == "pql/json" else to_text(query)
    return {**expression, "type": expression.get("type", "PQL"), "format": target, "value": out_value}
