"""Path scorers: how well a relation chain fits a question.

* :class:`ZeroShotScorer` — no training: the relations the question names (cue words from each
  relation's name and text, matched by stem) against the chain's steps, which also gives the hop
  count, plus cosine similarity between the question (topic masked) and the chain written as text
  ("inverse of starring then release year"). Each distinct chain text is embedded once and cached.
* :class:`~kgllm.reasoning.learned.LearnedScorer` (in :mod:`kgllm.reasoning.learned`) — a small
  trained MLP predicting the step at each hop.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from kgllm.embed import Embedder
    from kgllm.reasoning.paths import Chain, RelationGraph

__all__ = ["QuestionState", "PathScorer", "ZeroShotScorer", "kb_fingerprint", "score_many"]


@dataclass
class QuestionState:
    """A question as scorers see it: the masked text and its embedding."""

    text: str
    vector: np.ndarray
    cache: dict[Any, Any] | None = None


class PathScorer(Protocol):
    """Scores chains for a question; larger is better, comparable across chain lengths when ``complete``."""

    name: str

    def prepare(self, texts: Sequence[str]) -> list[QuestionState]:
        """States for (masked) question texts, embedded in one batch."""
        ...

    def score(self, state: QuestionState, chains: Sequence[Chain], *, complete: bool) -> np.ndarray: ...


def score_many(scorer: PathScorer, states: Sequence[QuestionState], chains: Sequence[Sequence[Chain]], *,
               complete: bool) -> list[np.ndarray]:
    """``scorer.score`` for many questions: one batched call when the scorer has ``score_many``
    (the built-in scorers do), else one call per question."""
    if not states:
        return []
    batched = getattr(scorer, "score_many", None)
    if batched is not None:
        return list(batched(states, chains, complete=complete))
    return [scorer.score(state, c, complete=complete) for state, c in zip(states, chains, strict=True)]


def kb_fingerprint(relations: Sequence[str], num_entities: int) -> str:
    """A short hash of what a trained scorer depends on: the relation list and the entity count."""
    payload = json.dumps({"relations": list(relations), "entities": int(num_entities)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script ("режиссёр", "réalisé"); "_" splits
_STOP = frozenset("a an the of by in on to for with and or is are was were be has have had do does did it its "
                  "inverse then that which what who whom whose where when how".split())
# irregular forms a suffix stemmer cannot join to their verb ("wrote" ~ "write")
_IRREGULAR = {"wrote": "write", "written": "write", "spoke": "speak", "spoken": "speak", "made": "make",
              "won": "win", "born": "bear", "sang": "sing", "sung": "sing", "led": "lead"}
# the answer type a wh-word asks for, as words a relation's text may carry
_WH_CUES = {"when": "year date time"}
# a determiner starts a new noun phrase, so a new mention; "that" is left out: after a relation word it
# opens a relative clause about the same thing ("the director that directed it": one mention)
_DETERMINERS = frozenset("the a an its their this these those".split())
# "what year", "which genres": the noun after these names the answer's type, not a hop of its own
_ANSWER_TYPE = frozenset({"what", "which"})
_BREAK = frozenset({"it"})  # the zero-shot mask: mentions on both sides of the topic are never joined
# words saying that the answer shares a node with the topic ("co-starred with", "share actors with"):
# the relation they qualify is walked there and back
_SHARED = frozenset("same together also co share shares shared both".split())


def _stems(text: str) -> list[str]:
    """Content-word stems of ``text`` (lower-cased, stop words dropped)."""
    return [stem for kind, stem in _tokens(text) if kind == "word"]


def _tokens(text: str) -> list[tuple[str, str]]:
    """``(kind, stem)`` per word: kind ``word`` (content), ``wh`` (its answer-type cues), ``shared``,
    ``break`` (the mask) or ``stop``."""
    from nltk.stem import PorterStemmer

    stemmer = _tokens.stemmer = getattr(_tokens, "stemmer", None) or PorterStemmer()  # type: ignore[attr-defined]
    out = []
    for word in _WORD.findall(text.lower()):
        if word in _WH_CUES:
            out.append(("wh", _WH_CUES[word]))
        elif word in _SHARED:
            out.append(("shared", word))
        elif word in _BREAK:
            out.append(("break", word))
        elif word not in _STOP and len(word) > 2:
            out.append(("word", stemmer.stem(_IRREGULAR.get(word, word))))
        else:
            out.append(("stop", word))
    return out


def _same_stem(word: str, cue: str) -> bool:
    """``act`` ~ ``actor``, ``direct`` ~ ``director``, ``screenwrit`` ~ ``write``: a shared 3-4 letter
    start, or the cue's start ending a compound word."""
    k = min(len(word), len(cue), 4)
    if k >= 3 and word[:k] == cue[:k]:
        return True
    return len(cue) >= 4 and len(word) > len(cue) and word.endswith(cue[:4])


