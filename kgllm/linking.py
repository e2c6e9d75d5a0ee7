"""Entity linking: question mentions → graph node ids, with scores.

Methods, tried in this order (the first that finds something wins for a mention):

* ``bracket`` — MetaQA-style ``[Tom Hanks]`` mentions, matched exactly (after normalisation);
* ``exact`` / ``alias`` — every word n-gram of the question looked up in a name (and alias) table;
  the longest non-overlapping spans win, spans made only of function words are ignored;
* ``fuzzy`` — rapidfuzz over all names, for bracketed mentions that do not match exactly and for
  questions where nothing matched exactly;
* ``vector`` — nearest entity names in a FAISS index of name embeddings (a fallback for paraphrased
  names), used only when an index provider is given.

Normalisation lower-cases and keeps word characters only, so ``Mr. & Mrs. Smith`` and ``mr mrs smith``
are the same key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kgllm.types import LinkedEntity

if TYPE_CHECKING:
    from kgllm.embed import Embedder
    from kgllm.index import VectorIndex

__all__ = ["EntityLinker", "Mention", "normalize", "STOPWORDS"]

_WORD = re.compile(r"\w+", re.UNICODE)
_BRACKET = re.compile(r"\[([^\[\]]+)\]")

# Words that alone never make a mention (question words, function words, generic nouns of questions).
STOPWORDS = frozenset("""
a an the and or but if of to in on at by for with from as into onto about over under than then that this these
those there here is are was were be been being am do does did done have has had having can could should would
will shall may might must not no nor so too very s t what which who whom whose when where why how whats
i me my we our you your he him his she her it its they them their one ones also both each same other another
film films movie movies share shares shared act acts acted acting star stars starred starring direct directs
directed director directors write writes wrote written writer writers genre genres language languages year years
release released type types kind kinds appear appears appeared people person someone something describe
described mentioned main primary topics tags tag many much all any some
""".split())


def normalize(text: str) -> str:
    """Lower-cased word characters joined by single spaces: the key of the name table."""
    return " ".join(_WORD.findall(text.lower()))


def _name_key(text: str) -> str:
    """:func:`normalize`, or the stripped lower-cased text for a name with no word character
    (a film called ``$``) that would otherwise have no key at all."""
    return normalize(text) or text.strip().lower()


@dataclass(frozen=True)
class Mention:
    """A span of the question (character offsets) and the entities it was linked to."""

    start: int
    end: int
    text: str
    links: tuple[LinkedEntity, ...]

    @property
    def score(self) -> float:
        return self.links[0].score if self.links else 0.0


class EntityLinker:
    """Links question mentions to the nodes of one domain.

    Args:
        domain: the domain the ids belong to.
        ids: entity id per node index.
        names: display name per node index.
        aliases: extra names, ``{alias: entity id}``.
        max_ngram: longest span (in words) looked up.
        fuzzy_cutoff: lowest rapidfuzz score (0-100) accepted.
        vector_index: a callable returning the domain's entity-name :class:`~kgllm.index.VectorIndex`
            (built lazily by the caller); ``None`` disables vector linking.
        embedder: encodes mentions for ``vector_index``.
        vector_cutoff: lowest cosine similarity accepted from the vector index (unrelated text scores
            ~0.25 against entity names with MiniLM, a paraphrased name ~0.8).
    """

    def __init__(self, domain: str, ids: Sequence[str], names: Sequence[str], *,
                 aliases: Mapping[str, str] | None = None, max_ngram: int = 12, fuzzy_cutoff: float = 85.0,
                 vector_index: Callable[[], VectorIndex] | None = None, embedder: Embedder | None = None,
                 vector_cutoff: float = 0.5) -> None:
        self.domain = domain
        self.ids = list(ids)
        self.names = list(names)
        self.max_ngram = max_ngram
        self.fuzzy_cutoff = fuzzy_cutoff
        self._vector_index = vector_index
        self._embedder = embedder
        self.vector_cutoff = vector_cutoff
        self._table: dict[str, list[int]] = {}
        self._alias: set[str] = set()
        for i, name in enumerate(self.names):
            key = _name_key(name)
            if key:
                self._table.setdefault(key, []).append(i)
        position = {eid: i for i, eid in enumerate(self.ids)}
        for alias, eid in (aliases or {}).items():
            key = _name_key(alias)
            if key and eid in position and key not in self._table:
                self._table[key] = [position[eid]]
                self._alias.add(key)
        self._choices: list[str] | None = None
        self._choice_nodes: list[int] | None = None

    @classmethod
    def from_snapshot(cls, snapshot: Any, **kwargs: Any) -> EntityLinker:
        """A linker over a :class:`~kgllm.stores.snapshot.GraphSnapshot`'s ids and names."""
        return cls(snapshot.domain, snapshot.ids, snapshot.names, **kwargs)

    # -- public ----------------------------------------------------------------------------------
    def link(self, question: str, *, limit: int = 5) -> list[LinkedEntity]:
        """Linked entities of ``question``, best first (see :meth:`mentions`)."""
        found: list[LinkedEntity] = []
        for mention in self.mentions(question):
            found.extend(mention.links)
        found.sort(key=lambda item: -item.score)
        return found[:limit]

    def mentions(self, question: str) -> list[Mention]:
        """Mentions with their candidate entities, best mention first."""
        brackets = list(_BRACKET.finditer(question))
        if brackets:
            mentions = [self._bracket(m.start(), m.end(), m.group(1)) for m in brackets]
        else:
            mentions = self._ngrams(question)
            if not mentions:
                mentions = self._fuzzy_question(question)
        if not any(m.links for m in mentions) and self._vector_index is not None:
            mentions = self._vector(question, mentions)
        mentions = [m for m in mentions if m.links]
        mentions.sort(key=lambda m: (-m.score, -(m.end - m.start)))
        return mentions

    def entity_links(self, mention: str, nodes: Iterable[int], score: float, method: str) -> list[LinkedEntity]:
        """:class:`LinkedEntity` objects for node indices (e.g. topic entities given by id)."""
        return list(self._links(mention, nodes, score, method))

    def nodes(self, key: str) -> list[int]:
        """Node indices whose (normalised) name or alias is ``key``."""
        return self._table.get(_name_key(key), [])

    # -- methods -----------------------------------------------------------------------------------
    def _links(self, mention: str, nodes: Iterable[int], score: float, method: str) -> tuple[LinkedEntity, ...]:
        return tuple(LinkedEntity(mention=mention, id=self.ids[i], name=self.names[i], domain=self.domain,
                                  score=round(score, 4), method=method) for i in nodes)

    def _bracket(self, start: int, end: int, text: str) -> Mention:
        key = _name_key(text)
        if key in self._table:
            nodes = self._table[key]
            # a bracket gives the name as written: "[King Kong]" is the film, not the tag "king kong"
            exact = [n for n in nodes if self.names[n] == text.strip()]
            return Mention(start, end, text, self._links(text, exact or nodes, 1.0, "bracket"))
        links = self._fuzzy(text)
        return Mention(start, end, text, links)

    def _ngrams(self, question: str) -> list[Mention]:
        words = list(_WORD.finditer(question))
        keys = [w.group().lower() for w in words]
        spans: list[tuple[int, int, float]] = []
        for i in range(len(words)):
            for j in range(i + 1, min(len(words), i + self.max_ngram) + 1):
                span = keys[i:j]
                if all(k in STOPWORDS or len(k) < 2 for k in span):
                    continue
                key = " ".join(span)
                if key not in self._table:
                    continue
                original = question[words[i].start():words[j - 1].end()]
                # a span written as the entity is written (case included) is more likely meant
                cased = any(self.names[n] == original for n in self._table[key][:20])
                score = 0.9 + 0.02 * min(j - i, 4) + (0.02 if cased else 0.0)
                spans.append((i, j, score))
        # greedy: best (longest, cased) spans first, no overlaps
        spans.sort(key=lambda s: (-s[2], -(s[1] - s[0]), s[0]))
        taken = [False] * len(words)
        mentions: list[Mention] = []
        for i, j, score in spans:
            if any(taken[i:j]):
                continue
            taken[i:j] = [True] * (j - i)
            start, end = words[i].start(), words[j - 1].end()
            text = question[start:end]
            key = " ".join(keys[i:j])
            method = "alias" if key in self._alias else "exact"
            mentions.append(Mention(start, end, text, self._links(text, self._table[key], score, method)))
        return mentions

    def _ensure_choices(self) -> tuple[list[str], list[int]]:
        if self._choices is None:
            self._choices = list(self._table)
            self._choice_nodes = [nodes[0] for nodes in self._table.values()]
        assert self._choice_nodes is not None
        return self._choices, self._choice_nodes

    def _fuzzy(self, text: str) -> tuple[LinkedEntity, ...]:
        from rapidfuzz import fuzz, process

        key = normalize(text)
        if not key:
            return ()
        choices, _ = self._ensure_choices()
        best = process.extract(key, choices, scorer=fuzz.ratio, limit=3, score_cutoff=self.fuzzy_cutoff)
        links: list[LinkedEntity] = []
        for choice, score, _ in best:
            links.extend(self._links(text, self._table[choice], 0.9 * score / 100.0, "fuzzy"))
        return tuple(links)

    def _fuzzy_question(self, question: str) -> list[Mention]:
        """Names appearing approximately inside an unbracketed question (typos, missing punctuation)."""
        from rapidfuzz import fuzz, process

        key = normalize(question)
        if not key:
            return []
        choices, _ = self._ensure_choices()
        long_enough = [c for c in choices if len(c) >= 4 and c not in STOPWORDS]
        best = process.extract(key, long_enough, scorer=fuzz.partial_ratio, limit=5, score_cutoff=90)
        mentions: list[Mention] = []
        for choice, score, _ in best:
            found = question.lower().find(choice)
            start, end = (found, found + len(choice)) if found >= 0 else (0, 0)
            mentions.append(Mention(start, end, choice,
                                    self._links(choice, self._table[choice], 0.8 * score / 100.0, "fuzzy")))
        return mentions

    def _vector(self, question: str, mentions: list[Mention]) -> list[Mention]:
        assert self._vector_index is not None
        if self._embedder is None:
            return mentions
        index = self._vector_index()
        position = {eid: i for i, eid in enumerate(self.ids)}
        queries = [m.text for m in mentions] or [question]
        spans = [(m.start, m.end) for m in mentions] or [(0, 0)]
        vectors = self._embedder.encode(queries)
        out: list[Mention] = []
        for (start, end), text, hits in zip(spans, queries, index.search(vectors, 3), strict=False):
            nodes = [(position[eid], score) for eid, score in hits
                     if eid in position and float(score) >= self.vector_cutoff]
            links = tuple(link for node, score in nodes
                          for link in self._links(text, [node], 0.8 * max(float(score), 0.0), "vector"))
            out.append(Mention(start, end, text, links))
        return out
