"""An in-memory tantivy index of the searchable entities of one sandbox (folders and audiences).

Text fields (``segmentName``, ``segmentDescription``, ``folderLocation``) use tantivy's ``default`` tokenizer (split
on non-alphanumerics, lower-cased, as Lucene's standard analyzer); the id fields (``segmentId``, ``folderId``,
``parentFolderId``) are exact (``raw``). A query tree of :mod:`segmentation_pipelines.search.lucene` becomes a
tantivy query; :meth:`SearchIndex.search` returns every match with its score. :meth:`SearchIndex.apply` keeps
the index current document by document (tantivy deletes by the exact ``key`` term, then adds the new version).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import tantivy

from segmentation_pipelines.search import lucene

TEXT_FIELDS = ("segmentName", "segmentDescription", "folderLocation")
ID_FIELDS = ("segmentId", "folderId", "parentFolderId")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)  # what tantivy's default tokenizer keeps
MAX_TOKEN = 40  # the default tokenizer drops longer tokens


@dataclass(frozen=True)
class Entry:
    """One searchable entity. ``folder_id``: the folder it is filed in (``root`` at the top)."""

    id: str
    namespace: str
    is_folder: bool
    name: str
    description: str
    folder_id: str  # containing folder ("root")
    folder_location: str  # "/"-joined names of the folders from the root to the containing folder


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text or "") if len(t) <= MAX_TOKEN]


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("ord", stored=True, fast=True, indexed=False)
    builder.add_text_field("key", tokenizer_name="raw")  # "f:<id>" / "a:<id>": what a change deletes by
    for name in TEXT_FIELDS:
        builder.add_text_field(name, tokenizer_name="default")
    for name in ID_FIELDS:
        builder.add_text_field(name, tokenizer_name="raw")
    return builder.build()


def _key(ident: str, is_folder: bool) -> str:
    return ("f:" if is_folder else "a:") + ident


def _wildcard_regex(pattern: str, lower: bool) -> str:
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch.lower() if lower else ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch.lower() if lower else ch))
    return "".join(out)


class SearchIndex:
    """An index over entries, kept current by :meth:`apply` (changed entries replace theirs, deleted ones go): a
    change costs the changed documents, not a rebuild. Readers get a consistent searcher: :meth:`apply` swaps it
    in after its commit."""

    def __init__(self, entries: Sequence[Entry] = ()):
        self.schema = _schema()
        self.index = tantivy.Index(self.schema)
        self._writer = self.index.writer(heap_size=15_000_000, num_threads=1)
        self._by_ord: dict[int, Entry] = {}
        self._ords: dict[tuple[str, bool], int] = {}
        self._next = 0
        self.searcher = self.index.searcher()
        self.apply(entries, ())

    @property
    def entries(self) -> list[Entry]:
        return list(self._by_ord.values())

    def get(self, ident: str, is_folder: bool) -> Entry | None:
        ord_ = self._ords.get((ident, is_folder))
        return None if ord_ is None else self._by_ord[ord_]

    def apply(self, upserts: Iterable[Entry], deletes: Iterable[tuple[str, bool]]) -> int:
        """Add or replace ``upserts``, remove ``deletes`` (``(id, is_folder)``), in one commit; the changed count."""
        # Copy on write: a concurrent reader keeps the maps and searcher it started with.
        by_ord, ords, changed, writer = dict(self._by_ord), dict(self._ords), 0, self._writer
        for ident, is_folder in deletes:
            ord_ = ords.pop((ident, is_folder), None)
            if ord_ is not None:
                writer.delete_documents_by_term("key", _key(ident, is_folder))
                del by_ord[ord_]
                changed += 1
        for entry in upserts:
            old = ords.get((entry.id, entry.is_folder))
            if old is not None:
                if by_ord[old] == entry:
                    continue
                writer.delete_documents_by_term("key", _key(entry.id, entry.is_folder))
                del by_ord[old]
            ord_, self._next = self._next, self._next + 1
            writer.add_document(self._document(ord_, entry))
            by_ord[ord_] = entry
            ords[(entry.id, entry.is_folder)] = ord_
            changed += 1
        if changed:
            writer.commit()
            self.index.reload()
            self.searcher = self.index.searcher()
        self._by_ord, self._ords = by_ord, ords
        return changed

    @staticmethod
    def _document(ord_: int, entry: Entry) -> tantivy.Document:
        doc = tantivy.Document()
        doc.add_unsigned("ord", ord_)
        doc.add_text("key", _key(entry.id, entry.is_folder))
        doc.add_text("segmentName", entry.name)
        doc.add_text("segmentDescription", entry.description)
        doc.add_text("folderLocation", entry.folder_location)
        doc.add_text("folderId", entry.id if entry.is_folder else entry.folder_id)
        doc.add_text("parentFolderId", entry.folder_id)
        if not entry.is_folder:
            doc.add_text("segmentId", entry.id)
        return doc

    def search(self, query: lucene.Query) -> list[tuple[Entry, float]]:
        """Every entry matching ``query``, with its score (unordered)."""
        if not self._by_ord:
            return []
        compiled = self._compile(query)
        searcher, by_ord = self.searcher, self._by_ord
        hits = searcher.search(compiled, limit=len(by_ord), count=False).hits
        ords = searcher.fast_field_values("ord", [address for _, address in hits])
        return [(by_ord[o], float(score)) for (score, _), o in zip(hits, ords, strict=True) if o in by_ord]

    # --- translation ------------------------------------------------------------------------------------------
    def _compile(self, node: lucene.Query) -> tantivy.Query:
        Q, Occur = tantivy.Query, tantivy.Occur
        if isinstance(node, lucene.MatchAll):
            return Q.all_query()
        if isinstance(node, lucene.Bool):
            clauses = [(Occur.Must, self._compile(c)) for c in node.must]
            clauses += [(Occur.Should, self._compile(c)) for c in node.should]
            clauses += [(Occur.MustNot, self._compile(c)) for c in node.must_not]
            if not node.must and not node.should:
                clauses.append((Occur.Must, Q.all_query()))
            return Q.boolean_query(clauses)
        if isinstance(node, lucene.Boost):
            return Q.boost_query(self._compile(node.query), node.factor)
        fields = (node.field,) if node.field else (*TEXT_FIELDS, *ID_FIELDS)
        per_field = [self._leaf(node, f) for f in fields]
        if len(per_field) == 1:
            return per_field[0]
        return Q.boolean_query([(Occur.Should, q) for q in per_field])

    def _leaf(self, node: lucene.Query, field: str) -> tantivy.Query:
        Q, schema = tantivy.Query, self.schema
        text_field = field in TEXT_FIELDS
        if isinstance(node, lucene.Regex):
            try:
                return Q.regex_query(schema, field, node.pattern)
            except ValueError as exc:
                raise lucene.QueryError(f"invalid regular expression /{node.pattern}/: {exc}") from None
        if isinstance(node, lucene.Wildcard):
            return Q.regex_query(schema, field, _wildcard_regex(node.pattern, lower=text_field))
        if isinstance(node, lucene.Fuzzy):
            words = tokens(node.text) if text_field else [node.text]
            if len(words) != 1:
                return self._words(field, words, 0)
            if node.distance == 0:
                return Q.term_query(schema, field, words[0])
            return Q.fuzzy_term_query(schema, field, words[0], distance=node.distance)
        if isinstance(node, lucene.Term | lucene.Phrase):
            if not text_field:
                return Q.term_query(schema, field, node.text)
            slop = node.slop if isinstance(node, lucene.Phrase) else 0
            return self._words(field, tokens(node.text), slop)
        raise TypeError(f"not a query leaf: {node!r}")

    def _words(self, field: str, words: list[str], slop: int) -> tantivy.Query:
        Q = tantivy.Query
        if not words:
            return Q.empty_query()
        if len(words) == 1:
            return Q.term_query(self.schema, field, words[0])
        return Q.phrase_query(self.schema, field, words, slop=slop)
