"""Multiple-choice questions and their cached encoder/graph features.

The encoder is frozen, so everything it computes is computed once and cached on disk (``.npz``):
per (question, choice) the LM features (joint embedding of question + choice, choice embedding,
question x choice product, embedding of retrieved open-book facts) and the concept subgraph from
:mod:`kgllm.fusion.grounding`. Training then only runs the small trainable head.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kgllm.exceptions import LoadError
from kgllm.fusion.grounding import ConceptGraph, ConceptGrounder, QASubgraph, extract_subgraphs
from kgllm.loaders import iter_json_objects
from kgllm.loaders._io import shorten

__all__ = ["MCQuestion", "MCFeatures", "FeatureBuilder", "read_mc_jsonl", "read_facts", "LM_PARTS"]

#: The LM feature blocks per choice, each ``dim`` wide.
LM_PARTS = ("joint", "choice", "product", "documents")
_FORMAT = 3  # bump when the cached layout or the extraction changes


@dataclass
class MCQuestion:
    """One multiple-choice question; ``answer`` is the index of the right choice (None if unknown)."""

    id: str
    stem: str
    choices: list[str]
    labels: list[str]
    answer: int | None = None


def read_mc_jsonl(path: str | Path) -> list[MCQuestion]:
    """Read CommonsenseQA / OpenBookQA jsonl (``question.stem``, ``question.choices``, ``answerKey``).

    Raises:
        LoadError: bad JSON, missing fields, fewer than two choices or an answer key not among the labels.
    """
    path = Path(path)
    out: list[MCQuestion] = []
    for line_no, line, row in iter_json_objects(path):
        try:
            q = row["question"]
            stem, choices = q["stem"], q["choices"]
            labels = [c["label"] for c in choices]
            texts = [c["text"] for c in choices]
        except (KeyError, TypeError) as exc:
            raise LoadError(f"not a multiple-choice question ({type(exc).__name__}: {exc})",
                            path=path, line=line_no, value=shorten(line)) from exc
        if len(texts) < 2:
            raise LoadError("a question needs at least 2 choices", path=path, line=line_no, value=labels)
        key = row.get("answerKey")
        if key is not None and key not in labels:
            raise LoadError(f"answerKey not among the choice labels {labels}", path=path, line=line_no,
                            value=key)
        out.append(MCQuestion(id=str(row.get("id", line_no)), stem=stem, choices=texts, labels=labels,
                              answer=labels.index(key) if key is not None else None))
    return out


def read_facts(path: str | Path) -> list[str]:
    """Read a fact-per-line file such as OpenBookQA's ``openbook.txt`` (surrounding quotes removed)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip().strip('"').strip() for line in lines if line.strip().strip('"').strip()]


def _private_temporary(path: Path) -> Path:
    """A name beside ``path`` that no other process writes (runs sharing a cache may save at once)."""
    return path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")