class ZeroShotScorer:
    """Question ↔ chain fit without training: relation words named in the question, plus embeddings.

    Two kinds of evidence are added up:

    * *lexical*: each relation has cue stems (from its name and text: ``starred_actors`` → star, actor).
      The question's relation mentions (runs of words matching cues) are matched to the chain's steps;
      the F1 of that matching rewards chains that cover every mentioned relation and nothing else, so
      it also tells the hop count ("who directed the films [X] acted in": two mentions, two hops).
      "when" asks for a year or date.
    * *semantic*: cosine similarity between the question (topic masked) and the chain written as text
      ("inverse of starring then release year"); it decides the direction of steps and what the
      lexical cues cannot see.

    Each distinct chain text is embedded once and cached.

    Args:
        graph: the domain's relation graph (for relation names).
        embedder: the sentence embedder.
        relation_text: natural-language text per relation name.
        aliases: more words questions use for a relation (``has_genre``: kind, type), cues only.
        hop_penalty: subtracted per hop beyond the first, so that a longer chain must fit clearly better.
        lexical_weight: weight of the lexical F1 (cosine similarities differ by about 0.1 between
            chains, so the lexical evidence dominates where the question names relations).
        length_weight: subtracted per hop of difference from the expected hop count (the number of
            relation mentions, at least one).
    """

    name = "zero-shot"
    mask = "it"  # a pronoun reads naturally to a sentence encoder ("who directed it")

    def __init__(self, graph: RelationGraph, embedder: Embedder, relation_text: dict[str, str] | None = None,
                 *, aliases: dict[str, list[str]] | None = None, hop_penalty: float = 0.02, lexical_weight: float = 1.0, length_weight: float = 0.2) -> None:
        self.graph = graph
        self.embedder = embedder
        self.relation_text = relation_text or {}
        self.hop_penalty = hop_penalty
        self.lexical_weight = lexical_weight
        self.length_weight = length_weight
        self._vectors: dict[Chain, np.ndarray] = {}
        self._cues: list[set[str]] = []
        for relation in graph.snapshot.relations:
            # Namespaced names (Freebase "film.film.directed_by") cue by their last part only: the
            # namespace ("film") names the domain, not the relation.
            name = relation.rsplit(".", 1)[-1] if "." in relation and " " not in relation else relation
            words = " ".join((aliases or {}).get(relation, []))
            text = f"{name.replace('_', ' ')} {self.relation_text.get(relation, '')} {words}"
            self._cues.append(set(_stems(re.sub(r"([a-z])([A-Z])", r"\1 \2", text))))

    def chain_text(self, chain: Chain) -> str:
        return " then ".join(self.graph.code_text(code, self.relation_text) for code in chain)

    def named(self, stem: str) -> frozenset[int]:
        """Relations (indices) one of whose cue stems ``stem`` matches."""
        return frozenset(r for r, cues in enumerate(self._cues) if any(_same_stem(stem, c) for c in cues))

    def mentions(self, text: str) -> list[frozenset[int]]:
        """The relations each mention in ``text`` may name, in order.

        Words naming a common relation with only stop words between them are one mention ("imdb
        rating", "released in which years"); a relation qualified by a sharing word ("share actors",
        "co-starred") is mentioned twice (there and back); a wh-word's answer type ("when": a year) is
        a mention when no word names it; the noun of "what year ... released" names the answer's type,
        so it joins a later mention of the same relation instead of counting as a hop.
        """
        out: list[frozenset[int]] = []
        starts: list[int] = []  # token position of each mention
        asked: list[frozenset[int]] = []
        shared: list[int] = []
        previous: frozenset[int] = frozenset()
        answer_type: int | None = None  # index in ``out`` of the mention right after "what"/"which"
        after_wh = False
        for position, (kind, stem) in enumerate(_tokens(text)):
            typed, after_wh = after_wh, kind == "stop" and stem in _ANSWER_TYPE
            if kind == "stop":
                if stem in _DETERMINERS:  # "directed by | the director of": a new noun phrase, a new mention
                    previous = frozenset()
                continue  # other stop words keep a mention open ("released in which years")
            named = self.named(stem) if kind == "word" else frozenset()
            if kind == "wh":
                asked.append(frozenset().union(*(self.named(w) for w in stem.split())))
            elif kind == "shared":
                shared.append(position)
            if named and previous and named & previous:
                out[-1] = previous = named & previous
                continue
            if named:
                if typed and not out:
                    answer_type = len(out)
                out.append(named)
                starts.append(position)
            previous = named
        if answer_type is not None:
            later = [i for i in range(answer_type + 1, len(out)) if out[i] & out[answer_type]]
            if later:
                out[later[0]] = out[later[0]] & out[answer_type]
                del out[answer_type], starts[answer_type]
        named_any = frozenset().union(*out) if out else frozenset()
        doubled = {min(range(len(out)), key=lambda i: (abs(starts[i] - p), starts[i] < p))
                   for p in shared if out}  # the nearest mention, after the sharing word on ties ("share actors")
        # ... unless the question names that relation twice already ("the actor X starred with who")
        out += [out[i] for i in sorted(doubled) if sum(bool(m & out[i]) for m in out) < 2]
        out += [a for a in asked if a and not a & named_any]
        return out

    def _lexical(self, mentions: list[frozenset[int]], chain: Chain, complete: bool) -> float:
        if not mentions:
            return 0.0
        free = list(mentions)
        overlap = 0
        for code in chain:  # greedy matching: the most specific mention first
            options = [m for m in free if (code >> 1) in m]
            if options:
                free.remove(min(options, key=len))
                overlap += 1
        if not complete:  # a prefix is judged by its precision only: later hops may cover the rest
            return overlap / len(chain)
        return 2 * overlap / (len(chain) + len(mentions))

    def _chain_vectors(self, chains: Sequence[Chain]) -> np.ndarray:
        if not chains:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        missing = list(dict.fromkeys(c for c in chains if c not in self._vectors))
        if missing:
            vectors = self.embedder.encode([self.chain_text(c) for c in missing])
            self._vectors.update(zip(missing, vectors, strict=False))
        return np.stack([self._vectors[c] for c in chains])

    def prepare(self, texts: Sequence[str]) -> list[QuestionState]:
        vectors = self.embedder.encode(list(texts))
        return [QuestionState(text, vector, {"mentions": self.mentions(text)})
                for text, vector in zip(texts, vectors, strict=False)]

    def score_many(self, states: Sequence[QuestionState], chains: Sequence[Sequence[Chain]], *,
                   complete: bool) -> list[np.ndarray]:
        """:meth:`score` per question; the chain texts new to the cache are embedded in one call."""
        self._chain_vectors([c for group in chains for c in group])
        return [self.score(state, group, complete=complete) for state, group in zip(states, chains, strict=True)]

    def score(self, state: QuestionState, chains: Sequence[Chain], *, complete: bool) -> np.ndarray:
        if not chains:
            return np.zeros(0, dtype=np.float32)
        sims = self._chain_vectors(chains) @ state.vector
        lengths = np.array([len(c) for c in chains], dtype=np.float32)
        mentions = (state.cache or {}).get("mentions")
        if mentions is None:
            mentions = self.mentions(state.text)
        lexical = np.array([self._lexical(mentions, c, complete) for c in chains], dtype=np.float32)
        # without named relations, one hop is the likeliest reading; a prefix is only judged on overshooting
        expected = max(len(mentions), 1)
        extra = np.abs(lengths - expected) if complete else np.maximum(lengths - expected, 0)
        return (sims + self.lexical_weight * lexical - self.hop_penalty * (lengths - 1)
                - self.length_weight * extra)
