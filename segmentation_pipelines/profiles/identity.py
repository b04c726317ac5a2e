"""Identity stitching: the connected components of the graph whose nodes are identities (namespace + id) and whose
edges join the identities that appear together in one profile fragment or event.

Everything runs as SQL in DuckDB (no Python loop over rows): identities get dense integer node numbers in
``(namespace, id)`` order, each row's identities are joined in a star to its smallest node, and components are
found by min-label propagation with pointer jumping (``label := label[label]``) until no label changes, which takes
a number of rounds logarithmic in the component diameter for the shapes that occur in practice. A node's final
label is the smallest node of its component, so the profile id, derived from that smallest identity, does not
change when unrelated data arrives. Components with more identities than the guardrail (50) are excluded from
segmentation and reported.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

MAX_COMPONENT_SIZE = 50  # AEP guardrail: identities per profile graph


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


def _propagate(con) -> int:
    """Min-label propagation with pointer jumping over ``id_edges(a, b)`` (both directions): ``id_labels(node,
    l)`` with ``l`` the smallest node of the node's component. Returns the number of rounds."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE id_labels AS
        SELECT a AS node, least(a, min(b)) AS l FROM id_edges GROUP BY a"""
    )
    rounds = 0
    while True:
        rounds += 1
        con.execute(
            """CREATE OR REPLACE TEMP TABLE id_step AS
            SELECT lb.node, least(lb.l, coalesce(m.l, lb.l)) AS l FROM id_labels lb
            LEFT JOIN (SELECT e.a AS node, min(x.l) AS l FROM id_edges e JOIN id_labels x ON x.node = e.b
                       GROUP BY e.a) m USING (node)"""
        )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE id_jump AS
            SELECT s.node, least(s.l, p.l) AS l FROM id_step s JOIN id_step p ON p.node = s.l"""
        )
        changed = con.execute(
            "SELECT count(*) FROM id_jump j JOIN id_labels lb USING (node) WHERE j.l <> lb.l"
        ).fetchone()[0]
        con.execute("CREATE OR REPLACE TEMP TABLE id_labels AS SELECT * FROM id_jump")
        if changed == 0:
            return rounds


def _label_components(con, max_size: int) -> int:
    """From ``id_nodes(ns, id, p, node)`` (nodes numbered in ``(ns, id)`` order) and ``id_edges``: the temp table
    ``stitched`` with the identity graph's columns. Returns the rounds of propagation."""
    rounds = _propagate(con)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE stitched AS
        WITH lab AS (
            SELECT n.ns, n.id, n.p, coalesce(lb.l, n.node) AS label FROM id_nodes n LEFT JOIN id_labels lb USING (node)
        ), sized AS (SELECT *, count(*) OVER (PARTITION BY label) AS component_size FROM lab)
        SELECT s.ns AS namespace, s.id, s.p AS "primary", {profile_id_sql("root.ns", "root.id")} AS profile_id,
               s.component_size, s.component_size > {int(max_size)} AS excluded
        FROM sized s JOIN id_nodes root ON root.node = s.label"""
    )
    for table in ("id_edges", "id_labels", "id_step", "id_jump", "id_nodes"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return rounds


def _star_edges(con, occurrences: str) -> None:
    """``id_edges``: each group ``r`` of ``occurrences(r, node)`` joined in a star to its smallest node."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE id_edges AS
        WITH star AS (SELECT DISTINCT min(node) OVER (PARTITION BY r) AS a, node AS b FROM {occurrences})
        SELECT a, b FROM star WHERE a <> b UNION SELECT b, a FROM star WHERE a <> b"""
    )


def build_identity_graph(con, sources: list[str], out_path: str, max_size: int = MAX_COMPONENT_SIZE):
    """Compute components over the ``identityMap`` column of every SQL relation in ``sources``; write
    ``namespace, id, primary, profile_id, component_size, excluded`` to ``out_path``."""
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
    _star_edges(con, "id_occ_nodes")
    con.execute("DROP TABLE id_occ_nodes")
    rounds = _label_components(con, max_size)
    con.execute(f"COPY (SELECT * FROM stitched ORDER BY profile_id) TO '{out_path}' (FORMAT PARQUET)")
    return graph_stats(con, "stitched", rounds, started)


def restitch_identity_graph(
    con,
    old_path: str,
    sources: list[str],
    out_path: str,
    affected_path: str,
    max_size: int = MAX_COMPONENT_SIZE,
):
    """Add the identity sets of ``sources`` (new batches) to the graph in ``old_path``: only the components they
    touch are stitched again, each existing one represented as a star to its root (its identities are connected
    already), so the result equals a full rebuild. Writes the whole graph to ``out_path`` and, to
    ``affected_path``, every identity of the re-stitched components with ``old_profile_id``/``old_excluded``
    (NULL for a new identity): what the events and merged profiles must follow."""
    started = time.perf_counter()
    con.execute(f"CREATE OR REPLACE TEMP VIEW old_ids AS SELECT * FROM read_parquet('{old_path}')")
    _occurrences(con, sources, "id_occ")
    # A set whose identities are all known, in one component, with no new primary flag changes nothing (events
    # and fragments of known people, the common case): leave it out, so that its component is not re-stitched.
    con.execute(
        """DELETE FROM id_occ WHERE r IN (
            SELECT o.r FROM id_occ o LEFT JOIN old_ids k ON k.namespace = o.ns AND k.id = o.id GROUP BY o.r
            HAVING count(k.id) = count(*) AND count(DISTINCT k.profile_id) = 1
               AND NOT bool_or(o.p AND NOT k."primary"))"""
    )
    if con.execute("SELECT count(*) FROM id_occ").fetchone()[0] == 0:
        os.link(old_path, out_path)  # nothing changes: the same file, no rewrite
        con.execute(
            f"""COPY (SELECT *, profile_id AS old_profile_id, excluded AS old_excluded FROM old_ids WHERE false)
                TO '{affected_path}' (FORMAT PARQUET)"""
        )
        return graph_stats(con, "old_ids", 0, started)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE touched AS
        SELECT DISTINCT o.profile_id FROM (SELECT DISTINCT ns, id FROM id_occ) n
        JOIN old_ids o ON o.namespace = n.ns AND o.id = n.id"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE old_part AS
        SELECT o.* FROM old_ids o SEMI JOIN touched t USING (profile_id)"""
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
    _star_edges(con, "id_occ_nodes")
    con.execute("DROP TABLE id_occ_nodes")
    rounds = _label_components(con, max_size)
    con.execute(
        f"""COPY (SELECT s.*, o.profile_id AS old_profile_id, o.excluded AS old_excluded
            FROM stitched s LEFT JOIN old_part o ON o.namespace = s.namespace AND o.id = s.id)
            TO '{affected_path}' (FORMAT PARQUET)"""
    )
    con.execute(
        f"""COPY (SELECT * FROM old_ids o ANTI JOIN touched t USING (profile_id) UNION ALL SELECT * FROM stitched)
            TO '{out_path}' (FORMAT PARQUET)"""
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW stitched_all AS SELECT * FROM read_parquet('{out_path}')")
    return graph_stats(con, "stitched_all", rounds, started)


def graph_stats(con, relation: str, rounds: int, started: float) -> IdentityGraphStats:
    row = con.execute(
        f"""SELECT count(*), count(DISTINCT profile_id), count(DISTINCT profile_id) FILTER (WHERE NOT excluded),
                  count(DISTINCT profile_id) FILTER (WHERE excluded), count(*) FILTER (WHERE excluded),
                  coalesce(max(component_size), 0) FROM {relation}"""
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
