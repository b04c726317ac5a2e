"""The Lucene query subset of ``/search/*`` (Azure Cognitive Search flavour), parsed with luqum into a small tree.

Supported: ``field:expr`` over :data:`FIELDS` (no field = every field), ``AND``/``OR``/``NOT`` (also ``&&``,
``||``, ``!``), ``+``/``-``, grouping ``( )`` and ``field:( )``, wildcards ``*`` and ``?`` in a term, phrases
``"a b"``, fuzzy ``term~`` / ``term~0..2`` (default 2 edits), proximity ``"a b"~n``, regular expressions ``/.../``
and boosts ``^n``. Terms side by side (``a b``) are OR'ed (Lucene's default operator, Azure's ``searchMode=any``).
Ranges and unknown fields are refused with a :class:`QueryError` naming the position (0-based, in ``s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from luqum import tree
from luqum.exceptions import ParseError
from luqum.parser import parser

FIELDS = ("segmentName", "segmentDescription", "segmentId", "folderId", "folderLocation", "parentFolderId")
MAX_FUZZY = 2


class QueryError(ValueError):
    def __init__(self, message: str, position: int | None = None, hint: str | None = None):
        self.position = position
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{message}{where}" + (f"; {hint}" if hint else ""))


# --- the tree (what the index translates) -----------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    field: str | None  # None: every field
    text: str


@dataclass(frozen=True)
class Wildcard:
    field: str | None
    pattern: str  # with * and ?


@dataclass(frozen=True)
class Fuzzy:
    field: str | None
    text: str
    distance: int


@dataclass(frozen=True)
class Phrase:
    field: str | None
    text: str
    slop: int = 0


@dataclass(frozen=True)
class Regex:
    field: str | None
    pattern: str


@dataclass(frozen=True)
class Bool:
    must: tuple = ()
    should: tuple = ()
    must_not: tuple = ()


@dataclass(frozen=True)
class Boost:
    query: object
    factor: float


@dataclass(frozen=True)
class MatchAll:
    pass


Query = Term | Wildcard | Fuzzy | Phrase | Regex | Bool | Boost | MatchAll


def _unescape(text: str) -> str:
    out, escaped = [], False
    for ch in text:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def _has_wildcard(text: str) -> bool:
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "*?":
            return True
    return False


def normalize_operators(text: str) -> str:
    """``&&`` -> ``AND``, ``||`` -> ``OR``, a leading ``!`` -> ``NOT`` (outside phrases and regexes), for luqum.

    Positions in errors refer to this normalized text (the same as ``s`` when it uses none of these)."""
    out: list[str] = []
    i, quote = 0, None
    while i < len(text):
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in '"/' and (ch == '"' or i == 0 or text[i - 1] in " (:+-!"):
            quote = ch
            out.append(ch)
        elif text.startswith("&&", i):
            out.append(" AND ")
            i += 2
            continue
        elif text.startswith("||", i):
            out.append(" OR ")
            i += 2
            continue
        elif ch == "!" and (i == 0 or text[i - 1] in " (") and not text.startswith("!=", i):
            out.append("NOT ")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def parse(text: str) -> Query:
    """The query ``s``; an empty or blank ``s`` (or ``*``) matches everything."""
    if text is None or not text.strip() or text.strip() in ("*", "*:*"):
        return MatchAll()
    source = normalize_operators(text)
    try:
        node = parser.parse(source)
    except ParseError as exc:
        message = str(exc).replace("Syntax error in input : ", "").rstrip("!")
        raise QueryError(f"invalid Lucene query: {message}") from None
    return _Builder(source).build(node, None)


class _Builder:
    def __init__(self, source: str):
        self.source = source

    def build(self, node: tree.Item, field: str | None) -> Query:
        pos = getattr(node, "pos", None)
        if isinstance(node, tree.SearchField):
            if node.name not in FIELDS:
                raise QueryError(f"unknown field '{node.name}'", pos, f"use one of {', '.join(FIELDS)}")
            if field is not None and field != node.name:
                raise QueryError(f"field '{node.name}' inside field '{field}'", pos)
            return self.build(node.expr, node.name)
        if isinstance(node, tree.Group | tree.FieldGroup):
            return self.build(node.expr, field)
        if isinstance(node, tree.AndOperation):
            must, must_not = [], []
            for child in node.children:
                if isinstance(child, tree.Not | tree.Prohibit):
                    must_not.append(self.build(child.a, field))
                else:
                    must.append(self.build(child, field))
            return Bool(must=tuple(must) or (MatchAll(),), must_not=tuple(must_not))
        if isinstance(node, tree.OrOperation):
            return Bool(should=tuple(self.build(c, field) for c in node.children))
        if isinstance(node, tree.UnknownOperation):  # Lucene's clauses: +must, -must_not, the rest should
            must, should, must_not = [], [], []
            for child in node.children:
                if isinstance(child, tree.Plus):
                    must.append(self.build(child.a, field))
                elif isinstance(child, tree.Prohibit):
                    must_not.append(self.build(child.a, field))
                else:
                    should.append(self.build(child, field))
            if not must and not should:
                must = [MatchAll()]
            return Bool(must=tuple(must), should=tuple(should), must_not=tuple(must_not))
        if isinstance(node, tree.Not | tree.Prohibit):
            return Bool(must=(MatchAll(),), must_not=(self.build(node.a, field),))
        if isinstance(node, tree.Plus):
            return Bool(must=(self.build(node.a, field),))
        if isinstance(node, tree.Boost):
            return Boost(self.build(node.expr, field), float(node.force))
        if isinstance(node, tree.Fuzzy):
            if not isinstance(node.term, tree.Word) or _has_wildcard(node.term.value):
                raise QueryError("fuzzy '~' applies to a single term without wildcards", pos)
            return Fuzzy(field, _unescape(node.term.value), self._distance(node))
        if isinstance(node, tree.Proximity):
            return Phrase(field, _unescape(node.term.value[1:-1]), self._slop(node))
        if isinstance(node, tree.Phrase):
            return Phrase(field, _unescape(node.value[1:-1]))
        if isinstance(node, tree.Regex):
            return Regex(field, node.value[1:-1])
        if isinstance(node, tree.Word):
            if node.value in ("AND", "OR", "NOT"):
                raise QueryError(f"operator '{node.value}' needs a term on each side", pos)
            if _has_wildcard(node.value):
                return Wildcard(field, node.value)
            return Term(field, _unescape(node.value))
        if isinstance(node, tree.Range | tree.From | tree.To):
            raise QueryError("range queries are not supported by segment search", pos)
        raise QueryError(f"'{node}' is not supported by segment search", pos)

    def _distance(self, node: tree.Fuzzy) -> int:
        written = self.source[node.pos : node.pos + node.size].rstrip()
        if written.endswith("~"):
            return MAX_FUZZY  # Lucene's default: up to 2 edits
        return self._whole(node.degree, "fuzzy distance", node.pos, maximum=MAX_FUZZY)

    def _slop(self, node: tree.Proximity) -> int:
        written = self.source[node.pos : node.pos + node.size].rstrip()
        if written.endswith("~"):
            return 1
        return self._whole(node.degree, "proximity", node.pos, maximum=None)

    @staticmethod
    def _whole(value, what: str, pos: int, maximum: int | None) -> int:
        number = Decimal(str(value))
        if number != number.to_integral_value() or number < 0 or (maximum is not None and number > maximum):
            limit = f"0..{maximum}" if maximum is not None else "a whole number >= 0"
            raise QueryError(f"{what} '~{value}' must be {limit}", pos)
        return int(number)
