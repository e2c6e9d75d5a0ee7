"""k-hop subgraph retrieval over a snapshot's CSR arrays: breadth-first, with node and fact limits."""

from __future__ import annotations

import numpy as np

from kgllm.retrieval.base import BaseRetriever, Retrieved
from kgllm.stores.snapshot import GraphSnapshot

__all__ = ["SubgraphRetriever", "k_hop_nodes"]


def k_hop_nodes(snapshot: GraphSnapshot, seeds: np.ndarray, hops: int, *, limit: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Nodes within ``hops`` undirected hops of ``seeds`` (at most ``limit``, nearest first) and their distance.

    Seeds come first (in the given order), then each level in (name, id) order; a level that does not
    fit under ``limit`` keeps its first nodes in that order, so every store keeps the same ones.
    Returns ``(nodes, distance, truncated)``.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    seen, first = np.unique(seeds, return_index=True)
    levels = [seeds[np.sort(first)]]
    frontier = seen
    truncated = False
    for _ in range(hops):
        if frontier.size == 0:
            break
        edges = snapshot.edges_of(frontier, "both")
        reached = np.unique(np.concatenate([snapshot.head[edges], snapshot.tail[edges]]))
        new = np.setdiff1d(reached, seen, assume_unique=True)
        new = new[snapshot.node_order(new)]
        room = limit - seen.size
        if new.size > room:
            new, truncated = new[:max(room, 0)], True
        levels.append(new)
        seen = np.concatenate([seen, new])  # distinct, unsorted: all setdiff1d needs
        frontier = new
        if truncated:
            break
    nodes = np.concatenate(levels)
    dist = np.repeat(np.arange(len(levels), dtype=np.int64), [level.size for level in levels])
    return nodes, dist, truncated


class SubgraphRetriever(BaseRetriever):
    """Facts among the nodes within ``hops`` of the seeds; nodes scored ``1 / (1 + distance)``.

    Equally near nodes are ordered by name, then id (facts by head, relation, tail), so that every
    store returns the same nodes and facts.

    Args:
        snapshot: the domain graph.
        hops: radius.
        node_limit: most nodes gathered (the rest is cut and ``truncated`` set).
    """

    name = "subgraph"
    needs_seeds = True

    def __init__(self, snapshot: GraphSnapshot, *, hops: int = 2, node_limit: int = 2000) -> None:
        self.snapshot = snapshot
        self.hops = hops
        self.node_limit = node_limit

    def _retrieve(self, query: str, seeds: list[str], k: int) -> Retrieved:
        snap = self.snapshot
        start = np.array([snap.index[s] for s in seeds if s in snap.index], dtype=np.int64)
        if start.size == 0:
            return Retrieved()
        nodes, dist, truncated = k_hop_nodes(snap, start, self.hops, limit=self.node_limit)
        inside = np.zeros(snap.num_nodes, dtype=bool)
        inside[nodes] = True
        depth = np.full(snap.num_nodes, self.hops + 1)
        depth[nodes] = dist
        edges = snap.edges_of(nodes[dist < self.hops] if self.hops > 0 else nodes, "both")
        edges = edges[inside[snap.head[edges]] & inside[snap.tail[edges]]]
        # nearest facts first: by the depth of their nearer end, then by (head, relation, tail) names
        near = np.minimum(depth[snap.head[edges]], depth[snap.tail[edges]])
        order = snap.edge_order(edges, near)
        edges, near = edges[order], near[order]
        facts = [snap.fact(int(e)).model_copy(update={"score": round(1.0 / (2 + float(d)), 4)})
                 for e, d in zip(edges[:k].tolist(), near[:k].tolist(), strict=False)]
        order = snap.node_order(nodes, dist)[:k]
        ranked = [(snap.ids[int(nodes[i])], round(1.0 / (1 + float(dist[i])), 4)) for i in order]
        return Retrieved(facts=facts, nodes=ranked, truncated=truncated or edges.size > k)
