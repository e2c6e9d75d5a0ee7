"""Relation-path beam search over a domain's CSR arrays.

A *chain* is a sequence of steps; a step is a relation walked forwards or backwards, encoded as
``code = 2 * relation_index + inverse``. Starting from the linked topic entities, the search keeps
the best ``beam`` chain prefixes per hop (as ranked by a :class:`~kgllm.reasoning.scorer.PathScorer`),
walks each kept prefix one step on the graph (a sparse row slice per step) and collects complete
chains with their answer sets. Every answer is reached by real edges; :meth:`RelationGraph.trace`
recovers those edges for the answers that are shown.

Constraint (as in MetaQA's gold sets): a chain never comes back through its topic entities, neither
at an intermediate hop nor as an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from kgllm.stores.snapshot import GraphSnapshot

if TYPE_CHECKING:
    from kgllm.reasoning.scorer import PathScorer, QuestionState

__all__ = ["Chain", "ChainResult", "RelationGraph", "ChainSearch", "step_code", "decode_step"]

Chain = tuple[int, ...]


def step_code(relation: int, inverse: bool) -> int:
    """The integer code of one step (relation index, direction)."""
    return 2 * relation + int(inverse)


def decode_step(code: int) -> tuple[int, bool]:
    """``(relation index, inverse)`` of a step code."""
    return code >> 1, bool(code & 1)


@dataclass
class ChainResult:
    """A complete chain, its score and the nodes it ends in (``frontiers[i]`` = nodes after hop i+1)."""

    chain: Chain
    score: float
    frontiers: list[np.ndarray] = field(repr=False)

    @property
    def answers(self) -> np.ndarray:
        return self.frontiers[-1]


class RelationGraph:
    """Per-step sparse matrices of one snapshot: ``step(code)[i]`` lists the nodes one step from ``i``.

    Built once per snapshot (about 1 s per million edges) and shared by every question.
    """

    def __init__(self, snapshot: GraphSnapshot) -> None:
        self.snapshot = snapshot
        n, num_rel = snapshot.num_nodes, len(snapshot.relations)
        self.num_codes = 2 * num_rel
        ones = np.ones(snapshot.num_edges, dtype=np.int8)
        self._steps: list[sp.csr_matrix] = []
        for r in range(num_rel):
            mask = snapshot.rel == r
            forward = sp.csr_matrix((ones[mask], (snapshot.head[mask], snapshot.tail[mask])), shape=(n, n))
            forward.sum_duplicates()
            self._steps.append(forward)
            self._steps.append(forward.T.tocsr())
        # node × code incidence: which steps can leave each node (one row slice per frontier)
        codes = np.concatenate([2 * snapshot.rel, 2 * snapshot.rel + 1]).astype(np.int64)
        nodes = np.concatenate([snapshot.head, snapshot.tail]).astype(np.int64)
        self._available = sp.csr_matrix((np.ones(codes.shape[0], dtype=np.int8), (nodes, codes)),
                                        shape=(n, max(self.num_codes, 1)))
        self._available.sum_duplicates()

    def available(self, nodes: np.ndarray) -> np.ndarray:
        """Step codes that leave at least one of ``nodes``."""
        if nodes.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.unique(self._available[nodes].indices)

    def expand(self, nodes: np.ndarray, code: int) -> np.ndarray:
        """Nodes one ``code`` step away from any of ``nodes`` (sorted, unique)."""
        if nodes.size == 0:
            return nodes
        matrix = self._steps[code]
        if nodes.size == 1:  # the common first hop: a plain CSR slice, no copy
            node = int(nodes[0])
            return np.unique(matrix.indices[matrix.indptr[node]:matrix.indptr[node + 1]])
        return np.unique(matrix[nodes].indices)

    def walk(self, start: np.ndarray, chain: Sequence[int], *, exclude: np.ndarray | None = None) -> list[np.ndarray]:
        """The frontier after each step of ``chain`` from ``start``, ``exclude`` removed at every hop."""
        frontiers: list[np.ndarray] = []
        nodes = start
        for code in chain:
            nodes = self.expand(nodes, code)
            if exclude is not None and exclude.size:
                nodes = np.setdiff1d(nodes, exclude, assume_unique=True)
            frontiers.append(nodes)
        return frontiers

    def trace(self, start: np.ndarray, chain: Sequence[int], frontiers: Sequence[np.ndarray],
              answer: int) -> list[int]:
        """Edge indices of one concrete walk of ``chain`` from ``start`` that ends in ``answer``.

        Walks backwards: at each hop picks an edge of the right relation and direction whose other end
        lies in the previous frontier. Returns ``[]`` when ``answer`` is not reached.
        """
        snap = self.snapshot
        edges: list[int] = []
        node = answer
        for hop in range(len(chain) - 1, -1, -1):
            relation, inverse = decode_step(chain[hop])
            previous = start if hop == 0 else frontiers[hop - 1]
            # forward step h -r-> t reached `node` as a tail; inverse reached it as a head
            candidates = snap.out_edges(node) if inverse else snap.in_edges(node)
            candidates = candidates[snap.rel[candidates] == relation]
            others = snap.tail[candidates] if inverse else snap.head[candidates]
            hit = np.isin(others, previous)
            if not hit.any():
                return []
            edge = int(candidates[np.argmax(hit)])
            edges.append(edge)
            node = int(others[np.argmax(hit)])
        return edges[::-1]

    def code_text(self, code: int, relation_text: dict[str, str] | None = None) -> str:
        """Readable text of a step: ``directed by`` or ``inverse of directed by``."""
        relation, inverse = decode_step(code)
        name = self.snapshot.relations[relation]
        text = (relation_text or {}).get(name) or name.replace("_", " ")
        return f"inverse of {text}" if inverse else text

    def code_name(self, code: int) -> str:
        """Compact name of a step: ``directed_by`` or ``~directed_by``."""
        relation, inverse = decode_step(code)
        return ("~" if inverse else "") + self.snapshot.relations[relation]


class ChainSearch:
    """Beam search over relation chains from topic entities, ranked by a path scorer.

    Args:
        graph: the domain's :class:`RelationGraph`.
        max_hops: longest chain considered.
        beam: prefixes kept per hop.
    """

    def __init__(self, graph: RelationGraph, *, max_hops: int = 3, beam: int = 8) -> None:
        if max_hops < 1:
            raise ValueError(f"max_hops must be >= 1, got {max_hops!r}")
        self.graph = graph
        self.max_hops = max_hops
        self.beam = beam

    def search(self, topic: np.ndarray, scorer: PathScorer, state: QuestionState, *,
               max_hops: int | None = None, keep: int = 10) -> list[ChainResult]:
        """Complete chains from ``topic`` (node indices), best first, at most ``keep``.

        A chain is kept only when it reaches at least one node other than the topic entities.
        """
        topic = np.unique(np.asarray(topic, dtype=np.int64))
        hops = max_hops or self.max_hops
        prefixes: list[tuple[Chain, list[np.ndarray]]] = [((), [])]
        complete: list[ChainResult] = []
        for _ in range(hops):
            candidates: list[tuple[Chain, list[np.ndarray]]] = []
            for chain, frontiers in prefixes:
                current = frontiers[-1] if frontiers else topic
                for code in self.graph.available(current).tolist():
                    candidates.append((chain + (code,), frontiers))
            if not candidates:
                break
            scores = scorer.score(state, [c for c, _ in candidates], complete=False)
            order = np.argsort(-scores, kind="stable")
            kept: list[tuple[Chain, list[np.ndarray]]] = []
            for i in order:
                chain, frontiers = candidates[int(i)]
                current = frontiers[-1] if frontiers else topic
                nodes = self.graph.expand(current, chain[-1])
                nodes = np.setdiff1d(nodes, topic, assume_unique=True)
                if nodes.size == 0:
                    continue
                kept.append((chain, frontiers + [nodes]))
                if len(kept) >= self.beam:
                    break
            if not kept:
                break
            final = scorer.score(state, [c for c, _ in kept], complete=True)
            complete.extend(ChainResult(chain, float(s), fr) for (chain, fr), s in zip(kept, final, strict=False))
            prefixes = kept
        complete.sort(key=lambda result: -result.score)
        return complete[:keep]
