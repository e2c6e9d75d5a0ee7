"""Cross-expert chains: a chain found in one expert's graph continues in another's.

An answer of the first expert that is also an entity of the second (same normalized name, or an
explicit ``same_as`` pair in the second expert's manifest) is a bridge: the chain takes a
``same_as`` hop into the second graph and goes on there with that expert's reasoner. Every hop
records the expert (``Hop.domain``) whose graph holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kgllm.experts import normalize_name
from kgllm.reasoning.scorer import ZeroShotScorer
from kgllm.types import Answer, Hop, ReasoningPath, ScoredAnswer

if TYPE_CHECKING:
    from pathlib import Path

    from kgllm.domain_context import DomainContext

__all__ = ["SAME_AS", "bridge_nodes", "same_as_pairs", "named_relations", "cross_expert_answers"]

SAME_AS = "same_as"
MAX_BRIDGES = 20


def bridge_nodes(target: DomainContext, names: dict[str, str], explicit: dict[str, str] | None = None
                 ) -> dict[str, list[int]]:
    """For entity ids of another expert (``id -> display name``), the nodes of ``target`` that are them:
    the ``explicit`` mapping (other id -> target id) first, else the same normalized name."""
    index = getattr(target, "_normalized_names", None)
    if index is None:
        index = {}
        for node, name in enumerate(target.snapshot.names):
            index.setdefault(normalize_name(name), []).append(node)
        target._normalized_names = index  # type: ignore[attr-defined]  # cached per domain context
    found: dict[str, list[int]] = {}
    for eid, name in names.items():
        linked = target.snapshot.node((explicit or {}).get(eid, "\x00"))
        nodes = [linked] if linked is not None else index.get(normalize_name(name), [])
        if nodes:
            found[eid] = nodes
    return found


def same_as_pairs(kb: Any, first: str, target: str) -> dict[str, str]:
    """Explicit ``same_as`` links between two experts' manifests, as ``first id -> target id``."""
    pairs: dict[str, str] = {}
    for pair in kb.domain_info(first).get("same_as") or []:  # declared in the first expert's pack
        if pair.get("same_as_domain") == target and pair.get("domain") in (None, first):
            pairs[pair["entity"]] = pair["same_as_entity"]
    for pair in kb.domain_info(target).get("same_as") or []:  # declared in the target's pack
        if pair.get("same_as_domain") == first and pair.get("domain") in (None, target):
            pairs.setdefault(pair["same_as_entity"], pair["entity"])
    return pairs


def named_relations(pipeline: Any, ctx: DomainContext, question: str) -> frozenset[str]:
    """The relations of ``ctx``'s graph that ``question`` names by their cue words (name, text or aliases;
    see :class:`ZeroShotScorer`), whatever scorer the expert uses."""
    cues = getattr(ctx, "_relation_cues", None)
    if cues is None:
        cues = ZeroShotScorer(ctx.graph, pipeline.kb.embedder, ctx.relation_text, aliases=ctx.relation_aliases)
        ctx._relation_cues = cues  # type: ignore[attr-defined]  # cached per domain context
    relations = ctx.graph.snapshot.relations
    return frozenset(relations[r] for mention in cues.mentions(question) for r in mention)


