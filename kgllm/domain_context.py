"""What the question pipeline keeps per expert: its graph snapshot, relation graph, entity linker and reasoners.

Built once per domain on first use (:func:`build_context`); the reasoners are built per path scorer
(:func:`build_reasoner`): a trained scorer directory, the pack's own scorer, or the zero-shot scorer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kgllm.exceptions import ModelError
from kgllm.linking import EntityLinker
from kgllm.reasoning.learned import LearnedScorer
from kgllm.reasoning.paths import RelationGraph
from kgllm.reasoning.reasoner import PathReasoner
from kgllm.reasoning.scorer import PathScorer, ZeroShotScorer
from kgllm.retrieval.evidence import ExpertEvidence
from kgllm.stores.snapshot import GraphSnapshot

__all__ = ["DomainContext", "build_context", "build_reasoner", "VECTOR_LINKING_MAX_ENTITIES"]

log = logging.getLogger(__name__)

VECTOR_LINKING_MAX_ENTITIES = 20_000
"""Entity-name vector linking is used without an existing index only for domains up to this size
(embedding every name of a large domain takes minutes)."""


@dataclass
class DomainContext:
    """What the pipeline keeps per domain: the snapshot, its relation graph, linker, reasoners and retrievers."""

    name: str
    snapshot: GraphSnapshot
    graph: RelationGraph
    linker: EntityLinker
    relation_text: dict[str, str]
    relation_aliases: dict[str, list[str]] = field(default_factory=dict)
    max_hops: int = 3
    beam: int = 8
    scorer_path: str | None = None
    reasoners: dict[str, PathReasoner] = field(default_factory=dict)
    evidence: ExpertEvidence | None = None  # its retrievers, built on first use by the pipeline


def build_context(kb: Any, domain: str) -> DomainContext:
    """The context of ``domain`` of ``kb`` (a domain in ``kb.domains``) from its store's snapshot."""
    if domain in kb.store.domains():
        snapshot = kb.store.snapshot(domain)
    else:  # a domain with documents only: no graph, so no entity to link
        empty = np.zeros(0, dtype=np.int32)
        snapshot = GraphSnapshot(domain=domain, ids=[], names=[], relations=[], head=empty, rel=empty, tail=empty)
    info = kb.domain_info(domain)
    reasoning = dict(info.get("reasoning") or {})
    vector = None
    if 0 < snapshot.num_nodes <= VECTOR_LINKING_MAX_ENTITIES and hasattr(kb, "index"):
        vector = lambda d=domain: kb.index(d, "entities")  # noqa: E731 - built lazily, once
    linker = EntityLinker.from_snapshot(snapshot, vector_index=vector, embedder=kb.embedder if vector else None,
                                        aliases=info.get("aliases"))
    return DomainContext(
        name=domain, snapshot=snapshot, graph=RelationGraph(snapshot), linker=linker,
        relation_text=kb.relation_text(domain), relation_aliases=dict(info.get("relation_aliases") or {}),
        max_hops=int(reasoning.get("max_hops") or reasoning.get("hops") or 3),
        beam=int(reasoning.get("beam", 8)), scorer_path=info.get("scorer"))


def build_reasoner(ctx: DomainContext, embedder: Any, path: str | None, *, own_scorer: bool) -> PathReasoner:
    """A reasoner over ``ctx``'s graph with the learned scorer in ``path``, or zero-shot without one.

    ``own_scorer``: ``path`` is the pack's own scorer, which no longer fits once the expert's graph has
    grown; then the zero-shot scorer is used, with a warning. A scorer the caller asked for must fit.
    """
    scorer: PathScorer
    if path and own_scorer:
        try:
            scorer = LearnedScorer.load(path, ctx.graph, embedder)
        except ModelError as exc:
            log.warning("expert %r: trained scorer not used (%s); zero-shot instead", ctx.name, exc)
            scorer = ZeroShotScorer(ctx.graph, embedder, ctx.relation_text, aliases=ctx.relation_aliases)
    elif path:
        scorer = LearnedScorer.load(path, ctx.graph, embedder)
    else:
        scorer = ZeroShotScorer(ctx.graph, embedder, ctx.relation_text, aliases=ctx.relation_aliases)
    return PathReasoner(ctx.graph, scorer, max_hops=ctx.max_hops, beam=ctx.beam, relation_text=ctx.relation_text)
