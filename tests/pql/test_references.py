"""References between audiences in one place (pql/references.py), on the one traversal of the tree (ast.Node)."""

from __future__ import annotations

import pytest

from segmentation_pipelines.pql import ast, parse
from segmentation_pipelines.pql.references import (
    ReferenceCycle,
    canonical_references,
    evaluation_order,
    find_cycle,
    referenced_audiences,
    stages,
)

QUERY = 'inSegment("vip") and not(inSegment("churn")) and person.age > 3 or inSegment("VIP")'


def test_walk_is_pre_order_and_find_all_filters():
    query = parse('inSegment("a") and person.x > 1')
    kinds = [type(n).__name__ for n in query.walk()]
    assert kinds[:4] == ["Query", "Binary", "Call", "Literal"]
    assert [c.name for c in query.find_all(ast.Call)] == ["inSegment"]


def test_walk_has_no_depth_limit():
    node: ast.Node = ast.Literal(True, "boolean")
    for _ in range(20_000):
        node = ast.Unary("not", node)
    assert sum(1 for _ in node.walk()) == 20_001


def test_referenced_audiences_and_their_rewrite():
    query = parse(QUERY)
    assert referenced_audiences(query) == {"vip", "churn", "VIP"}
    ids = {"vip": "id-1", "VIP": "id-1", "churn": "id-2"}
    rewritten = canonical_references(query, ids.get)
    assert referenced_audiences(rewritten) == {"id-1", "id-2"}
    assert (
        canonical_references(query, lambda ref: None) is query
    )  # nothing resolved: the same tree, not a copy


def test_stages_are_stable_and_ignore_outside_references():
    deps = {"c": ["a"], "b": ["a", "outside"], "a": [], "d": ["b", "c"]}
    assert stages(["d", "c", "b", "a"], deps) == [["a"], ["b", "c"], ["d"]]
    assert evaluation_order(["d", "c", "b", "a"], deps) == ["a", "b", "c", "d"]


def test_a_cycle_is_named():
    with pytest.raises(ReferenceCycle) as err:
        stages(["a", "b", "c"], {"a": ["b"], "b": ["c"], "c": ["a"]})
    cycle = err.value.cycle
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    for here, there in zip(cycle, cycle[1:], strict=False):  # each one references the next
        assert there in {"a": ["b"], "b": ["c"], "c": ["a"]}[here]


def test_find_cycle_before_a_write():
    graph = {"b": ["c"], "c": ["a"]}
    assert find_cycle("a", ["b"], graph) == ["a", "b", "c", "a"]
    assert find_cycle("a", ["c"], graph.get) == ["a", "c", "a"]
    assert find_cycle("a", ["x"], graph) is None
