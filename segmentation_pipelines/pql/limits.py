"""The one set of PQL size limits, shared by the parser, pql/json, the checker and both compilers.

A definition within these limits parses, checks, compiles and renders on both engines without coming near Python's
recursion limit, even under a deep caller stack (a Dagster run): the deepest step, sqlglot rendering the SQL, takes
about 11 Python frames per nesting level (measured), so ``MAX_DEPTH`` levels take ~600 of the default 1000.
``tests/security/test_definition_limits.py`` checks that margin.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 50  # nesting levels of the syntax tree (brackets in pql/text)
MAX_LENGTH = 1_000_000  # characters of a pql/text expression
MAX_CHAIN_STEPS = 6  # steps of one event chain (CHAIN(...))
MAX_JSON_DEPTH = 4 * MAX_DEPTH  # nesting of a pql/json tree (a syntax-tree level is a few JSON levels)


def children(node: Any) -> list:
    """The syntax-tree children of ``node`` (fields holding nodes, tuples of nodes, object entries)."""
    from segmentation_pipelines.pql import ast

    out = []
    for value in node.__dict__.values():
        if isinstance(value, ast.Node):
            out.append(value)
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, ast.Node):
                    out.append(item)
                elif isinstance(item, tuple):  # object entries
                    out.extend(x for x in item if isinstance(x, ast.Node))
    return out


def too_deep(query: Any) -> Any | None:
    """The first node nested deeper than ``MAX_DEPTH``, or None (iterative: no recursion of its own)."""
    stack = [(query, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return node
        stack.extend((child, depth + 1) for child in children(node))
    return None


def json_too_deep(value: Any) -> bool:
    """Whether a decoded JSON value nests deeper than ``MAX_JSON_DEPTH`` (iterative)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


DEPTH_MESSAGE = f"the expression is nested too deeply (more than {MAX_DEPTH} levels); simplify it"
