"""Learned rules attached to an expert: edges missing from its graph, inferred while answering.

An expert may carry a rule set (``kgllm train rules``; attached with ``kb.use_rules(domain, DIR)``).
During ``ask``, the relation the question asks for is read off the reasoner's own path scorer (the
best-scoring one-hop chain). When the topic entity has *no stored edge* of that relation, the rules
that predict it are applied to the topic: every tail they derive with confidence at least
``min_confidence`` becomes an answer whose path is one inferred hop, with :attr:`Hop.rule
<kgllm.types.Hop.rule>` naming the rule, its confidence and the concrete path of stored edges that
grounds it (those edges join ``Answer.facts`` with their provenance). Stored knowledge comes first:
a relation the graph holds for the topic is never overridden by rules.

Scores: an inferred answer scores the rules' confidence ``c`` (best rule, see
:meth:`RuleSet.score <kgllm.reasoning.rules.RuleSet.score>`); the reasoner's own answers for that
question are scaled by ``1 - c_max``, since the chains they come from do not answer the relation asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kgllm.exceptions import ModelError
from kgllm.reasoning.paths import RelationGraph, decode_step, step_code
from kgllm.reasoning.rules import RuleSet
from kgllm.reasoning.scorer import PathScorer, QuestionState
from kgllm.stores.snapshot import GraphSnapshot
from kgllm.types import Answer, Fact, Hop, ReasoningPath, ScoredAnswer

__all__ = ["ExpertRules", "DEFAULT_MIN_CONFIDENCE", "infer_missing_edges"]

DEFAULT_MIN_CONFIDENCE = 0.5
"""Rules below this confidence add no edge (rule confidences are support / groundings)."""
MAX_INFERRED = 10


@dataclass
class ExpertRules:
    """A rule set checked against one expert's graph.

    Attributes:
        rules: the rules.
        directory: where they were loaded from.
        min_confidence: the least score an inferred edge needs.
    """

    rules: RuleSet
    directory: str
    min_confidence: float = DEFAULT_MIN_CONFIDENCE

    @classmethod
    def load(cls, directory: str | Path, snapshot: GraphSnapshot | None = None, *,
             min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> ExpertRules:
        """Load a rule directory; with ``snapshot``, check that the graph has the relations they predict.

        Raises:
            ModelError: not a rule set, a confidence outside (0, 1], or rules for relations the
                expert's graph lacks (the first ones are named).
        """
        if not 0.0 < float(min_confidence) <= 1.0:
            raise ModelError(f"{directory}: min_confidence must be in (0, 1], got {min_confidence!r}")
        rules = RuleSet.load(directory)
        if snapshot is not None:
            unknown = sorted({r.head[0] for r in rules.rules if snapshot.relation_index(r.head[0]) is None})
            if unknown:
                raise ModelError(f"{directory}: rules predict relations absent from domain "
                                 f"{snapshot.domain!r}: {unknown[:5]}; its relations: {list(snapshot.relations)[:10]}")
        return cls(rules, str(Path(directory).resolve()), float(min_confidence))

    @classmethod
    def from_info(cls, info: dict[str, Any], snapshot: GraphSnapshot) -> ExpertRules | None:
        """The rules recorded in a domain's metadata (``{"dir": ..., "min_confidence": ...}``), if any."""
        entry = info.get("rules")
        if not entry:
            return None
        return cls.load(entry["dir"], snapshot, min_confidence=entry.get("min_confidence", DEFAULT_MIN_CONFIDENCE))

    def asked_step(self, graph: RelationGraph, scorer: PathScorer, state: QuestionState) -> int | None:
        """The one-hop step (relation, direction) the question asks for, when rules predict it."""
        codes = [step_code(r, inv) for r in range(len(graph.snapshot.relations)) for inv in (False, True)]
        if not codes:
            return None
        best = codes[int(np.argmax(scorer.score(state, [(c,) for c in codes], complete=True)))]
        rel, inverse = decode_step(best)
        return best if self.rules.for_head(graph.snapshot.relations[rel], inverse) else None


def infer_missing_edges(answer: Answer, expert: ExpertRules, graph: RelationGraph, scorer: PathScorer,
                        state: QuestionState, topic: Sequence[int], *, top_k: int | None = None) -> bool:
    """Add rule-inferred answers to ``answer`` (in place) for topics missing the asked relation.

    Returns:
        True when an edge was inferred.
    """
    code = expert.asked_step(graph, scorer, state)
    if code is None:
        return False
    snap = graph.snapshot
    rel, inverse = decode_step(code)
    relation = snap.relations[rel]
    found: dict[int, tuple[float, ReasoningPath]] = {}
    facts: list[Fact] = []
    for node in topic:
        if graph.expand(np.array([node], dtype=np.int64), code).size:  # stored: nothing to infer
            continue
        inferred = expert.rules.infer(snap, int(node), relation, inverse=inverse, top_k=top_k or MAX_INFERRED,
                                      min_score=expert.min_confidence)
        for tail, score, why in inferred:
            # the score is the best confidence plus a tie-breaking term (RuleSet.score): a rule just under
            # min_confidence (0.4996 against 0.5) must not pass on that term alone (RuleSet.infer checks the
            # confidence too; this keeps the bound whatever the aggregation)
            if why.rule.confidence < expert.min_confidence or (tail in found and found[tail][0] >= score):
                continue
            hop = why.hop(snap.ids[node], relation, snap.ids[tail], domain=snap.domain,
                          head_name=snap.names[node], tail_name=snap.names[tail], inverse=inverse)
            found[tail] = (score, ReasoningPath(hops=[hop], score=score, method="rule"))
            facts.extend(_fact(snap, h) for h in why.path.hops)
    if not found:
        return False
    # a rule score is its confidence plus a small tie-breaking term (RuleSet.score), so a rule of
    # confidence ~1 scores over 1: capped, lest inferred answers score above 1 and the reasoner's below 0
    found = {tail: (min(score, 1.0), path) for tail, (score, path) in found.items()}
    top = max(score for score, _ in found.values())
    answers = {a.id: a.model_copy(update={"score": round(a.score * (1.0 - top), 6)}) for a in answer.answers}
    for tail, (score, path) in found.items():
        answer.paths.append(path)
        ident = snap.ids[tail]
        old = answers.get(ident)
        paths = [len(answer.paths) - 1, *(old.paths if old else [])]
        answers[ident] = ScoredAnswer(id=ident, name=snap.names[tail], score=round(max(score, old.score if old else 0.0), 6),
                                      domain=snap.domain, paths=paths)
    ranked = sorted(answers.values(), key=ScoredAnswer.rank_key)
    answer.answers = ranked[:top_k] if top_k else ranked
    known = {f.key for f in answer.facts}
    for fact in facts:
        if fact.key not in known:
            known.add(fact.key)
            answer.facts.append(fact)
    return True


def _fact(snap: GraphSnapshot, hop: Hop) -> Fact:
    """The stored fact (with provenance) a grounding hop walks."""
    head, tail = (hop.tail, hop.head) if hop.inverse else (hop.head, hop.tail)
    h, t, r = snap.index[head], snap.index[tail], snap.relation_index(hop.relation)
    for edge in snap.out_edges(h):
        if int(snap.tail[edge]) == t and int(snap.rel[edge]) == r:
            return snap.fact(int(edge))
    raise AssertionError(f"grounding hop {hop} is not a stored edge")  # _ground walks stored edges only
