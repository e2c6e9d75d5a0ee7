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

from kgllm.config import check_count
from kgllm.reasoning.scorer import score_many
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
            forward.sum_duplicates()  # canonical: each row's columns sorted and unique
            backward = forward.T.tocsr()
            backward.sum_duplicates()
            self._steps.extend((forward, backward))
        # node × code incidence: which steps can leave each node (one row slice per frontier)
        codes = np.concatenate([2 * snapshot.rel, 2 * snapshot.rel + 1]).astype(np.int64)
        nodes = np.concatenate([snapshot.head, snapshot.tail]).astype(np.int64)
        self._available = sp.csr_matrix((np.ones(codes.shape[0], dtype=np.int8), (nodes, codes)),
                                        shape=(n, max(self.num_codes, 1)))
        self._available.sum_duplicates()
        # raw CSR arrays: slicing them with numpy costs a few microseconds, scipy's fancy row
        # indexing ~0.3 ms (it builds a new matrix), and the search makes thousands of such slices
        self._rows = [(m.indptr.astype(np.int64), m.indices.astype(np.int64)) for m in self._steps]
        self._avail_rows = (self._available.indptr.astype(np.int64), self._available.indices.astype(np.int64))

    def available(self, nodes: np.ndarray) -> np.ndarray:
        """Step codes that leave at least one of ``nodes``."""
        if nodes.size == 0:
            return np.zeros(0, dtype=np.int64)
        if nodes.size == 1:  # one canonical CSR row is already sorted and unique
            return _gather(*self._avail_rows, nodes).copy()
        return _sorted_unique(_gather(*self._avail_rows, nodes))

    def expand(self, nodes: np.ndarray, code: int) -> np.ndarray:
        """Nodes one ``code`` step away from any of ``nodes`` (sorted, unique)."""
        if nodes.size == 0:
            return nodes
        if nodes.size == 1:
            return _gather(*self._rows[code], nodes).copy()
        return _sorted_unique(_gather(*self._rows[code], nodes))

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
        lies in the previous frontier, the one whose other end comes first in (name, id) order, so that
        every backend shows the same walk. Returns ``[]`` when ``answer`` is not reached.
        """
        snap = self.snapshot
        rank = snap.name_rank
        edges: list[int] = []
        node = answer
        for hop in range(len(chain) - 1, -1, -1):
            relation, inverse = decode_step(chain[hop])
            previous = start if hop == 0 else frontiers[hop - 1]
            # forward step h -r-> t reached `node` as a tail; inverse reached it as a head
            candidates = snap.out_edges(node) if inverse else snap.in_edges(node)
            candidates = candidates[snap.rel[candidates] == relation]
            others = snap.tail[candidates] if inverse else snap.head[candidates]
            hits = np.flatnonzero(_member(others, previous))
            if hits.size == 0:
                return []
            first = int(hits[np.argmin(rank[others[hits]])])
            edges.append(int(candidates[first]))
            node = int(others[first])
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


def _gather(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The column indices of CSR ``rows``, concatenated (unsorted, with repeats; one row: sorted)."""
    if rows.size == 1:  # the common first hop: a view, no copy
        row = int(rows[0])
        return indices[indptr[row]:indptr[row + 1]]
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return indices[:0]
    # position k of the output reads indices[starts[row(k)] + (k - offset(row(k)))]
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return indices[offsets + np.arange(total)]


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by sorting (numpy 2's hash-based ``unique`` is ~10x slower on the
    few-hundred-element frontiers of a search)."""
    if values.size < 2:
        return values
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted, unique ``sorted_set`` (binary search, no sort)."""
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[at] == values


