"""Hand-made graphs of the reasoning tests (importable by every test module)."""

from __future__ import annotations

import numpy as np

from kgllm.stores.snapshot import GraphSnapshot

# (head, relation, tail): a small graph where the right chains are known by hand
MOVIE_TRIPLES = [
    ("Kismet", "directed_by", "William Dieterle"),
    ("Kismet", "starred_actors", "Marlene Dietrich"),
    ("Kismet", "has_genre", "Drama"),
    ("Kismet", "release_year", "1944"),
    ("Satan Met a Lady", "directed_by", "William Dieterle"),
    ("Satan Met a Lady", "starred_actors", "Bette Davis"),
    ("Satan Met a Lady", "has_genre", "Comedy"),
    ("Satan Met a Lady", "release_year", "1936"),
    ("Forrest Gump", "directed_by", "Robert Zemeckis"),
    ("Forrest Gump", "starred_actors", "Tom Hanks"),
    ("Forrest Gump", "has_genre", "Drama"),
    ("Forrest Gump", "release_year", "1994"),
    ("Cast Away", "directed_by", "Robert Zemeckis"),
    ("Cast Away", "starred_actors", "Tom Hanks"),
    ("Cast Away", "starred_actors", "Helen Hunt"),
    ("Cast Away", "has_genre", "Drama"),
    ("Cast Away", "release_year", "2000"),
    ("Big", "directed_by", "Penny Marshall"),
    ("Big", "starred_actors", "Tom Hanks"),
    ("Big", "has_genre", "Comedy"),
    ("Big", "release_year", "1988"),
]


def make_snapshot(triples: list[tuple[str, str, str]], domain: str = "movies",
                  names: dict[str, str] | None = None) -> GraphSnapshot:
    """Nodes and relations numbered in order of first appearance; ``names`` gives display names (default: the id)."""
    ids: dict[str, int] = {}
    relations: dict[str, int] = {}
    head, rel, tail = [], [], []
    for h, r, t in triples:
        head.append(ids.setdefault(h, len(ids)))
        rel.append(relations.setdefault(r, len(relations)))
        tail.append(ids.setdefault(t, len(ids)))
    return GraphSnapshot(domain, list(ids), [(names or {}).get(i, i) for i in ids], list(relations), np.array(head),
                         np.array(rel), np.array(tail),
                         sources=["hand.txt"], source=np.zeros(len(head), dtype=np.int32),
                         line=np.arange(1, len(head) + 1, dtype=np.int32))