@dataclass
class MCFeatures:
    """Cached features of a list of questions with the same number of choices.

    Attributes:
        lm: LM features, shape ``(n_questions, n_choices, len(LM_PARTS) * dim)``.
        answers: Right choice per question (``-1`` when unknown), shape ``(n_questions,)``.
        graphs: One :class:`QASubgraph` per (question, choice), question-major.
        node_vectors: Embeddings of the graph's concepts (indexed by concept id), shape ``(nodes, dim)``.
        ids: Question ids.
    """

    lm: np.ndarray
    answers: np.ndarray
    graphs: list[QASubgraph]
    node_vectors: np.ndarray
    ids: list[str] = field(default_factory=list)

    @property
    def n_choices(self) -> int:
        return int(self.lm.shape[1])

    def __len__(self) -> int:
        return int(self.lm.shape[0])

    def ungrounded(self) -> np.ndarray:
        """Boolean mask of questions none of whose choices got a concept graph."""
        flags = np.array([g.grounded for g in self.graphs]).reshape(len(self), self.n_choices)
        return np.asarray(~flags.any(axis=1))

    def save(self, path: Path) -> None:
        flat: dict[str, list[np.ndarray]] = {k: [] for k in ("nodes", "types", "relevance", "edge_index", "edge_type")}
        for g in self.graphs:
            flat["nodes"].append(g.nodes)
            flat["types"].append(g.types)
            flat["relevance"].append(g.relevance)
            flat["edge_index"].append(g.edge_index)
            flat["edge_type"].append(g.edge_type)
        node_off = np.cumsum([0] + [len(g.nodes) for g in self.graphs])
        edge_off = np.cumsum([0] + [g.edge_index.shape[1] for g in self.graphs])
        tmp = _private_temporary(path)
        np.savez(tmp, lm=self.lm.astype(np.float16), answers=self.answers, ids=np.asarray(self.ids),
                 node_off=node_off, edge_off=edge_off,
                 nodes=np.concatenate(flat["nodes"]).astype(np.int32),
                 types=np.concatenate(flat["types"]).astype(np.int8),
                 relevance=np.concatenate(flat["relevance"]).astype(np.float16),
                 edge_index=np.concatenate(flat["edge_index"], axis=1).astype(np.int16),
                 edge_type=np.concatenate(flat["edge_type"]).astype(np.int16))
        tmp.replace(path)  # atomic: a killed run, or one reading meanwhile, never sees a half-written cache

    @classmethod
    def load(cls, path: Path, node_vectors: np.ndarray) -> MCFeatures:
        z = np.load(path)
        no, eo = z["node_off"], z["edge_off"]
        nodes, types, rel = z["nodes"].astype(np.int64), z["types"].astype(np.int64), z["relevance"].astype(np.float32)
        ei, et = z["edge_index"].astype(np.int64), z["edge_type"].astype(np.int64)
        graphs = [QASubgraph(nodes[no[i]:no[i + 1]], types[no[i]:no[i + 1]], rel[no[i]:no[i + 1]],
                             ei[:, eo[i]:eo[i + 1]], et[eo[i]:eo[i + 1]]) for i in range(len(no) - 1)]
        return cls(lm=z["lm"].astype(np.float32), answers=z["answers"], graphs=graphs, node_vectors=node_vectors,
                   ids=[str(x) for x in z["ids"]])


