"""The PQL checker: resolves every name against the union schema, infers types, rejects what cannot run.

One module per seam: ``result`` (what it gives the compilers), ``base`` (scopes, schema types, known names,
dispatch), ``names`` (frames and names), ``scalars`` (literals, operators, calls), ``lists`` (methods, lambdas,
comprehensions), ``strings``, ``events`` (time, ``occurs``, ``chain``), ``messages`` (how errors write types and
expressions), ``checking`` (``check`` itself).

``check(query_or_text, schema, resolve_audience=None, *, allow_non_boolean=False, dependencies=None,
self_id=None) -> CheckedQuery``.

What a :class:`CheckedQuery` gives the compilers (stable API):

* ``.query``: the :class:`ast.Query`; ``.result_type``: :class:`PQLType` of the whole expression.
* ``.type_of(node) -> PQLType`` for every expression node (``any`` when unknown).
* ``.resolution(node) -> Resolution | None`` for every ``Name``, ``Member``, ``Up``, ``This`` and ``Param`` node
  that denotes a path. ``Resolution.kind`` is one of

  - ``"profile"``: a profile field (``path`` below the profile; ``()`` for ``$1`` / the lambda-head parameter);
  - ``"xevent"``: the ``xEvent`` array itself (``path == ()``) or a field flattened through all events;
  - ``"element"``: a field (or, with ``path == ()``, the element itself, i.e. ``this``) of the element of an
    anonymous element scope; ``binder`` is that scope's node: a :class:`ast.Filter` (``arr[cond]``), a
    :class:`ast.MethodCall` (per-element method argument: ``filter exists map groupBy topN bottomN sum average min
    max count``; for ``.map`` after ``groupBy`` the element is the group), or a :class:`ast.ChainStep`
    (``WHAT``/``WHERE``: the event);
  - ``"variable"``: a named variable and a path below it; ``binder`` is the :class:`ast.VarDecl` (select, exists,
    forall, aggregation-over), the :class:`ast.Lambda` or the :class:`ast.Let` that introduced ``var``;
  - ``"value"``: a field of a computed value (``x.head().core``): ``path == (name,)``, ``binder is None``.

  ``schema_class`` (``"profile"``/``"event"``/None) and ``schema_path`` (with ``"[]"`` for array elements) say
  where in the schema the value lives, when known.
* ``.coercion(node) -> PQLType | None``: for a literal the compiler must convert (``"true"`` compared with a
  boolean field -> boolean; ISO ``"2020-01-01"`` compared with a date).
* ``.referenced_audiences`` (canonical ids, in order), ``.profile_fields`` / ``.event_fields`` (dotted schema
  paths read, ``[]`` after arrays), ``.warnings`` (``(message, (line, column))``: valid but questionable, e.g. a
  list compared existentially with a scalar).
"""

from __future__ import annotations

from segmentation_pipelines.pql.checker.base import ALL_METHODS, FUNCTIONS
from segmentation_pipelines.pql.checker.checking import check
from segmentation_pipelines.pql.checker.result import CheckedQuery, Resolution

__all__ = ["ALL_METHODS", "FUNCTIONS", "CheckedQuery", "Resolution", "check"]
