"""References between audiences (``inSegment("<id>")``), in one place: what a query references, the order in which
definitions are evaluated, and cycles.

The order is a topological sort (the standard library's ``graphlib``) cut into *stages*: each stage references only
earlier stages, and a stage is sorted by id, so the order is the same in every process that computes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from graphlib import CycleError, TopologicalSorter

from segmentation_pipelines.pql import ast


class ReferenceCycle(ValueError):
    """``inSegment`` references form a cycle; ``cycle`` is one of them, first node repeated at the end."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__(f"inSegment references form a cycle: {' -> '.join(cycle)}")


def _is_reference(node: ast.Node) -> bool:
    return (
        isinstance(node, ast.Call)
        and node.name.lower() == "insegment"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Literal)
        and node.args[0].kind == "string"
    )


def referenced_audiences(query: ast.Node) -> set[str]:
    """Audience ids (or names, before :func:`canonical_references`) of every ``inSegment("...")`` in the query."""
    return {str(node.args[0].value) for node in query.walk() if _is_reference(node)}  # type: ignore[attr-defined]


def canonical_references(query: ast.Node, resolve: Callable[[str], str | None]) -> ast.Node:
    """The tree with every ``inSegment("<name or id>")`` rewritten to ``resolve``'s audience id; unknown
    references stay as written (the checker reports them with their position)."""

    def rewrite(node: ast.Node) -> ast.Node:
        if not _is_reference(node):
            return node
        literal = node.args[0]  # type: ignore[attr-defined]
        resolved = resolve(str(literal.value))
        if resolved is None or resolved == literal.value:
            return node
        return dataclasses.replace(node, args=(dataclasses.replace(literal, value=resolved),))

    return query.transform(rewrite)


def stages(ids: Iterable[str], dependencies: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """``ids`` in dependency stages: each stage depends only on earlier ones (dependencies outside ``ids`` are
    ignored: they are evaluated elsewhere); each stage sorted by id. Raises :class:`ReferenceCycle`."""
    wanted = set(ids)
    sorter = TopologicalSorter({i: set(dependencies.get(i, ())) & wanted for i in wanted})
    try:
        sorter.prepare()
    except CycleError as exc:
        raise ReferenceCycle(list(exc.args[1])[::-1]) from None
    out: list[list[str]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        out.append(ready)
        sorter.done(*ready)
    return out


def evaluation_order(ids: Iterable[str], dependencies: Mapping[str, Iterable[str]]) -> list[str]:
    """``ids`` so that every definition comes after the ones it references: the stages, concatenated."""
    return [i for stage in stages(ids, dependencies) for i in stage]


def find_cycle(
    start: str,
    references: Iterable[str],
    dependencies: Mapping[str, Iterable[str]] | Callable[[str], Iterable[str]],
) -> list[str] | None:
    """A path ``start -> ... -> start`` if ``start`` referenced ``references`` (the others referencing what
    ``dependencies`` says), or None. Used before a write, to refuse the definition that would close a cycle."""
    deps = dependencies if callable(dependencies) else (lambda n: dependencies.get(n, ()))  # type: ignore[union-attr]
    stack: list[tuple[str, list[str]]] = [(r, [start, r]) for r in references]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == start:
            return path
        if node in seen:
            continue
        seen.add(node)
        stack.extend((nxt, [*path, nxt]) for nxt in deps(node) or ())
    return None
