"""Identity stitching: the connected components of the graph whose nodes are identities (namespace + id) and whose
edges join the identities that appear together in one profile fragment or event.

Identities get dense integer node numbers in ``(namespace, id)`` order (SQL in DuckDB); the graph of nodes and the
identity sets (rows) that join them goes to ``scipy.sparse.csgraph.connected_components`` in one pass (no Python
loop over rows; the former SQL min-label propagation took a round of joins per step and 4 rounds at 1M profiles).
A node's label is the smallest node of its component, so the profile id, derived from that smallest identity, does not
change when unrelated data arrives. Components with more identities than the guardrail (50) are excluded from
segmentation and reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from segmentation_pipelines.duck import sql_list, sql_str
from segmentation_pipelines.profiles import ranges

MAX_COMPONENT_SIZE = 50  # AEP guardrail: identities per profile graph
# Rows per range file of the graph (~200 files at 3.3M identities): a batch that links two people rewrites the
# one or two files holding each, not the whole graph.
PART_ROWS = 16384


@dataclass
class IdentityGraphStats:
    identities: int
    components: int
    profiles: int
    excluded_components: int
    excluded_identities: int
    largest_component: int
    rounds: int
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def profile_id_sql(ns: str, ident: str) -> str:
    """SQL for the stable profile id derived from a component's smallest identity."""
    return f"md5({ns} || ':' || {ident})"


EMPTY_IDENTITY_MAPS = (
    'SELECT NULL::STRUCT("key" VARCHAR, "value" STRUCT(id VARCHAR, "primary" BOOLEAN)[])[] AS identityMap '
    "WHERE false"
)


def _occurrences(con, sources: list[str], table: str) -> None:
    """``table``: one row ``(r, ns, id, p)`` per identity of each distinct identity set of ``sources``."""
    union = " UNION ALL ".join(f"SELECT identityMap FROM {s}" for s in sources) or EMPTY_IDENTITY_MAPS
    # Rows repeat the same identity set many times (every event of a person): stitch each distinct set once.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {table} AS
        WITH sets AS (SELECT row_number() OVER () AS r, identityMap FROM (SELECT DISTINCT identityMap FROM ({union})))
        SELECT r, ns, v.id AS id, coalesce(v."primary", false) AS p FROM (
            SELECT r, e.key AS ns, unnest(e.value) AS v FROM (SELECT r, unnest(identityMap) AS e FROM sets))"""
    )


def _components(con, occurrences: str) -> None:
    """``id_labels(node, l)``: ``l`` the smallest node of the node's component, for every node of ``id_nodes``
    (numbered 1..n), the groups ``r`` of ``occurrences(r, node)`` joining their nodes. The components are those of
    the bipartite graph node-group, found by ``scipy.sparse.csgraph.connected_components`` (one linear pass, where
    label propagation in SQL took a join per round)."""
    import numpy as np
    import pyarrow as pa
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(con.execute("SELECT count(*) FROM id_nodes").fetchone()[0])
    occ = con.execute(
        f"SELECT (dense_rank() OVER (ORDER BY r) - 1)::BIGINT AS g, (node - 1)::BIGINT AS v FROM {occurrences}"
    ).fetchnumpy()
    groups, nodes = np.asarray(occ.pop("g")), np.asarray(occ.pop("v"))
    size = n + (int(groups.max()) + 1 if len(groups) else 0)
    graph = coo_matrix((np.ones(len(nodes), dtype=np.int8), (nodes, groups + n)), shape=(size, size)).tocsr()
    del groups, nodes
    _, labels = connected_components(graph, directed=False)
    del graph
    labels = labels[:n]
    # Nodes are visited in increasing order: a label's first index is its component's smallest node.
    uniq, first = np.unique(labels, return_index=True)
    root = np.empty(int(uniq.max()) + 1 if len(uniq) else 0, dtype=np.int64)
    root[uniq] = first
    table = pa.table({"node": np.arange(1, n + 1, dtype=np.int64), "l": root[labels] + 1})
    con.register("id_labels_arrow", table)
    con.execute("CREATE OR REPLACE TEMP TABLE id_labels AS SELECT * FROM id_labels_arrow")
    con.unregister("id_labels_arrow")


def _label_components(con, occurrences: str, max_size: int) -> int:
    """From ``id_nodes(ns, id, p, node)`` (nodes numbered in ``(ns, id)`` order) and ``occurrences(r, node)``: the
    temp table ``stitched`` with the identity graph's columns. Returns the rounds (1: one pass)."""
    _components(con, occurrences)
    con.execute(f"DROP TABLE IF EXISTS {occurrences}")
    rounds = 1
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE stitched AS
        WITH lab AS (
            SELECT n.ns, n.id, n.p, coalesce(lb.l, n.node) AS label FROM id_nodes n LEFT JOIN id_labels lb USING (node)
        ), sized AS (SELECT *, count(*) OVER (PARTITION BY label) AS component_size FROM lab)
        SELECT s.ns AS namespace, s.id, s.p AS "primary", {profile_id_sql("root.ns", "root.id")} AS profile_id,
               s.component_size, s.component_size > {int(max_size)} AS excluded
        FROM sized s JOIN id_nodes root ON root.node = s.label"""
    )
    for table in ("id_labels", "id_nodes"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return rounds


def build_identity_graph(con, sources: list[str], version: Path, max_size: int = MAX_COMPONENT_SIZE):
    """Compute components over the ``identityMap`` column of every SQL relation in ``sources``; write
    ``namespace, id, primary, profile_id, component_size, excluded`` as range files into ``version``.
    Returns (stats, parts)."""
    started = time.perf_counter()
    _occurrences(con, sources, "id_occ")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE id_nodes AS
        SELECT ns, id, bool_or(p) AS p, row_number() OVER (ORDER BY ns, id) AS node FROM id_occ GROUP BY ns, id"""
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE id_occ_nodes AS SELECT o.r, n.node FROM id_occ o JOIN id_nodes n USING (ns, id)"
    )
    con.execute("DROP TABLE id_occ")
    rounds = _label_components(con, "id_occ_nodes", max_size)
    parts = ranges.write_base(con, version, "SELECT * FROM stitched", PART_ROWS)
    return graph_stats(con, "stitched", rounds, started), parts


