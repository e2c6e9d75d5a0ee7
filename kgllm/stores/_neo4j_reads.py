"""The read side of ``Neo4jGraphStore``: its read queries, the read isolation they run under, and what
their rows become (facts, snapshots).

Queries are constant strings: every value travels as a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from kgllm.stores.snapshot import GraphSnapshot
from kgllm.types import Fact

__all__ = ["Reading", "reading", "PENDING", "LIVE", "NEIGHBOR_READINGS", "EXPAND", "MAX_LIMIT", "COUNT", "NODES",
           "EXACT", "PREFIX", "PAGE", "row_fact", "build_snapshot"]

# What a load has written before its commit point is invisible to readers, as in the local store: while
# loads are pending (``$pending``, their ids, read by _query in the same transaction), reads skip nodes and
# relationships tagged with one. Relationships created untagged touch a tagged node: both ends are checked.
# Likewise a domain being deleted (``$gone``) is gone for readers before its first node is: its nodes are
# skipped, so a delete cut short leaves nothing readable.
PENDING = ("CALL () { MATCH (l:KgllmLoad) RETURN collect(l.id) AS ids } "
           "CALL () { MATCH (d:KgllmDomain) WHERE d.deleting IS NOT NULL RETURN collect(d.name) AS gone } "
           "RETURN ids, gone")
LIVE = "MATCH (d:KgllmDomain {name: $d}) WHERE d.deleting IS NULL "


class Reading(NamedTuple):
    """A read query as it runs when no load is pending, and as it runs while some are."""

    plain: str
    filtered: str


def reading(template: str) -> Reading:
    """``template`` without its ``[[...]]`` parts, and with them, where ``COMMITTED(a, b)`` is the condition
    that the variables ``a`` and ``b`` (constants of this module) belong to no pending load, and that the
    first of them, a node, belongs to no domain being deleted (all others are of the same domain)."""
    def committed(match: re.Match[str]) -> str:
        names = [v.strip() for v in match.group(1).split(",")]
        return " AND ".join([f"NOT {names[0]}.domain IN $gone"]
                            + [f"({v}.load IS NULL OR NOT {v}.load IN $pending)" for v in names])

    plain = re.sub(r"\[\[.*?\]\]", "", template, flags=re.S)
    filtered = re.sub(r"COMMITTED\(([^)]*)\)", committed, template.replace("[[", "").replace("]]", ""))
    return Reading(plain, filtered)


_FACT = ("elementId(r) AS rid, h.id AS h, r.type AS r, t.id AS t, h.name AS hn, t.name AS tn, "
         "r.source AS source, r.line AS line")
_NEIGHBORS = {
    "out": "MATCH (n)-[r:REL]->(t) WITH i, n AS h, r, t",
    "in": "MATCH (n)<-[r:REL]-(h) WITH i, h, r, n AS t",
}
_NEIGHBOR_QUERY = """
UNWIND range(0, size($keys) - 1) AS i
MATCH (n:Entity {{key: $keys[i]}})
{pattern}
WHERE ($relations IS NULL OR r.type IN $relations)[[ AND COMMITTED(h, r, t)]]
RETURN i, {fact}
"""
NEIGHBOR_READINGS = {side: reading(_NEIGHBOR_QUERY.format(pattern=pattern, fact=_FACT))
                     for side, pattern in _NEIGHBORS.items()}
# The first $cap edges touching the nodes, in fact_key order (kgllm/stores/snapshot.py).
EXPAND = reading("""
UNWIND $keys AS key
MATCH (n:Entity {key: key})-[r:REL]-([[m]])[[ WHERE COMMITTED(n, r, m)]]
WITH DISTINCT r
WITH r, startNode(r) AS h, endNode(r) AS t
ORDER BY h.name, h.id, r.type, t.name, t.id LIMIT $cap
RETURN """ + _FACT)
# Cypher integers are 64-bit: a larger LIMIT (``limit=sys.maxsize`` plus the rows already taken) fails
# in the driver with an OverflowError, so limits are clamped to this.
MAX_LIMIT = 2**63 - 1
# Without pending loads, COUNT reads each node's degree; with them, it has to look at the relationships.
COUNT = Reading(plain="""
UNWIND $domains AS d
MATCH (n:Entity {domain: d})
RETURN count(n) AS entities, sum(COUNT { (n)-[:REL]->() }) AS triples""", filtered=reading("""
UNWIND $domains AS d
MATCH (n:Entity {domain: d}) WHERE COMMITTED(n)
RETURN count(n) AS entities, sum(COUNT { (n)-[r:REL]->(t) WHERE COMMITTED(t, r) }) AS triples""").filtered)
NODES = reading("UNWIND $keys AS key MATCH (n:Entity {key: key})[[ WHERE COMMITTED(n)]] "
                "RETURN n.id AS id, n.name AS name")
EXACT = reading("""
MATCH (n:Entity) WHERE n.lname = $q AND n.domain IN $domains[[ AND COMMITTED(n)]]
WITH n ORDER BY n.domain, n.id LIMIT $limit
RETURN n.id AS id, n.name AS name, n.domain AS domain""")
PREFIX = reading("""
MATCH (n:Entity) WHERE n.lname STARTS WITH $q AND n.lname <> $q AND n.domain IN $domains[[ AND COMMITTED(n)]]
WITH n ORDER BY n.lname, n.domain, n.id LIMIT $limit
RETURN n.id AS id, n.name AS name, n.domain AS domain""")
PAGE = reading("""
MATCH (n:Entity) WHERE n.key STARTS WITH $prefix AND n.key > $after[[ AND COMMITTED(n)]]
WITH n ORDER BY n.key LIMIT $page
CALL (n) {
  OPTIONAL MATCH (n)-[r:REL]->(t)[[ WHERE COMMITTED(t, r)]]
  RETURN collect([r.type, t.id, r.source, r.line]) AS out
}
RETURN n.key AS key, n.id AS id, n.name AS name, out
""")


def row_fact(row: dict[str, Any], domain: str) -> Fact:
    """The fact of a row of NEIGHBOR_READINGS or EXPAND."""
    return Fact(head=row["h"], relation=row["r"], tail=row["t"], domain=domain, head_name=row["hn"],
                tail_name=row["tn"], source=row["source"], line=row["line"])


def build_snapshot(domain: str, pages: Iterable[list[dict[str, Any]]],
                   known: Sequence[str] = ()) -> GraphSnapshot | None:
    """The domain's CSR arrays from its ``pages`` (rows of PAGE, nodes in key order).

    Relations numbered in the order the domain first saw them (``known``), as in the local store:
    a trained scorer refers to relations by number and checks that list. None when an edge leads to a
    node no page held (committed after its page was read): the domain changed meanwhile."""
    ids: list[str] = []
    names: list[str] = []
    edges: list[tuple[str, str, str, str | None, int | None]] = []
    for rows in pages:
        for row in rows:
            ids.append(row["id"])
            names.append(row["name"])
            edges.extend((row["id"], rel, tail, source, line) for rel, tail, source, line in row["out"]
                         if rel is not None)
    index = {eid: i for i, eid in enumerate(ids)}
    if any(e[2] not in index for e in edges):
        return None
    present = {e[1] for e in edges}
    relations = [r for r in known if r in present] + sorted(present.difference(known))
    rel_index = {r: i for i, r in enumerate(relations)}
    sources = sorted({e[3] for e in edges if e[3] is not None})
    source_index = {s: i for i, s in enumerate(sources)}
    n = len(edges)
    return GraphSnapshot(
        domain=domain, ids=ids, names=names, relations=relations,
        head=np.fromiter((index[e[0]] for e in edges), dtype=np.int32, count=n),
        rel=np.fromiter((rel_index[e[1]] for e in edges), dtype=np.int32, count=n),
        tail=np.fromiter((index[e[2]] for e in edges), dtype=np.int32, count=n),
        sources=sources,
        source=np.fromiter((source_index.get(e[3], -1) if e[3] is not None else -1 for e in edges),
                           dtype=np.int32, count=n),
        line=np.fromiter((e[4] or 0 for e in edges), dtype=np.int32, count=n))
