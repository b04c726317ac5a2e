"""ast -> canonical pql/text (``to_text``): lower-case keywords, upper-case chain clauses, double-quoted strings,
parentheses only where precedence needs them. ``parse(to_text(q)) == q`` for every tree ``parse`` builds.
"""

from __future__ import annotations

import math

from segmentation_pipelines.pql import ast

# precedence levels (pql.md §3): higher binds tighter
PREFIX, OR, AND, NOT, REL, ADD, MUL, UNARY, POSTFIX = range(9)
_BINARY_PREC = {"or": OR, "and": AND, "+": ADD, "-": ADD, "*": MUL, "/": MUL, "%": MUL}


def to_text(query) -> str:
    """Canonical pql/text of an :class:`ast.Query` (text is returned as it is; ``pql.to_text`` also takes a pql/json
    dict)."""
    if isinstance(query, str):
        return query
    if isinstance(query, ast.Query):
        body = _expr(query.body)
        return f"({', '.join(query.params)}) => {body}" if query.params else body
    return _expr(query)


def _expr(node) -> str:
    return _p(node)[0]


def _wrap(node, minimum: int) -> str:
    text, prec = _p(node)
    return f"({text})" if prec < minimum else text


def _item(node) -> str:
    """An element of a comma-separated list: prefix forms would swallow the following comma (a lambda's body is
    already wrapped)."""
    return _expr(node) if isinstance(node, ast.Lambda) else _wrap(node, OR)


def string(value: str) -> str:
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{out.replace(chr(9), chr(92) + "t")}"'


def _number(value) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "1e999" if value > 0 else "-1e999"
        return repr(value)
    return str(value)


def _p(node) -> tuple[str, int]:  # noqa: C901 - one case per node type
    match node:
        case ast.Literal(value=v, kind=k):
            if k == "string":
                return string(v), POSTFIX
            if k == "boolean":
                return ("true" if v else "false"), POSTFIX
            text = _number(v)
            return text, (UNARY if text.startswith("-") else POSTFIX)
        case ast.ListLiteral(items=items):
            return "[" + ", ".join(_item(x) for x in items) + "]", POSTFIX
        case ast.ObjectLiteral(entries=entries):
            return "{" + ", ".join(f"{string(k)}: {_item(v)}" for k, v in entries) + "}", POSTFIX
        case ast.Name(name=n):
            return n, POSTFIX
        case ast.Param(index=i):
            return f"${i}", POSTFIX
        case ast.This():
            return "this", POSTFIX
        case ast.Up(levels=lv, name=n):
            return "^" * lv + n, POSTFIX
        case ast.TimeAnchor(name=n):
            return n, POSTFIX
        case ast.RelativePeriod(which=w, unit=u):
            return f"{w} {u}", POSTFIX
        case ast.Member(obj=o, name=n):
            return f"{_wrap(o, POSTFIX)}.{n}", POSTFIX
        case ast.MethodCall(obj=o, name=n, args=args):
            return f"{_wrap(o, POSTFIX)}.{n}({', '.join(_item(a) for a in args)})", POSTFIX
        case ast.Call(name=n, args=args):
            return f"{n}({', '.join(_item(a) for a in args)})", POSTFIX
        case ast.Filter(obj=o, cond=c):
            return f"{_wrap(o, POSTFIX)}[{_expr(c)}]", POSTFIX
        case ast.Lambda(params=ps, body=b):
            return f"({', '.join(ps)}) => {_wrap(b, OR)}", PREFIX
        case ast.Unary(op="not", operand=o):
            text, prec = _p(o)
            return (f"not {text}" if prec == POSTFIX else f"not ({text})"), NOT
        case ast.Unary(op="-", operand=o):
            return f"-{_wrap(o, UNARY)}", UNARY
        case ast.Binary(op=op, left=left, right=right) if op in ("and", "or"):
            prec = _BINARY_PREC[op]
            return f"{_chain_side(left, op, prec)} {op} {_chain_side(right, op, prec)}", prec
        case ast.Binary(op=op, left=left, right=right) if op in _BINARY_PREC:
            prec = _BINARY_PREC[op]
            return f"{_wrap(left, prec)} {op} {_wrap(right, prec + 1)}", prec
        case ast.Binary(op=op, left=left, right=right):
            return f"{_wrap(left, ADD)} {op} {_wrap(right, ADD)}", REL
        case ast.Occurs():
            return f"{_wrap(node.target, ADD)} occurs {_occurs_tail(node)}", REL
        case ast.Select(decls=decls):
            return f"select {_decls(decls)}", PREFIX
        case ast.Quantifier(kind=k, decls=decls):
            return f"{k} {_decls(decls)}", PREFIX
        case ast.AggregateOver(fn=fn, value=None, decls=decls):
            return f"{fn} {_decls(decls)}", PREFIX
        case ast.AggregateOver(fn=fn, value=v, decls=decls):
            return f"{fn} {_wrap(v, ADD)} over {_decls(decls)}", PREFIX
        case ast.Let(var=var, value=v, body=b):
            return f"let {var} = {_wrap(v, POSTFIX)} in {_expr(b)}", PREFIX
        case ast.Chain(source=s, timestamp_field=ts, steps=steps):
            return f"chain({_wrap(s, POSTFIX)}, {ts}, [{', '.join(_step(x) for x in steps)}])", POSTFIX
        case ast.Query():
            return to_text(node), PREFIX
    raise TypeError(f"cannot print {type(node).__name__}")


def _chain_side(node, op: str, prec: int) -> str:
    if isinstance(node, ast.Binary) and node.op == op:
        return _p(node)[0]
    return _wrap(node, prec + 1)


def _time_ref(node) -> str:
    return _wrap(node, POSTFIX)


def _offset(op, amount, unit, direction, ref) -> str:
    return f"{op} {amount} {unit}{'s' if amount != 1 else ''} {direction} {_time_ref(ref)}"


def _occurs_tail(node: ast.Occurs) -> str:
    if node.form == "offset":
        return _offset(node.op, node.amount, node.unit, node.direction, node.ref)
    if node.form == "direction":
        return f"{node.direction} {_time_ref(node.ref)}"
    if node.form == "between":
        return f"between {_time_ref(node.ref)} and {_time_ref(node.ref2)}"
    return f"on {_time_ref(node.ref)}"


def _decls(decls) -> str:
    parts = []
    for i, d in enumerate(decls):
        text = f"{d.var} from {_wrap(d.source, POSTFIX)}"
        if d.where is not None:
            last = i == len(decls) - 1
            text += f" where {_expr(d.where) if last else _item(d.where)}"
        parts.append(text)
    return ", ".join(parts)


def _step(step: ast.ChainStep) -> str:
    text = f"{step.label}: WHAT({_expr(step.what)})"
    if step.where is not None:
        text += f" WHERE({_expr(step.where)})"
    if step.when is not None:
        w = step.when
        if w.op is not None:
            spec = _offset(w.op, w.amount, w.unit, w.direction, w.ref)
        elif w.direction is not None:
            spec = f"{w.direction} {_time_ref(w.ref)}"
        else:
            spec = _time_ref(w.ref)
        text += f" WHEN({spec})"
    if step.count is not None:
        text += f" COUNT({step.count})"
    return text