def _without(nodes: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """``nodes`` minus ``excluded`` (both sorted and unique)."""
    if excluded.size == 1:
        return nodes[nodes != excluded[0]]
    return nodes[~_member(nodes, excluded)]


class ChainSearch:
    """Beam search over relation chains from topic entities, ranked by a path scorer.

    Args:
        graph: the domain's :class:`RelationGraph`.
        max_hops: longest chain considered.
        beam: prefixes kept per hop.
    """

    def __init__(self, graph: RelationGraph, *, max_hops: int = 3, beam: int = 8) -> None:
        self.graph = graph
        self.max_hops = check_count("max_hops", max_hops)
        self.beam = check_count("beam", beam)  # 0 or less used to act as a beam of 1

    def search(self, topic: np.ndarray, scorer: PathScorer, state: QuestionState, *,
               max_hops: int | None = None, keep: int = 10) -> list[ChainResult]:
        """Complete chains from ``topic`` (node indices), best first, at most ``keep``.

        A chain is kept only when it reaches at least one node other than the topic entities.
        """
        return self.search_many([topic], scorer, [state], max_hops=max_hops, keep=keep)[0]

    def search_many(self, topics: Sequence[np.ndarray], scorer: PathScorer, states: Sequence[QuestionState], *,
                    max_hops: int | None = None, keep: int = 10) -> list[list[ChainResult]]:
        """:meth:`search` for many questions at once: each hop's chains of all questions are scored in
        one scorer call (one model pass for a learned scorer); every question's result is the same as
        searching it alone."""
        # ``max_hops or default`` would read 0 as "the default" (3 hops) and a negative count as none at all
        hops = self.max_hops if max_hops is None else check_count("max_hops", max_hops)
        starts = [np.unique(np.asarray(t, dtype=np.int64)) for t in topics]
        prefixes: list[list[tuple[Chain, list[np.ndarray]]]] = [[((), [])] for _ in starts]
        complete: list[list[ChainResult]] = [[] for _ in starts]
        active = list(range(len(starts)))
        for _ in range(hops):
            candidates: dict[int, list[tuple[Chain, list[np.ndarray]]]] = {}
            for q in active:
                found = [(chain + (code,), frontiers) for chain, frontiers in prefixes[q]
                         for code in self.graph.available(frontiers[-1] if frontiers else starts[q]).tolist()]
                if found:
                    candidates[q] = found
            active = list(candidates)
            scores = score_many(scorer, [states[q] for q in active],
                                [[c for c, _ in candidates[q]] for q in active], complete=False)
            kept_of: dict[int, list[tuple[Chain, list[np.ndarray]]]] = {}
            for q, q_scores in zip(active, scores, strict=True):
                kept = self._keep(candidates[q], q_scores, starts[q])
                if kept:
                    kept_of[q] = kept
            active = list(kept_of)
            final = score_many(scorer, [states[q] for q in active],
                               [[c for c, _ in kept_of[q]] for q in active], complete=True)
            for q, q_final in zip(active, final, strict=True):
                complete[q].extend(ChainResult(chain, float(s), fr)
                                   for (chain, fr), s in zip(kept_of[q], q_final, strict=True))
                prefixes[q] = kept_of[q]
            if not active:
                break
        out = []
        for results in complete:
            # NaN (a plugged-in scorer's) last: compared with NaN every order holds, so sort() would leave
            # such a chain anywhere, even first (the chain whose answers make ``answer_set``)
            results.sort(key=lambda result: (result.score != result.score, -result.score))
            out.append(results[:keep])
        return out

    def _keep(self, candidates: list[tuple[Chain, list[np.ndarray]]], scores: np.ndarray,
              topic: np.ndarray) -> list[tuple[Chain, list[np.ndarray]]]:
        """The ``beam`` best candidates that reach a node other than the topic, with their frontiers."""
        kept: list[tuple[Chain, list[np.ndarray]]] = []
        for i in np.argsort(-scores, kind="stable").tolist():
            chain, frontiers = candidates[i]
            nodes = _without(self.graph.expand(frontiers[-1] if frontiers else topic, chain[-1]), topic)
            if nodes.size == 0:
                continue
            kept.append((chain, frontiers + [nodes]))
            if len(kept) >= self.beam:
                break
        return kept
