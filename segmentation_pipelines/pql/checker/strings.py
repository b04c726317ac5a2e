"""String methods: tests with their case-sensitivity flag, ``equals``, ``matches`` and ``regexGroup`` patterns."""

from __future__ import annotations

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import types as T
from segmentation_pipelines.pql.checker.base import (
    CheckerBase,
)
from segmentation_pipelines.pql.regex import regex_problem


class Strings(CheckerBase):
    """String methods."""

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
