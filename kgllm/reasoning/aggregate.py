"""Answer aggregation: from scored chains to ranked answers, reasoning paths and the facts they use.

Chain scores become weights by a softmax over the kept chains (``temperature``); an answer's score is
the total weight of the chains that reach it, so an answer reached by several good chains ranks above
one reached by a single chain. Equally scored answers are ordered by name, then id, so that every backend
ranks them alike (node indices follow each store's own order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kgllm.reasoning.paths import ChainResult, RelationGraph, decode_step
from kgllm.types import Answer, Fact, Hop, LinkedEntity, ReasoningPath, ScoredAnswer

__all__ = ["AggregatedAnswers", "chain_weights", "aggregate", "explain", "MergedAnswers", "merge_answers"]


@dataclass
class AggregatedAnswers:
    """Answer node indices with scores (best first) and, per answer, the chains reaching it."""

    nodes: np.ndarray
    scores: np.ndarray
    chains: list[list[int]] = field(default_factory=list)


def chain_weights(results: Sequence[ChainResult], temperature: float) -> np.ndarray:
    """Softmax weights of chain scores.

    A score that is not a number (a plugged-in scorer's NaN) weighs nothing; chains scored ``+inf`` share
    all the weight; when no chain has a usable score every weight is 0. Without this, one NaN or inf
    made every weight NaN, and every answer of the question vanished.
    """
    if not results:
        return np.zeros(0)
    scores = np.array([r.score for r in results], dtype=np.float64)
    scores[np.isnan(scores)] = -np.inf
    if np.isposinf(scores).any():
        infinite = np.isposinf(scores).astype(np.float64)
        return infinite / infinite.sum()
    if not np.isfinite(scores).any():
        return np.zeros(scores.size)
    scores = scores / max(temperature, 1e-9)
    weights = np.exp(scores - scores.max())
    return weights / weights.sum()


def aggregate(results: Sequence[ChainResult], *, temperature: float = 1.0, min_weight: float = 1e-3,
              name_rank: np.ndarray | None = None) -> AggregatedAnswers:
    """Sum chain weights per answer node; chains below ``min_weight`` of the total are ignored.

    Answers are ranked by total weight, then by ``name_rank`` (each node's position in (name, id) order:
    :attr:`GraphSnapshot.name_rank <kgllm.stores.snapshot.GraphSnapshot.name_rank>`), or by node index
    without it.
    """
    weights = chain_weights(results, temperature)
    # the best chains always count: with more than 1 / min_weight chains scored alike, every share is
    # under min_weight, and the question would get no answer at all
    floor = min(min_weight, float(weights.max(initial=0.0)))
    used = [i for i, w in enumerate(weights) if w > 0 and w >= floor]
    if not used:
        return AggregatedAnswers(np.zeros(0, dtype=np.int64), np.zeros(0))
    nodes = np.concatenate([results[i].answers for i in used])
    owners = np.concatenate([np.full(results[i].answers.size, i) for i in used])
    unique, inverse = np.unique(nodes, return_inverse=True)
    scores = np.zeros(unique.size)
    np.add.at(scores, inverse, weights[owners])
    order = np.lexsort((unique if name_rank is None else name_rank[unique], -np.round(scores, 9)))
    chains: list[list[int]] = [[] for _ in range(unique.size)]
    position = np.empty(unique.size, dtype=np.int64)
    position[order] = np.arange(unique.size)
    for node_slot, owner in zip(inverse.tolist(), owners.tolist(), strict=False):
        chains[position[node_slot]].append(owner)
    return AggregatedAnswers(unique[order], scores[order], chains)


def explain(graph: RelationGraph, topic: np.ndarray, results: Sequence[ChainResult], answers: AggregatedAnswers, *,
            top_k: int | None, max_paths: int = 5, relation_text: dict[str, str] | None = None,
            method: str = "beam") -> tuple[list[ScoredAnswer], list[ReasoningPath], list[Fact]]:
    """Public objects for the ``top_k`` answers: scored answers, one traced path per (answer, chain)
    for the first ``max_paths`` answers, and the distinct facts those paths use (with provenance)."""
    snap = graph.snapshot
    scored: list[ScoredAnswer] = []
    paths: list[ReasoningPath] = []
    facts: dict[int, Fact] = {}
    limit = answers.nodes.size if top_k is None else min(top_k, answers.nodes.size)
    for rank in range(limit):
        node = int(answers.nodes[rank])
        path_ids: list[int] = []
        if rank < max_paths:
            for owner in answers.chains[rank][:2]:
                result = results[owner]
                edges = graph.trace(topic, result.chain, result.frontiers, node)
                if not edges:
                    continue
                hops = []
                for code, edge in zip(result.chain, edges, strict=False):
                    _, inverse = decode_step(code)
                    if edge not in facts:
                        facts[edge] = snap.fact(edge)
                    fact = facts[edge]
                    head, tail = (fact.tail, fact.head) if inverse else (fact.head, fact.tail)
                    head_name, tail_name = ((fact.tail_name, fact.head_name) if inverse
                                            else (fact.head_name, fact.tail_name))
                    # model_construct: every field is built here from typed arrays, so pydantic's
                    # validation (a third of the cost of a batched ask) would check nothing
                    hops.append(Hop.model_construct(head=head, relation=fact.relation, tail=tail,
                                                    head_name=head_name, tail_name=tail_name, domain=snap.domain,
                                                    inverse=inverse))
                path_ids.append(len(paths))
                paths.append(ReasoningPath.model_construct(hops=hops, score=round(float(result.score), 6),
                                                           method=method))
        scored.append(ScoredAnswer.model_construct(id=snap.ids[node], name=snap.names[node],
                                                   score=round(float(answers.scores[rank]), 6),
                                                   domain=snap.domain, paths=path_ids))
    return scored, paths, list(facts.values())


@dataclass
class MergedAnswers:
    """The answers of several experts as one: ranked answers, paths, facts and linked entities."""

    answers: list[ScoredAnswer]
    paths: list[ReasoningPath]
    facts: list[Fact]
    linked: list[LinkedEntity]


def merge_answers(parts: Sequence[tuple[Answer, str | None]], *, top_k: int | None) -> MergedAnswers:
    """Merge ``(answer, expert name)`` parts: each answer keeps its expert in ``ScoredAnswer.domain`` and an
    answer found by several parts of one expert keeps its best score; paths are concatenated (indexes
    renumbered), facts kept once each."""
    merged: dict[tuple[str, str | None], ScoredAnswer] = {}
    paths: list[ReasoningPath] = []
    facts: list[Fact] = []
    linked: list[LinkedEntity] = []
    seen_facts: set[tuple[str, str, str, str]] = set()
    for answer, expert in parts:
        offset = len(paths)
        paths.extend(answer.paths)
        linked.extend(answer.linked)
        for fact in answer.facts:
            if fact.key not in seen_facts:
                seen_facts.add(fact.key)
                facts.append(fact)
        for item in answer.answers:
            domain = item.domain or expert
            moved = item.model_copy(update={"domain": domain, "paths": [i + offset for i in item.paths]})
            key = (item.id, domain)
            if key not in merged or merged[key].score < moved.score:
                merged[key] = moved
    ranked = sorted(merged.values(), key=ScoredAnswer.rank_key)
    return MergedAnswers(ranked[:top_k] if top_k else ranked, paths, facts, linked)