def restitch_identity_graph(
    con,
    old_version: Path,
    old_parts: list[dict],
    sources: list[str],
    version: Path,
    affected_path: str,
    max_size: int = MAX_COMPONENT_SIZE,
    old_stats: dict | None = None,
):
    """Add the identity sets of ``sources`` (new batches) to the graph of ``old_version`` (range files
    ``old_parts``): only the components they touch are stitched again, each existing one represented as a star
    to its root (its identities are connected already), so the result equals a full rebuild. Writes the graph
    into ``version``: the range files holding none of the touched components are hard-linked, the others
    rewritten without them, the re-stitched components added as one delta file. Writes to ``affected_path``
    every identity of the re-stitched components with ``old_profile_id``/``old_excluded`` (NULL for a new
    identity): what the events and merged profiles must follow. With ``old_stats`` (the stats of the old graph)
    the new stats are derived from them and the re-stitched part, not counted over the whole graph.
    Returns (stats, parts)."""
    started = time.perf_counter()
    counted = ("identities", "components", "profiles", "excluded_components", "excluded_identities")
    if old_stats is not None and not {*counted, "largest_component"} <= set(old_stats):
        old_stats = None  # a manifest written before these stats: count them
    Path(affected_path).parent.mkdir(parents=True, exist_ok=True)

    def read(parts: list[dict]) -> str:
        return f"read_parquet({sql_list(ranges.files(old_version, parts))})"

    _occurrences(con, sources, "id_occ")
    # The known identities of the new sets: one scan of the graph (the only one over every file).
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE known AS
        SELECT o.* FROM {read(old_parts)} o SEMI JOIN (SELECT DISTINCT ns, id FROM id_occ) n
          ON o.namespace = n.ns AND o.id = n.id"""
    )
    # A set whose identities are all known, in one component, with no new primary flag changes nothing (events
    # and fragments of known people, the common case): leave it out, so that its component is not re-stitched.
    con.execute(
        """DELETE FROM id_occ WHERE r IN (
            SELECT o.r FROM id_occ o LEFT JOIN known k ON k.namespace = o.ns AND k.id = o.id GROUP BY o.r
            HAVING count(k.id) = count(*) AND count(DISTINCT k.profile_id) = 1
               AND NOT bool_or(o.p AND NOT k."primary"))"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE touched AS
        SELECT DISTINCT k.profile_id FROM known k SEMI JOIN id_occ o ON o.ns = k.namespace AND o.id = k.id"""
    )
    if con.execute("SELECT count(*) FROM id_occ").fetchone()[0] == 0:
        parts = ranges.step(con, version, old_version, old_parts, "touched", None)  # links every file
        con.execute(
            f"""COPY (SELECT *, profile_id AS old_profile_id, excluded AS old_excluded FROM known WHERE false)
                TO {sql_str(affected_path)} (FORMAT PARQUET)"""
        )
        if old_stats is not None:
            kept = {k: int(old_stats[k]) for k in (*counted, "largest_component")}
            return IdentityGraphStats(
                **kept, rounds=0, seconds=round(time.perf_counter() - started, 3)
            ), parts
        return _stats_of(con, version, parts, 0, started), parts
    ids = [r[0] for r in con.execute("SELECT profile_id FROM touched ORDER BY 1").fetchall()]
    # Every identity of the touched components, read from the files whose range can hold them.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE old_part AS
        SELECT o.* FROM {read(ranges.touched(old_parts, ids) or old_parts[:1])} o SEMI JOIN touched t USING (profile_id)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE id_nodes AS
        SELECT ns, id, bool_or(p) AS p, row_number() OVER (ORDER BY ns, id) AS node FROM (
            SELECT ns, id, p FROM id_occ UNION ALL SELECT namespace, id, "primary" FROM old_part)
        GROUP BY ns, id"""
    )
    # Groups: each new identity set (r > 0) and each touched component (r = -component number), as stars.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE id_occ_nodes AS
        SELECT o.r, n.node FROM id_occ o JOIN id_nodes n USING (ns, id)
        UNION ALL
        SELECT -dense_rank() OVER (ORDER BY op.profile_id) AS r, n.node
        FROM old_part op JOIN id_nodes n ON n.ns = op.namespace AND n.id = op.id"""
    )
    con.execute("DROP TABLE id_occ")
    rounds = _label_components(con, "id_occ_nodes", max_size)
    con.execute(
        f"""COPY (SELECT s.*, o.profile_id AS old_profile_id, o.excluded AS old_excluded
            FROM stitched s LEFT JOIN old_part o ON o.namespace = s.namespace AND o.id = s.id)
            TO {sql_str(affected_path)} (FORMAT PARQUET)"""
    )
    parts = ranges.step(con, version, old_version, old_parts, "touched", "SELECT * FROM stitched", PART_ROWS)
    if old_stats is not None:
        # The re-stitched components replace the touched ones whole (components only ever merge), so every count
        # moves by (stitched - old part) and the largest component is the larger of the two.
        before, after = graph_stats(con, "old_part", 0, started), graph_stats(con, "stitched", 0, started)
        out = {k: int(old_stats[k]) - getattr(before, k) + getattr(after, k) for k in counted}
        out["largest_component"] = max(int(old_stats["largest_component"]), after.largest_component)
        return IdentityGraphStats(
            **out, rounds=rounds, seconds=round(time.perf_counter() - started, 3)
        ), parts
    return _stats_of(con, version, parts, rounds, started), parts


def _stats_of(con, version: Path, parts: list[dict], rounds: int, started: float):
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW graph_all AS SELECT * FROM read_parquet({sql_list(ranges.files(version, parts))})"
    )
    return graph_stats(con, "graph_all", rounds, started)


def graph_stats(con, relation: str, rounds: int, started: float) -> IdentityGraphStats:
    row = con.execute(
        # One aggregation by component (exclusion is per component), not three DISTINCT counts over every identity.
        f"""SELECT coalesce(sum(n), 0), count(*), count(*) FILTER (WHERE NOT ex), count(*) FILTER (WHERE ex),
                  coalesce(sum(n) FILTER (WHERE ex), 0), coalesce(max(size), 0) FROM (
                SELECT count(*) AS n, bool_or(excluded) AS ex, max(component_size) AS size FROM {relation}
                GROUP BY profile_id)"""
    ).fetchone()
    return IdentityGraphStats(
        identities=int(row[0]),
        components=int(row[1]),
        profiles=int(row[2]),
        excluded_components=int(row[3]),
        excluded_identities=int(row[4]),
        largest_component=int(row[5]),
        rounds=rounds,
        seconds=round(time.perf_counter() - started, 3),
    )