def cross_expert_answers(pipeline: Any, answer: Answer, first: str, target: DomainContext, masked_question: str,
                         *, model: str | Path | None = None, top_k: int | None = 10) -> Answer | None:
    """``answer`` (from expert ``first``) extended by chains continuing in ``target``; ``None`` if no bridge.

    The continued chains' answers replace the first expert's: those were the chain's middle (the
    countries of "films tagged with the countries that border Germany"), not what the question asks.
    Answers of other experts consulted for the question (merged into ``answer``) are kept.
    Each is scored by the first chain's answer score times the continuation's answer score. The first
    expert's own chains stay in ``paths`` after the continued ones, as evidence.
    """
    sources = [item for item in answer.answers[:MAX_BRIDGES] if item.paths and item.domain in (None, first)]
    # A crossed chain needs a hop the question names, in either graph: "what is the capital of France"
    # names no relation of a country graph or a concept graph, and France's continent's concepts are no answer.
    hop_relations = {hop.relation for item in sources for hop in answer.paths[item.paths[0]].hops}
    if not (named_relations(pipeline, target, masked_question)
            or hop_relations & named_relations(pipeline, pipeline.context(first), masked_question)):
        return None
    explicit = same_as_pairs(pipeline.kb, first, target.name)
    bridges = bridge_nodes(target, {item.id: item.name for item in sources}, explicit)
    if not bridges:
        return None
    by_node: dict[int, ScoredAnswer] = {}
    for item in sources:  # best first: two answers that are one entity there ("France", "france") continue once,
        for node in bridges.get(item.id, []):  # from the better one
            by_node.setdefault(node, item)
    reasoner = pipeline.reasoner(target, model)
    state = reasoner.prepare([masked_question])[0]
    topic = sorted(by_node)
    result = reasoner.reason(state, topic, top_k=None, max_hops=1)
    # reason() traces paths for its first 5 answers only, and only an answer with a path is continued:
    # every answer needs one (the first ``top_k`` by the continuation's score need not be the first by
    # the product of scores that ranks the continued chains)
    result = reasoner.explained(result, topic, top_k=None, max_paths=len(result.answers))
    snapshot = target.snapshot
    continued = {item.id: item.score for item in result.answers}
    paths: list[ReasoningPath] = []
    scores: dict[str, tuple[float, list[int]]] = {}
    for continuation in result.paths:
        start = snapshot.node(continuation.start)
        source = by_node.get(start) if start is not None else None
        if start is None or source is None:
            continue
        before = answer.paths[source.paths[0]].hops
        link = Hop(head=source.id, relation=SAME_AS, tail=continuation.start, head_name=source.name,
                   tail_name=snapshot.names[start], domain=target.name)
        # Answer scores are comparable across scorers (path scores are not: the learned ones are
        # log-probabilities), so the chain scores the bridge's answer score times the continuation's.
        score = source.score * continued.get(continuation.end, 0.0)
        paths.append(ReasoningPath(hops=[*before, link, *continuation.hops], score=score, method="cross-expert"))
        best, ids = scores.get(continuation.end, (0.0, []))
        scores[continuation.end] = (max(best, score), [*ids, len(paths) - 1])
    if not paths:
        return None
    crossed = {(target.name, eid): ScoredAnswer(id=eid, name=snapshot.names[snapshot.index[eid]],
                                                score=round(score, 6), domain=target.name, paths=ids)
               for eid, (score, ids) in scores.items()}
    # Answers of the other experts consulted (merged before) are no chain's middle: they stay, their
    # paths renumbered after the continued chains; one the chains reach too keeps its better score.
    for item in answer.answers:
        if item.domain in (None, first):
            continue
        own = item.model_copy(update={"paths": [len(paths) + i for i in item.paths]})
        other = crossed.get((item.domain, item.id))
        if other is not None:
            better, worse = (own, other) if own.rank_key() <= other.rank_key() else (other, own)
            own = better.model_copy(update={"paths": list(dict.fromkeys(better.paths + worse.paths))})
        crossed[(item.domain, item.id)] = own
    ranked = sorted(crossed.values(), key=ScoredAnswer.rank_key)
    kept, paths = _cited_only(ranked[:top_k] if top_k else ranked, paths)
    walked = {_fact_key(hop) for path in paths for hop in path.hops if hop.domain == target.name}
    seen = {f.key for f in answer.facts}
    facts = list(answer.facts) + [f for f in result.facts if f.key in walked and f.key not in seen]
    return answer.model_copy(update={"answers": kept, "paths": paths + list(answer.paths), "facts": facts})


def _cited_only(answers: list[ScoredAnswer], continued: list[ReasoningPath]
                ) -> tuple[list[ScoredAnswer], list[ReasoningPath]]:
    """The continued chains that ``answers`` cite (every answer of the continuation has its chains, so
    thousands may be built for a popular bridge), and ``answers`` with their path indexes renumbered;
    indexes past the continued chains (the first expert's paths, kept whole) move down alike."""
    used = sorted({i for item in answers for i in item.paths if i < len(continued)})
    position = {old: new for new, old in enumerate(used)}
    shift = len(continued) - len(used)
    renumbered = [item.model_copy(update={"paths": [position[i] if i < len(continued) else i - shift
                                                    for i in item.paths]}) for item in answers]
    return renumbered, [continued[i] for i in used]


def _fact_key(hop: Hop) -> tuple[str, str, str, str]:
    """The key of the stored fact a hop walks (an inverse hop walks it from its tail)."""
    head, tail = (hop.tail, hop.head) if hop.inverse else (hop.head, hop.tail)
    return (hop.domain or "", head, hop.relation, tail)
