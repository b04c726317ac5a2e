"""What the checker gives the compilers: :class:`CheckedQuery` and the :class:`Resolution` of each path node (see
the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal as L

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql import types as T
from segmentation_pipelines.pql.types import PQLType


@dataclass(frozen=True)
class Resolution:
    """What a path node denotes (see the module docstring)."""

    kind: L["profile", "xevent", "element", "variable", "value"]
    path: tuple[str, ...] = ()
    var: str | None = None
    binder: ast.Node | None = field(default=None, compare=False)
    schema_class: str | None = None
    schema_path: tuple[str, ...] | None = None

    def child(self, name: str, schema_path: tuple[str, ...] | None) -> Resolution:
        return Resolution(
            self.kind, self.path + (name,), self.var, self.binder, self.schema_class, schema_path
        )


@dataclass
class CheckedQuery:
    query: ast.Query
    result_type: PQLType
    referenced_audiences: tuple[str, ...]
    profile_fields: set[str]
    event_fields: set[str]
    warnings: list[tuple[str, ast.Pos]]
    _types: dict[int, PQLType] = field(repr=False)
    _resolutions: dict[int, Resolution] = field(repr=False)
    _coercions: dict[int, PQLType] = field(repr=False)

    def type_of(self, node: ast.Node) -> PQLType:
        return self._types.get(id(node), T.ANY)

    def resolution(self, node: ast.Node) -> Resolution | None:
        return self._resolutions.get(id(node))

    def coercion(self, node: ast.Node) -> PQLType | None:
        return self._coercions.get(id(node))

    @property
    def fields_read(self) -> dict[str, list[str]]:
        return {"profile": sorted(self.profile_fields), "event": sorted(self.event_fields)}
