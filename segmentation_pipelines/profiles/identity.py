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


def build_identity_graph(con, sources: list[str], out_path: str, max_size: int = MAX_COMPONENT_SIZE):
    """Compute components over the ``identityMap`` column of every SQL relation in ``sources``; write
    ``namespace, id, primary, profile_id, component_size, excluded`` to ``out_path``."""
    started = time.perf_counter()
    union = " UNION ALL ".join(f"SELECT identityMap FROM {s}" for s in sources) or (
        'SELECT NULL::STRUCT("key" VARCHAR, "value" STRUCT(id VARCHAR, "primary" BOOLEAN)[])[] AS identityMap '
        "WHERE false"
    )
    # Rows repeat the same identity set many times (every event of a person): stitch each distinct set once.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE id_sets AS
        SELECT row_number() OVER () AS r, identityMap FROM (SELECT DISTINCT identityMap FROM ({union}))"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE id_occ AS
        SELECT r, ns, v.id AS id, coalesce(v."primary", false) AS p FROM (
            SELECT r, e.key AS ns, unnest(e.value) AS v FROM (SELECT r, unnest(identityMap) AS e FROM id_sets))"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE id_nodes AS
        SELECT ns, id, bool_or(p) AS p, row_number() OVER (ORDER BY ns, id) AS node FROM id_occ GROUP BY ns, id"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE id_edges AS
        WITH occ AS (SELECT o.r, n.node FROM id_occ o JOIN id_nodes n USING (ns, id)),
        star AS (SELECT DISTINCT min(node) OVER (PARTITION BY r) AS a, node AS b FROM occ)
        SELECT a, b FROM star WHERE a <> b UNION SELECT b, a FROM star WHERE a <> b"""
    )
    con.execute("DROP TABLE id_occ")
    con.execute("DROP TABLE id_sets")
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
            break
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE identities AS
        WITH lab AS (
            SELECT n.ns, n.id, n.p, coalesce(lb.l, n.node) AS label FROM id_nodes n LEFT JOIN id_labels lb USING (node)
        ), sized AS (SELECT *, count(*) OVER (PARTITION BY label) AS component_size FROM lab)
        SELECT s.ns AS namespace, s.id, s.p AS "primary", {profile_id_sql("root.ns", "root.id")} AS profile_id,
               s.component_size, s.component_size > {int(max_size)} AS excluded
        FROM sized s JOIN id_nodes root ON root.node = s.label"""
    )
    for table in ("id_edges", "id_labels", "id_step", "id_jump", "id_nodes"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute(f"COPY (SELECT * FROM identities ORDER BY profile_id) TO '{out_path}' (FORMAT PARQUET)")
    row = con.execute(
        """SELECT count(*), count(DISTINCT profile_id), count(DISTINCT profile_id) FILTER (WHERE NOT excluded),
                  count(DISTINCT profile_id) FILTER (WHERE excluded), count(*) FILTER (WHERE excluded),
                  coalesce(max(component_size), 0) FROM identities"""
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
