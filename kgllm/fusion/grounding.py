"""Concept grounding and subgraph extraction for multiple-choice questions.

A :class:`ConceptGraph` holds a commonsense KG (CN-100K style: ``relation<TAB>head<TAB>tail``, node ids
are the concept names themselves) as sorted edge arrays (a CSR adjacency over both directions, inverse
relations get ids ``r + R``). :class:`ConceptGrounder` maps text to concept ids by longest n-gram match
with light lemmatisation. :func:`extract_subgraph` builds the QA-GNN style subgraph of one
(question, choice) pair: the question and choice concepts, the nodes on 2- and 3-hop paths between
them, and the choice's neighbourhood, pruned to ``max_nodes`` by LM relevance.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from kgllm.exceptions import LoadError

__all__ = ["ConceptGraph", "ConceptGrounder", "QASubgraph", "extract_subgraph", "extract_subgraphs",
           "NODE_CONTEXT", "NODE_QUESTION", "NODE_CHOICE", "NODE_OTHER", "NODE_TYPES"]

# Node types of a QA subgraph (the context node is added by the adapter, index 0 of each graph).
NODE_CONTEXT, NODE_QUESTION, NODE_CHOICE, NODE_OTHER = 0, 1, 2, 3
NODE_TYPES = 4

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Words that are stop words but carry meaning as concepts in commonsense questions.
_KEEP = frozenset({"fire", "find", "full", "home", "call", "move", "empty", "bottom", "top", "back", "front",
                   "side", "eight", "eleven", "fifteen", "fifty", "forty", "hundred", "sixty", "twenty", "cry",
                   "bill", "detail", "fill", "interest", "mill", "describe", "system", "thick", "thin", "give",
                   "keep", "made", "put", "show", "take", "see", "get", "go", "done", "become", "well", "last"})
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS - _KEEP) | {"s", "t", "d", "ll", "m", "re", "ve", "isn't", "don't"}


class ConceptGraph:
    """A concept graph with a name vocabulary and a CSR adjacency over both edge directions.

    Args:
        names: Concept names; the position is the node id.
        relations: Relation names (forward only); ids ``>= len(relations)`` denote inverse edges.
        heads, rels, tails: Integer edge arrays (forward edges).
    """

    def __init__(self, names: Sequence[str], relations: Sequence[str], heads: np.ndarray, rels: np.ndarray,
                 tails: np.ndarray) -> None:
        self.names = list(names)
        self.relations = list(relations)
        self.index = {name: i for i, name in enumerate(self.names)}
        n_rel = len(self.relations)
        src = np.concatenate([heads, tails]).astype(np.int64)
        dst = np.concatenate([tails, heads]).astype(np.int32)
        rel = np.concatenate([rels, rels + n_rel]).astype(np.int16)
        order = np.argsort(src, kind="stable")
        self._dst, self._rel = dst[order], rel[order]
        self._indptr = np.searchsorted(src[order], np.arange(len(self.names) + 1)).astype(np.int64)
        self.n_edges = len(heads)

    @classmethod
    def from_triples(cls, path: str | Path) -> ConceptGraph:
        """Read ``relation<TAB>head<TAB>tail`` lines (CN-100K's layout).

        Raises:
            LoadError: a line without exactly three non-empty tab-separated fields, or not UTF-8 text.
        """
        path = Path(path)
        names: dict[str, int] = {}
        relations: dict[str, int] = {}
        heads, rels, tails = [], [], []
        try:
            with path.open(encoding="utf-8") as handle:
                for line_no, line in enumerate(handle, 1):
                    line = line.rstrip("\n")
                    if not line.strip():
                        continue
                    parts = line.split("\t")
                    if len(parts) != 3 or not all(p.strip() for p in parts):
                        raise LoadError("expected 3 tab-separated fields 'relation<TAB>head<TAB>tail', "
                                        f"got {len(parts)}", path=path, line=line_no, value=line)
                    rel, head, tail = (p.strip() for p in parts)
                    rels.append(relations.setdefault(rel, len(relations)))
                    heads.append(names.setdefault(head.lower(), len(names)))
                    tails.append(names.setdefault(tail.lower(), len(names)))
        except UnicodeDecodeError as exc:  # decoded in blocks: neither the line nor the file offset is known
            raise LoadError(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}: {exc.reason})", path=path) from exc
        if not heads:
            raise LoadError("no triples found", path=path)
        return cls(list(names), list(relations), np.asarray(heads), np.asarray(rels), np.asarray(tails))

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"ConceptGraph(nodes={len(self.names)}, edges={self.n_edges}, relations={len(self.relations)})"

    @property
    def n_relation_ids(self) -> int:
        """Relation ids used on edges: forward and inverse."""
        return 2 * len(self.relations)

    @property
    def vocab_hash(self) -> str:
        """A hash of the node and relation vocabularies; trained adapters are tied to it."""
        digest = hashlib.sha256()
        digest.update("\x1f".join(self.relations).encode())
        digest.update(b"\x1e")
        digest.update("\x1f".join(self.names).encode())
        return digest.hexdigest()[:16]

    def neighbors(self, nodes: Iterable[int]) -> np.ndarray:
        """Unique neighbours (either direction) of ``nodes``."""
        parts = [self._dst[self._indptr[n]:self._indptr[n + 1]] for n in nodes]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int32)

    def _incident(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All edges leaving ``nodes``, gathered without a Python loop: (position in nodes, target, relation)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        starts, ends = self._indptr[nodes], self._indptr[nodes + 1]
        lengths = ends - starts
        owner = np.repeat(np.arange(len(nodes)), lengths)
        flat = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + starts[owner]
        return owner, self._dst[flat].astype(np.int64), self._rel[flat].astype(np.int64)

    def edges_among(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edges with both ends in ``nodes`` as (local src, local dst, relation id), both directions."""
        nodes = np.asarray(nodes, dtype=np.int64)
        owner, target, rel = self._incident(nodes)
        order = np.argsort(nodes, kind="stable")
        pos = np.searchsorted(nodes[order], target)
        pos = np.minimum(pos, len(nodes) - 1)
        keep = nodes[order][pos] == target
        return owner[keep], order[pos[keep]], rel[keep]


def _variants(token: str) -> list[str]:
    """The token and crude lemmas of it (plural and possessive endings); WordNet is not assumed."""
    out = [token]
    if token.endswith("'s"):
        out.append(token[:-2])
    elif token.endswith("ies") and len(token) > 4:
        out.append(token[:-3] + "y")
    elif token.endswith("es") and len(token) > 4:
        out += [token[:-2], token[:-1]]
    elif token.endswith("s") and not token.endswith("ss") and len(token) > 3:
        out.append(token[:-1])
    return out


class ConceptGrounder:
    """Ground text in a :class:`ConceptGraph` by longest-first, non-overlapping n-gram matching.

    Args:
        graph: The concept graph.
        max_ngram: Longest phrase (in words) looked up.
    """

    def __init__(self, graph: ConceptGraph, *, max_ngram: int = 4) -> None:
        self.graph = graph
        self.max_ngram = max_ngram

    def __repr__(self) -> str:
        return f"ConceptGrounder(graph={self.graph!r}, max_ngram={self.max_ngram})"

    def _lookup(self, words: list[str]) -> int | None:
        if all(w in STOP_WORDS for w in words):
            return None
        head = " ".join(words[:-1])
        for last in _variants(words[-1]):
            node = self.graph.index.get(f"{head} {last}" if head else last)
            if node is not None:
                return node
        return None

    def ground(self, text: str, *, whole: bool = False) -> list[int]:
        """Concept ids mentioned in ``text``, in order of appearance, without repeats.

        Args:
            text: Any text.
            whole: Try the whole text as one concept first (used for answer choices).
        """
        words = _TOKEN.findall(text.lower())
        if whole and words:
            node = self._lookup(words)
            if node is not None:
                return [node]
        found: list[tuple[int, int]] = []
        taken = [False] * len(words)
        for n in range(min(self.max_ngram, len(words)), 0, -1):
            for start in range(len(words) - n + 1):
                if any(taken[start:start + n]):
                    continue
                node = self._lookup(words[start:start + n])
                if node is not None:
                    found.append((start, node))
                    taken[start:start + n] = [True] * n
        ordered: dict[int, None] = {}
        for _, node in sorted(found):
            ordered.setdefault(node, None)
        return list(ordered)


@dataclass
class QASubgraph:
    """The concept subgraph of one (question, choice) pair; the context node is not included.

    Attributes:
        nodes: Concept ids, shape ``(n,)``.
        types: Node types (``NODE_QUESTION`` / ``NODE_CHOICE`` / ``NODE_OTHER``), shape ``(n,)``.
        relevance: LM relevance of each node to the pair (cosine), shape ``(n,)``.
        edge_index: Local edges, shape ``(2, e)``.
        edge_type: Relation ids of the edges, shape ``(e,)``.
    """

    nodes: np.ndarray
    types: np.ndarray
    relevance: np.ndarray
    edge_index: np.ndarray
    edge_type: np.ndarray

    @property
    def grounded(self) -> bool:
        return len(self.nodes) > 0


def extract_subgraph(graph: ConceptGraph, question: Sequence[int], choice: Sequence[int],
                     node_vectors: np.ndarray, context_vector: np.ndarray, *, max_nodes: int = 32,
                     hops: int = 3, max_question: int = 10, max_choice: int = 3) -> QASubgraph:
    """Extract and prune the subgraph joining question concepts to one choice's concepts.

    See :func:`extract_subgraphs` (this is its one-choice form).
    """
    return extract_subgraphs(graph, question, [choice], node_vectors, context_vector[None, :], max_nodes=max_nodes,
                             hops=hops, max_question=max_question, max_choice=max_choice)[0]


def extract_subgraphs(graph: ConceptGraph, question: Sequence[int], choices: Sequence[Sequence[int]],
                      node_vectors: np.ndarray, context_vectors: np.ndarray, *, max_nodes: int = 32,
                      hops: int = 3, max_question: int = 10, max_choice: int = 3) -> list[QASubgraph]:
    """Extract and prune the subgraphs joining question concepts to each choice's concepts.

    Candidates are the intermediate nodes of 2-hop paths (question - x - choice), both inner nodes of
    3-hop paths (question - x - y - choice, when ``hops >= 3``) and the choice's direct neighbours.
    They are ranked by relevance (cosine of the node's embedding with the pair's LM embedding) plus a
    bonus for lying on a path, and the best fill the graph up to ``max_nodes``. The question side
    (its neighbours and their edges) is gathered once for all choices.

    Args:
        graph: The concept graph.
        question: Grounded question concept ids.
        choices: Grounded concept ids of each choice.
        node_vectors: L2-normalised node embeddings, shape ``(len(graph), dim)``.
        context_vectors: L2-normalised embedding of question + each choice, shape ``(len(choices), dim)``.
        max_nodes: Node budget (question + choice + others).
        hops: Longest question-choice path considered (2 or 3).
        max_question: At most this many question concepts (most relevant to the pair kept).
        max_choice: At most this many choice concepts.
    """
    all_q = np.unique(np.asarray(list(question), dtype=np.int64))
    n_all_q = graph.neighbors(all_q).astype(np.int64) if len(all_q) else np.zeros(0, dtype=np.int64)
    # edges leaving N(question): x -> y; the inner edges of 3-hop paths are among them
    x_owner, y_target = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if hops >= 3 and len(n_all_q):
        owner, y_target, _ = graph._incident(n_all_q)
        x_owner = n_all_q[owner]
    out = []
    for choice, context_vector in zip(choices, context_vectors, strict=True):
        a_nodes = np.unique(np.asarray(list(choice)[:max_choice], dtype=np.int64))
        q_nodes = np.setdiff1d(np.asarray(list(question), dtype=np.int64), a_nodes)
        n_q, x_src, y_dst = n_all_q, x_owner, y_target
        if len(q_nodes) > max_question or len(q_nodes) != len(all_q):
            if len(q_nodes) > max_question:
                rel = node_vectors[q_nodes].astype(np.float32) @ context_vector
                q_nodes = np.sort(q_nodes[np.argsort(-rel)[:max_question]])
            n_q = graph.neighbors(q_nodes).astype(np.int64) if len(q_nodes) else np.zeros(0, dtype=np.int64)
            keep = np.isin(x_src, n_q)
            x_src, y_dst = x_src[keep], y_dst[keep]
        out.append(_choice_subgraph(graph, q_nodes, a_nodes, n_q, x_src, y_dst, node_vectors, context_vector,
                                    max_nodes=max_nodes, hops=hops))
    return out


def _choice_subgraph(graph: ConceptGraph, q_nodes: np.ndarray, a_nodes: np.ndarray, n_q: np.ndarray,
                     x_src: np.ndarray, y_dst: np.ndarray, node_vectors: np.ndarray, context_vector: np.ndarray,
                     *, max_nodes: int, hops: int) -> QASubgraph:
    """The subgraph of one choice given the question side (``n_q`` = N(q), edges ``x_src -> y_dst`` from it)."""
    seeds = np.concatenate([q_nodes, a_nodes])
    budget = max(max_nodes - len(seeds), 0)
    others = np.zeros(0, dtype=np.int64)
    if len(a_nodes) and budget:
        n_a = graph.neighbors(a_nodes).astype(np.int64)
        on_path = np.zeros(0, dtype=np.int64)
        if len(q_nodes):
            on_path = np.intersect1d(n_q, n_a)
            if hops >= 3 and len(n_q) and len(n_a):
                # x in N(q) \ N(a) adjacent to some y in N(a): both inner nodes of a 3-hop path
                hit = np.isin(y_dst, n_a) & np.isin(x_src, n_a, invert=True)
                on_path = np.union1d(on_path, np.union1d(x_src[hit], y_dst[hit]))
        cands = np.setdiff1d(np.union1d(on_path, n_a), seeds)
        if len(cands):
            score = node_vectors[cands].astype(np.float32) @ context_vector
            score = score + np.isin(cands, on_path).astype(np.float32)  # path nodes first
            others = np.sort(cands[np.argsort(-score, kind="stable")[:budget]])
    nodes = np.concatenate([q_nodes, a_nodes, others]).astype(np.int64)
    types = np.concatenate([np.full(len(q_nodes), NODE_QUESTION), np.full(len(a_nodes), NODE_CHOICE),
                            np.full(len(others), NODE_OTHER)]).astype(np.int64)
    relevance = (node_vectors[nodes].astype(np.float32) @ context_vector if len(nodes)
                 else np.zeros(0, dtype=np.float32))
    src, dst, rel = graph.edges_among(nodes) if len(nodes) else (np.zeros(0, np.int64),) * 3
    return QASubgraph(nodes=nodes, types=types, relevance=relevance.astype(np.float32),
                      edge_index=np.stack([src, dst]).astype(np.int64), edge_type=rel)
