"""Entity linking: question mentions → graph node ids, with scores.

Methods, tried in this order (the first that finds something wins for a mention):

* ``bracket`` — MetaQA-style ``[Tom Hanks]`` mentions, matched exactly (after normalisation); when no
  bracket names an entity (exactly, fuzzily or by the vector index), the words outside the brackets are
  linked as in a question without any (``who directed Kismet [1944 film]``);
* ``exact`` / ``alias`` — every word n-gram of the question looked up in a name (and alias) table;
  the longest non-overlapping spans win, spans made only of function words are ignored;
* ``fuzzy`` — rapidfuzz over all names, for bracketed mentions that do not match exactly and for
  questions where nothing matched exactly (word spans of the question against whole names), or where a
  span of two content words or more holds a word no exact match covers (``Forest Gump`` is the film,
  not the name ``forest`` and a stray word). A fuzzy
  match may differ from the name by a few typing errors only (:func:`typo_budget`: none for names of
  under 5 characters, one per 8 characters otherwise), and a lone word of an unbracketed question must
  have 9 characters or more: short and common words (``hello`` → ``hell``, ``thanks`` → ``Shanks``) are
  words of their own, not misspelled names. A lone word also links to its singular or stem when that is
  a name (``animals`` → ``animal``, ``rounded`` → ``round``);
* ``vector`` — nearest entity names in a FAISS index of name embeddings (a fallback for paraphrased
  names), used only when an index provider is given. With no mention to embed, the whole question is
  embedded, which needs a higher similarity (``question_vector_cutoff``).

Normalisation lower-cases and keeps word characters only, so ``Mr. & Mrs. Smith`` and ``mr mrs smith``
are the same key.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kgllm.stores.snapshot import name_order
from kgllm.types import LinkedEntity

if TYPE_CHECKING:
    from kgllm.embed import Embedder
    from kgllm.index import VectorIndex

__all__ = ["EntityLinker", "Mention", "normalize", "typo_budget", "STOPWORDS"]

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
    r"""Lower-cased word characters joined by single spaces: the key of the name table.

    NFC first: a name written with combining accents (``Zoe\u0308``) gets the key of its composed spelling
    (``\w`` does not match a combining mark). The pipeline puts questions in NFC too.
    """
    return " ".join(_WORD.findall(_fold(text)))


def _fold(text: str) -> str:
    r"""NFC, lower-cased, with the Turkish dotted capital I read as I: ``"İ".lower()`` is ``i`` plus a
    combining dot, which ``\w`` does not match, so ``İstanbul`` was keyed ``i stanbul`` and linked neither
    as written in a plain question nor typed ``istanbul``."""
    return unicodedata.normalize("NFC", text).replace("\u0130", "I").lower()


def _name_key(text: str) -> str:
    """:func:`normalize`, or the stripped lower-cased text for a name with no word character
    (a film called ``$``) that would otherwise have no key at all."""
    return normalize(text) or _fold(text).strip()


# fuzzy matching: shorter names must match exactly; then one edit per FUZZY_CHARS_PER_EDIT characters;
# a lone word of a plain question needs FUZZY_MIN_WORD_CHARS characters
FUZZY_MIN_CHARS = 5
FUZZY_CHARS_PER_EDIT = 8
FUZZY_MIN_WORD_CHARS = 9
# vector links: extra neighbours fetched so that ties at the third place are broken by name, not index order
VECTOR_TIE_SLACK = 5

# inflections undone for a lone word of a plain question ("animals" -> "animal"): (suffix, replacement)
_INFLECTIONS = (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"))


def typo_budget(written: str, name: str, *, bracketed: bool = True) -> int:
    """How many edits (insertions, deletions, substitutions, swaps of neighbours) a fuzzy match of the
    normalised text ``written`` to the normalised name ``name`` may need.

    None when either is under ``FUZZY_MIN_CHARS`` characters, else one per ``FUZZY_CHARS_PER_EDIT``
    characters of the shorter, at least one. A span of an unbracketed question with a single content word
    is most likely a word meant as written (``thanks``, not the film ``Shanks``; ``produces``, not
    ``producer``): it gets one edit only when that word has ``FUZZY_MIN_WORD_CHARS`` characters or more.
    """
    shorter = min(len(written), len(name))
    if shorter < FUZZY_MIN_CHARS:
        return 0
    content = [w for w in written.split() if w not in STOPWORDS]
    if not bracketed and len(content) <= 1:
        return 1 if content and min(len(content[0]), shorter) >= FUZZY_MIN_WORD_CHARS else 0
    return max(1, shorter // FUZZY_CHARS_PER_EDIT)


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
        vector_cutoff: lowest cosine similarity accepted from the vector index for a mention (unrelated
            text scores ~0.25 against entity names with MiniLM, a paraphrased name ~0.8).
        question_vector_cutoff: the same when the whole question is embedded (no mention found): a
            question naming an entity scores ~0.7-0.8 against its name, while chit-chat reaches ~0.6
            against some name of a large graph ("hello there" vs "say hello" 0.57).
        degrees: edges per node index. Between mentions of equal score, the one naming the better
            connected entity is taken as the topic: "Where is a fox usually found?" is about "fox"
            (33 commonsense edges), not "usually" (16); a longer mention only breaks the remaining ties.
    """

    def __init__(self, domain: str, ids: Sequence[str], names: Sequence[str], *,
                 aliases: Mapping[str, str] | None = None, max_ngram: int = 12, fuzzy_cutoff: float = 85.0,
                 vector_index: Callable[[], VectorIndex] | None = None, embedder: Embedder | None = None,
                 vector_cutoff: float = 0.5, question_vector_cutoff: float = 0.7,
                 degrees: Sequence[int] | None = None) -> None:
        self.domain = domain
        self.degrees = list(degrees) if degrees is not None else [0] * len(ids)
        self.ids = list(ids)
        self.names = list(names)
        self.max_ngram = max_ngram
        self.fuzzy_cutoff = fuzzy_cutoff
        self._vector_index = vector_index
        self._embedder = embedder
        self.vector_cutoff = vector_cutoff
        self.question_vector_cutoff = question_vector_cutoff
        self._table: dict[str, list[int]] = {}
        self._alias: set[str] = set()
        # names in (name, id) order, not node order (which differs between backends): ties between
        # candidates (fuzzy matches, nodes sharing a key) then come out the same on every backend
        for i in name_order(self.names, self.ids):
            name = self.names[i]
            key = _name_key(name)
            if key:
                self._table.setdefault(key, []).append(i)
        position = self._position = {eid: i for i, eid in enumerate(self.ids)}
        for alias, eid in (aliases or {}).items():
            key = _name_key(alias)
            if key and eid in position and key not in self._table:
                self._table[key] = [position[eid]]
                self._alias.add(key)
        self._choices: list[str] | None = None
        self._choice_nodes: list[int] | None = None
        self._by_length: dict[int, list[str]] | None = None

    @classmethod
    def from_snapshot(cls, snapshot: Any, **kwargs: Any) -> EntityLinker:
        """A linker over a :class:`~kgllm.stores.snapshot.GraphSnapshot`'s ids, names and node degrees."""
        degrees = np.bincount(np.concatenate([snapshot.head, snapshot.tail]), minlength=snapshot.num_nodes)
        return cls(snapshot.domain, snapshot.ids, snapshot.names, degrees=degrees.tolist(), **kwargs)

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
        mentions = [self._bracket(m.start(), m.end(), m.group(1)) for m in _BRACKET.finditer(question)]
        if mentions and not any(m.links for m in mentions) and self._vector_index is not None:
            mentions = self._vector(question, mentions)  # a bracket marks the entity, perhaps paraphrased
        if not any(m.links for m in mentions):
            # brackets are honoured, not required: when none names an entity ("who directed Kismet [1944
            # film]"), the words outside them (blanked, so offsets stay those of the question) are looked up
            # as in a question without brackets
            outside = _BRACKET.sub(lambda m: " " * len(m.group()), question)
            exact = self._ngrams(outside)
            plain = self._fuzzy_question(outside, exact) if exact else self._fuzzy_question(outside)
            if not plain and not mentions and self._vector_index is not None:
                plain = self._vector(question, plain)  # no mention at all: the whole question is embedded
            mentions = plain or mentions
        mentions = [m for m in mentions if m.links]
        mentions.sort(key=lambda m: (-m.score, -self._best_degree(m), -(m.end - m.start)))
        return mentions

    def _best_degree(self, mention: Mention) -> int:
        position = self._position
        return max((self.degrees[position[link.id]] for link in mention.links if link.id in position), default=0)

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
        keys = [_fold(w.group()) for w in words]  # as names are keyed
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
                score = round(0.9 + 0.02 * min(j - i, 4) + (0.02 if cased else 0.0), 4)  # ties: longest first
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
        from rapidfuzz.distance import OSA

        key = normalize(text)
        if not key:
            return ()
        choices, _ = self._ensure_choices()
        best = process.extract(key, choices, scorer=fuzz.ratio, limit=3, score_cutoff=self.fuzzy_cutoff)
        links: list[LinkedEntity] = []
        for choice, score, _ in best:
            if OSA.distance(key, choice) <= typo_budget(key, choice):
                links.extend(self._links(text, self._table[choice], 0.9 * score / 100.0, "fuzzy"))
        return tuple(links)

    def _fuzzy_question(self, question: str, exact: list[Mention] | None = None) -> list[Mention]:
        """Names written approximately (typos, missing punctuation) as word spans of an unbracketed
        question; each span is compared with whole names, within :func:`typo_budget`.

        With ``exact`` mentions, only spans of two content words or more that hold a content word no exact
        mention covers are tried ("Forest Gump" where "forest" is a name); such a span replaces the exact
        mentions inside it (none may overlap it partly), and the result is ``exact`` with those changes.
        """
        from rapidfuzz import fuzz, process
        from rapidfuzz.distance import OSA

        if self._by_length is None:
            self._by_length = {}
            for choice in self._ensure_choices()[0]:
                self._by_length.setdefault(len(choice), []).append(choice)
        words = list(_WORD.finditer(question))
        keys = [_fold(w.group()) for w in words]  # as names are keyed
        content = [k not in STOPWORDS and len(k) >= 2 for k in keys]
        covered = [any(m.start <= w.start() and w.end() <= m.end for m in exact or ()) for w in words]
        spans: list[tuple[int, int, float, list[str]]] = []
        for i in range(len(words)):
            for j in range(i + 1, min(len(words), i + self.max_ngram) + 1):
                if not any(content[i:j]):
                    continue
                if exact is not None:
                    start, end = words[i].start(), words[j - 1].end()
                    if (sum(content[i:j]) < 2 or all(covered[k] for k in range(i, j) if content[k])
                            or any(m.start < end and start < m.end and not (start <= m.start and m.end <= end)
                                   for m in exact)):
                        continue
                key = " ".join(keys[i:j])
                if j == i + 1 and exact is None:  # a lone word: its singular or stem when that is a name ("animals")
                    stems = [key[: -len(end)] + new for end, new in _INFLECTIONS if key.endswith(end)]
                    stem = next((s for s in stems if len(s) >= 3 and s in self._table), None)
                    if stem is not None:
                        spans.append((i, j, 0.9 * fuzz.ratio(key, stem) / 100.0, [stem]))
                        continue
                most = typo_budget(key, key, bracketed=False)
                if most == 0:
                    continue
                near = [c for n in range(len(key) - most, len(key) + most + 1) for c in self._by_length.get(n, [])]
                found = [(choice, fuzz.ratio(key, choice))
                         for choice, edits, _ in process.extract(key, near, scorer=OSA.distance, limit=None,
                                                                 score_cutoff=most)
                         if edits <= typo_budget(key, choice, bracketed=False)]
                if found:
                    found.sort(key=lambda item: -item[1])
                    spans.append((i, j, 0.9 * found[0][1] / 100.0, [choice for choice, _ in found[:3]]))
        # greedy like exact spans: best (closest, longest) first, no overlaps
        spans.sort(key=lambda s: (-s[2], -(s[1] - s[0]), s[0]))
        taken = [False] * len(words)
        mentions: list[Mention] = []
        for i, j, score, names in spans:
            if any(taken[i:j]):
                continue
            taken[i:j] = [True] * (j - i)
            start, end = words[i].start(), words[j - 1].end()
            text = question[start:end]
            links = tuple(link for choice in names for link in self._links(text, self._table[choice], score, "fuzzy"))
            mentions.append(Mention(start, end, text, links))
        if exact is not None:
            mentions.extend(m for m in exact if not any(f.start <= m.start and m.end <= f.end for f in mentions))
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
        cutoff = self.vector_cutoff if mentions else self.question_vector_cutoff
        out: list[Mention] = []
        for (start, end), text, hits in zip(spans, queries, index.search(vectors, 3 + VECTOR_TIE_SLACK), strict=False):
            nodes = [(position[eid], float(score)) for eid, score in hits
                     if eid in position and float(score) >= cutoff]
            # names differing only in case ("Rolf de Heer", "rolf de heer") embed alike; the index returns
            # such ties in insertion order, so they are ordered by name, then id
            nodes.sort(key=lambda item: (-round(item[1], 6), self.names[item[0]], self.ids[item[0]]))
            links = tuple(link for node, score in nodes[:3]
                          for link in self._links(text, [node], 0.8 * max(float(score), 0.0), "vector"))
            out.append(Mention(start, end, text, links))
        return out
