"""String tests (``contains``, ``startsWith``, ``equals`` ... with case sensitivity), ``like``, ``matches`` and
``regexGroup``, applied element-wise over lists and existentially over events."""

from __future__ import annotations

from dataclasses import replace

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.lowering.base import Walker
from segmentation_pipelines.pql.lowering.values import (
    CompileError,
    Ctx,
    V,
)
from segmentation_pipelines.pql.regex import regex_problem


class Strings(Walker):
    """String functions and patterns."""

    def string_op(self, name: str, s: V, args: list[ast.Expr], ctx: Ctx, n: ast.Node) -> V:
        b = self.b
        if s.kind == "events":
            return self.events_exists(s, lambda ectx, proj: self.string_op(name, proj, args, ectx, n), ctx, n)
        if s.kind == "list":
            var = b.lambda_var(ctx.lambda_depth + 1)
            inner = self.string_op(
                name, V("scalar", var, s.elem_type), args, replace(ctx, lambda_depth=ctx.lambda_depth + 1), n
            )
            return V(
                "scalar",
                b.list_any(s.expr, var, inner.expr, any(not isinstance(a, ast.Literal) for a in args)),
                "boolean",
                node=n,
            )
        if s.kind != "scalar":
            raise CompileError(f"{name} applies to a string", n)
        if name in ("like", "matches", "regexgroup"):
            if not args or not (isinstance(args[0], ast.Literal) and args[0].kind == "string"):
                raise CompileError(f"the pattern of {name} must be a string literal", n)
            pattern = str(args[0].value)
            if name == "like":
                return V("scalar", b.like(s.expr, pattern), "boolean", node=n)
            check_regex(pattern, args[0])
            if name == "matches":
                return V("scalar", b.regex_match(s.expr, pattern), "boolean", node=n)
            group = 0
            if len(args) > 1:
                if not (isinstance(args[1], ast.Literal) and args[1].kind == "integer"):
                    raise CompileError("regexGroup's group index must be an integer literal", n)
                group = int(args[1].value)
            return V("scalar", b.regex_group(s.expr, pattern, group), "string", node=n)
        case_sensitive = True
        vals = list(args)
        if len(vals) >= 2 and isinstance(vals[-1], ast.Literal) and vals[-1].kind == "boolean":
            case_sensitive = bool(vals[-1].value)
            vals = vals[:-1]
        if not vals:
            raise CompileError(f"{name}() needs a string argument", n)
        if len(vals) > 1 and name != "equals":
            raise CompileError(f"{name}() takes one string (and an optional case-sensitivity flag)", n)
        texts = [self.scalar(v, ctx).expr for v in vals]
        return V("scalar", b.string_fn(name, s.expr, texts, case_sensitive), "boolean", node=n)


def check_regex(pattern: str, node: ast.Node) -> None:
    """Refuse a pattern either engine cannot run as PQL means it (the checker's validator, pql/regex.py)."""
    problem = regex_problem(pattern)
    if problem:
        raise CompileError(problem, node)
