"""LLM-guided exploration (Think-on-Graph style): the language model prunes the relations at each hop.

Used only when an LLM is given. At each hop the explorer lists the steps that leave the current
frontier (``1. directed by``, ``2. inverse of starred actors`` ...), asks the model which ones lead
towards the answer (or ``0`` to stop; a reply without numbers is read for the steps' names), walks the
chosen ones on the graph and continues from the kept chains. The chains it ends with are ranked by the
path scorer, so the model only prunes; every answer is still reached by real edges, and every prompt is
one ``llm.generate`` call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kgllm.reasoning.paths import Chain, ChainResult, RelationGraph

if TYPE_CHECKING:
    from kgllm.reasoning.scorer import PathScorer, QuestionState

__all__ = ["LLMExplorer", "PROMPT"]

PROMPT = """You answer questions by walking a knowledge graph, one relation at a time.
Question: {question}
Walked so far: {walked}
Relations that can be followed next:
{options}
Reply with the numbers of at most {width} relations that lead towards the answer, best first, separated by
commas; reply 0 if the entities reached so far already answer the question."""

_NUMBER = re.compile(r"\d+")


class LLMExplorer:
    """Relation pruning by a language model, hop by hop.

    Args:
        graph: the domain's relation graph.
        llm: any :class:`~kgllm.llm.base.LLM` (``generate(prompt, max_tokens=..., temperature=...)``).
        width: relations kept per chain and hop.
        max_hops: longest chain.
        relation_text: relation texts for the prompt.
    """

    def __init__(self, graph: RelationGraph, llm: Any, *, width: int = 2, max_hops: int = 3,
                 relation_text: dict[str, str] | None = None) -> None:
        self.graph = graph
        self.llm = llm
        self.width = width
        self.max_hops = max_hops
        self.relation_text = relation_text or {}
        self.calls = 0
        self.tokens = {"prompt": 0, "completion": 0}  # of the calls made (not those served from the cache)

    def _choose(self, question: str, chain: Chain, codes: Sequence[int]) -> list[int]:
        walked = " then ".join(self.graph.code_text(c, self.relation_text) for c in chain) or "(nothing yet)"
        options = "\n".join(f"{i}. {self.graph.code_text(c, self.relation_text)}" for i, c in enumerate(codes, 1))
        prompt = PROMPT.format(question=question, walked=walked, options=options, width=self.width)
        generation = self.llm.generate(prompt, max_tokens=16, temperature=0.0)
        reply = generation.text
        if not getattr(generation, "cached", False):  # served from the LLM cache: no call was made
            self.calls += 1
            self.tokens["prompt"] += int(getattr(generation, "prompt_tokens", 0) or 0)
            self.tokens["completion"] += int(getattr(generation, "completion_tokens", 0) or 0)
        if not _NUMBER.search(reply):  # no number at all: the model may have named the relations instead
            return self._named(reply, codes)
        picked: list[int] = []
        for token in _NUMBER.findall(reply):
            number = int(token)
            if number == 0:
                break
            if 1 <= number <= len(codes) and codes[number - 1] not in picked:
                picked.append(codes[number - 1])
            if len(picked) >= self.width:
                break
        return picked

    def _named(self, reply: str, codes: Sequence[int]) -> list[int]:
        """The options a reply names by their text (``directed by``, ``directed_by``), in the reply's order; a
        name inside a longer one that also matched (``starring`` in ``inverse of starring``) does not count."""
        text = " ".join(reply.lower().replace("_", " ").split())
        spans: list[tuple[int, int, int]] = []
        for code in codes:
            name = " ".join(self.graph.code_text(code, self.relation_text).lower().replace("_", " ").split())
            if name:
                spans += [(m.start(), m.end(), code) for m in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", text)]
        named: list[int] = []
        for start, end, code in sorted(spans):
            inside = any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in spans)
            if not inside and code not in named:
                named.append(code)
        return named[: self.width]

    def explore(self, question: str, topic: np.ndarray, scorer: PathScorer, state: QuestionState, *,
                keep: int = 10) -> list[ChainResult]:
        """Chains chosen by the LLM from ``topic``, ranked by ``scorer`` (best first)."""
        topic = np.unique(np.asarray(topic, dtype=np.int64))
        open_chains: list[tuple[Chain, list[np.ndarray]]] = [((), [])]
        finished: list[tuple[Chain, list[np.ndarray]]] = []
        for _ in range(self.max_hops):
            grown: list[tuple[Chain, list[np.ndarray]]] = []
            for chain, frontiers in open_chains:
                current = frontiers[-1] if frontiers else topic
                codes = self.graph.available(current).tolist()
                picked = self._choose(question, chain, codes) if codes else []
                longer: list[tuple[Chain, list[np.ndarray]]] = []
                for code in picked:
                    nodes = np.setdiff1d(self.graph.expand(current, code), topic, assume_unique=True)
                    if nodes.size:
                        longer.append((chain + (code,), frontiers + [nodes]))
                if not longer and chain:  # stopped, or every chosen step leads nowhere: the chain ends here
                    finished.append((chain, frontiers))
                grown.extend(longer)
            if not grown:
                break
            open_chains = grown
        else:
            finished.extend(open_chains)
        if not finished:
            finished = [c for c in open_chains if c[0]]
        if not finished:
            return []
        scores = scorer.score(state, [chain for chain, _ in finished], complete=True)
        results = [ChainResult(chain, float(s), fr) for (chain, fr), s in zip(finished, scores, strict=True)]
        results.sort(key=lambda r: -r.score)
        return results[:keep]
