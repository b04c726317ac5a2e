"""How the checker writes types and expressions in its error messages."""

from __future__ import annotations

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.schema import ClassSchema


def _a(t) -> str:
    """``an integer``, ``a string``: the type with its article."""
    text = str(t)
    return ("an " if text[:1] in "aeiou" else "a ") + text


def _all_paths(klass: ClassSchema) -> list[str]:
    return [".".join(p).replace(".[]", "[]") for p in klass.fields]


def _dotted(node) -> str:
    """The written form of a path (``homeAddress.country``), or a short description of other expressions."""
    parts: list[str] = []
    while isinstance(node, ast.Member):
        parts.append(node.name)
        node = node.obj
    if isinstance(node, ast.Name):
        parts.append(node.name)
    elif isinstance(node, ast.Param):
        parts.append(f"${node.index}")
    elif isinstance(node, ast.This):
        parts.append("this")
    elif isinstance(node, ast.Up):
        parts.append("^" * node.levels + node.name)
    else:
        parts.append("(...)")
    return ".".join(reversed(parts))


def _short(node) -> str:
    if node is None:
        return "the value"
    if isinstance(node, ast.Literal):
        return _show(node)
    if isinstance(node, ast.MethodCall):
        return f"{_dotted(node.obj)}.{node.name}(...)"
    if isinstance(node, ast.Call):
        return f"{node.name}(...)"
    return _dotted(node)


def _show(node) -> str:
    if isinstance(node, ast.Literal):
        if node.kind == "string":
            return f'"{node.value}"'
        if node.kind == "boolean":
            return "true" if node.value else "false"
        return repr(node.value)
    return f"'{_short(node)}'"