class FeatureBuilder:
    """Computes (and caches) :class:`MCFeatures` with a frozen encoder and a concept graph.

    Args:
        graph: The concept graph used for grounding.
        embedder: A :class:`kgllm.embed.Embedder` (frozen encoder); ``.encode``, ``.model_name``, ``.dim``.
        documents: Optional fact sentences (OpenBookQA's open book) retrieved per (question, choice).
        cache_dir: Where node embeddings and feature files are cached; ``None`` disables caching.
        max_nodes: Node budget per subgraph.
        hops: Longest question-choice path (2 or 3).
        top_documents: Facts retrieved per (question, choice).
    """

    def __init__(self, graph: ConceptGraph, embedder, *, documents: Sequence[str] = (),  # noqa: ANN001
                 cache_dir: Path | None = None, max_nodes: int = 32, hops: int = 3,
                 top_documents: int = 2) -> None:
        self.graph = graph
        self.grounder = ConceptGrounder(graph)
        self.embedder = embedder
        self.documents = list(documents)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_nodes, self.hops, self.top_documents = max_nodes, hops, top_documents
        self._node_vectors: np.ndarray | None = None
        self._doc_vectors: np.ndarray | None = None

    def __repr__(self) -> str:
        return (f"FeatureBuilder(encoder={self.embedder.model_name!r}, graph={self.graph!r}, "
                f"documents={len(self.documents)}, max_nodes={self.max_nodes}, hops={self.hops})")

    @property
    def lm_dim(self) -> int:
        return len(LM_PARTS) * int(self.embedder.dim)

    def _key(self, *parts: object, versioned: bool = True) -> str:
        head = [_FORMAT] if versioned else []
        digest = hashlib.sha256(json.dumps([*head, getattr(self.embedder, "cache_identity", self.embedder.model_name), *parts], default=str).encode())
        return digest.hexdigest()[:20]

    @property
    def node_vectors(self) -> np.ndarray:
        """Embeddings of every concept name (computed once, cached per encoder and vocabulary)."""
        if self._node_vectors is None:
            path = None
            if self.cache_dir is not None:
                path = self.cache_dir / f"nodes-{self._key(self.graph.vocab_hash, versioned=False)}.npy"
                if path.exists():
                    self._node_vectors = np.load(path).astype(np.float32)
                    return self._node_vectors
            vectors = self.embedder.encode(self.graph.names).astype(np.float16)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = _private_temporary(path)
                np.save(tmp, vectors)
                tmp.replace(path)
            self._node_vectors = vectors.astype(np.float32)
        return self._node_vectors

    def use_node_vectors(self, vectors: np.ndarray) -> None:
        """Use precomputed concept embeddings (e.g. saved in a model directory) instead of encoding.

        Raises:
            ValueError: the array does not have one row per concept and the encoder's width.
        """
        self._node_vectors = self._fitting(vectors, len(self.graph), "node vectors", "the graph")

    def _fitting(self, vectors: np.ndarray, rows: int, what: str, of: str) -> np.ndarray:
        expected = (rows, int(self.embedder.dim))
        if vectors.shape != expected:
            raise ValueError(f"{what} of shape {vectors.shape} do not fit {of} and encoder {expected}")
        return vectors.astype(np.float32)

    @property
    def document_vectors(self) -> np.ndarray:
        """Embeddings of the fact sentences, shape ``(len(documents), dim)`` (computed once)."""
        if self._doc_vectors is None:
            self._doc_vectors = self.embedder.encode(self.documents) if self.documents else \
                np.zeros((0, int(self.embedder.dim)), dtype=np.float32)
        return self._doc_vectors

    def use_document_vectors(self, vectors: np.ndarray) -> None:
        """Use precomputed fact embeddings (e.g. saved in a model directory) instead of encoding.

        Raises:
            ValueError: the array does not have one row per fact and the encoder's width.
        """
        self._doc_vectors = self._fitting(vectors, len(self.documents), "document vectors", "the facts")

    def _documents_for(self, joint: np.ndarray) -> np.ndarray:
        """Mean embedding of the ``top_documents`` facts nearest each row of ``joint`` (zeros without facts)."""
        if not self.documents or self.top_documents <= 0:
            return np.zeros_like(joint)
        sims = joint @ self.document_vectors.T
        top = np.argpartition(-sims, min(self.top_documents, sims.shape[1]) - 1, axis=1)[:, :self.top_documents]
        return self.document_vectors[top].mean(axis=1)

    def build(self, questions: Sequence[MCQuestion], *, progress: bool = False) -> MCFeatures:
        """Features for ``questions`` (all with the same number of choices), from the cache when present."""
        n_choices = {len(q.choices) for q in questions}
        if len(n_choices) != 1:
            raise ValueError(f"questions must share one number of choices, got {sorted(n_choices)}")
        path = None
        if self.cache_dir is not None:
            key = self._key(self.graph.vocab_hash, self.documents, self.max_nodes, self.hops, self.top_documents,
                            [(q.id, q.stem, q.choices, q.answer) for q in questions])
            path = self.cache_dir / f"features-{key}.npz"
            if path.exists():
                return MCFeatures.load(path, self.node_vectors)
        feats = self.compute(questions, n_choices.pop(), progress=progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            feats.save(path)
        return feats

    def compute(self, questions: Sequence[MCQuestion], k: int, *, progress: bool = False) -> MCFeatures:
        """Features of ``questions`` (``k`` choices each), computed now and not cached."""
        # One encoder call for every text: the model sees larger, length-sorted batches.
        stems = [q.stem for q in questions]
        choices = [c for q in questions for c in q.choices]
        joints = [f"{q.stem} {c}" for q in questions for c in q.choices]
        vectors = self.embedder.encode(stems + choices + joints, progress=progress)
        q_vec, c_vec, joint = np.split(vectors, [len(stems), len(stems) + len(choices)])
        q_rep = np.repeat(q_vec, k, axis=0)
        lm = np.concatenate([joint, c_vec, q_rep * c_vec, self._documents_for(joint)], axis=1)
        nodes = self.node_vectors
        graphs: list[QASubgraph] = []
        items = range(len(questions))
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(items, desc="subgraphs", unit="q")
        for i in items:
            q = questions[i]
            q_concepts = self.grounder.ground(q.stem)
            if self.documents:  # concepts of the retrieved fact join the question side
                best = int(np.argmax(self.document_vectors @ q_vec[i]))
                q_concepts += [c for c in self.grounder.ground(self.documents[best]) if c not in q_concepts]
            a_concepts = [self.grounder.ground(choice, whole=True) for choice in q.choices]
            graphs += extract_subgraphs(self.graph, q_concepts, a_concepts, nodes, joint[i * k:(i + 1) * k],
                                        max_nodes=self.max_nodes, hops=self.hops)
        answers = np.array([q.answer if q.answer is not None else -1 for q in questions], dtype=np.int64)
        return MCFeatures(lm=lm.reshape(len(questions), k, -1).astype(np.float32), answers=answers,
                          graphs=graphs, node_vectors=nodes, ids=[q.id for q in questions])
