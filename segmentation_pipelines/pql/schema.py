"""The union schema the checker and the compilers resolve field paths against.

Built from the profile store's schema dicts (see ``docs/data-model.md``): dotted paths to type names, with ``[]``
marking the element of an array (``productListItems[].SKU``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TYPE_NAMES = frozenset(
    {"string", "integer", "number", "boolean", "date", "date-time", "object", "array", "map"}
)


@dataclass(frozen=True)
class FieldInfo:
    """One field: its path (``("commerce", "order", "priceTotal")``; array elements as ``"[]"``) and type name."""

    path: tuple[str, ...]
    type: str

    @property
    def dotted(self) -> str:
        return ".".join(self.path).replace(".[]", "[]")


def _split(dotted: str) -> tuple[str, ...]:
    parts: list[str] = []
    for piece in dotted.split("."):
        name = piece.rstrip("[]")
        if name:
            parts.append(name)
        parts.extend("[]" for _ in range(piece[len(name) :].count("[]")))
    return tuple(parts)


@dataclass(frozen=True)
class ClassSchema:
    """The fields of one XDM class (profile or experience event)."""

    fields: Mapping[tuple[str, ...], str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, types: Mapping[str, str]) -> ClassSchema:
        out: dict[tuple[str, ...], str] = {}
        for dotted, type_name in types.items():
            path = _split(dotted)
            out[path] = type_name
            # Parents are objects (or arrays, when followed by []), even when the dict omits them.
            for i in range(1, len(path)):
                parent = path[:i]
                out.setdefault(parent, "array" if path[i] == "[]" else "object")
        return cls(out)

    def lookup(self, path: tuple[str, ...]) -> str | None:
        """Type of ``path``, or None when no such field exists."""
        return self.fields.get(tuple(path))

    def children(self, path: tuple[str, ...]) -> dict[str, str]:
        """Direct child fields of an object path (of the element, for ``path + ("[]",)``)."""
        n = len(path)
        return {p[n]: t for p, t in self.fields.items() if len(p) == n + 1 and p[:n] == tuple(path)}


@dataclass(frozen=True)
class Schema:
    """Profile fields (the implicit ``$1``) and event fields (the elements of ``xEvent``)."""

    profile: ClassSchema = field(default_factory=ClassSchema)
    event: ClassSchema = field(default_factory=ClassSchema)

    @classmethod
    def from_dicts(
        cls, profile: Mapping[str, str] | None = None, event: Mapping[str, str] | None = None
    ) -> Schema:
        return cls(ClassSchema.from_dict(profile or {}), ClassSchema.from_dict(event or {}))
