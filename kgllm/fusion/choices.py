"""Answer multiple-choice questions with a trained graph adapter (or zero-shot without one).

:func:`answer_choices` is what ``kb.ask(question, choices=[...])`` calls; :class:`ChoiceAnswerer`
keeps a loaded model directory (adapter, concept graph, encoder) for many questions.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kgllm.exceptions import ConfigError, ModelError
from kgllm.fusion.context import choice_label
from kgllm.fusion.features import FeatureBuilder, MCFeatures, MCQuestion
from kgllm.fusion.training import (
    DOCUMENT_VECTORS,
    DOCUMENTS,
    GRAPH,
    MANIFEST,
    NODE_VECTORS,
    WEIGHTS,
    GraphData,
    load_graph,
    load_model,
    load_saved_vectors,
    predict,
    read_manifest,
)
from kgllm.types import Answer, Fact, ScoredAnswer

__all__ = ["ChoiceAnswerer", "answer_choices", "answer_choices_many", "validate_choices", "choice_label"]

UNGROUNDED = "no concept of the question or its choices is in the concept graph; answered by the LM alone"
# names the option of the command line (kgllm ask --adapter) and of kb.ask, through which users give one
NO_ADAPTER = ("no trained adapter given (--adapter on the command line, adapter= in kb.ask); "
              "choices ranked by embedding similarity")


def validate_choices(question: str, choices: Sequence[str] | None) -> list[str]:
    """Check a multiple-choice input: a non-empty question and at least two non-empty choices.

    Repeated choices are allowed (real CommonsenseQA questions have them); they get equal scores.

    Raises:
        ConfigError: what is wrong, with the value.
    """
    if not isinstance(question, str) or not question.strip():
        raise ConfigError(f"a multiple-choice question needs a non-empty question, got {question!r}")
    if choices is None or isinstance(choices, str):
        raise ConfigError(f"choices must be a list of at least 2 strings, got {choices!r}")
    items = list(choices)
    odd = [c for c in items if not isinstance(c, str)]  # None or 1 is not the choice "None" or "1"
    if odd:
        raise ConfigError(f"answer choices must be strings, got {odd[0]!r} in {items!r}")
    items = [c.strip() for c in items]
    if len(items) < 2:
        raise ConfigError(f"a multiple-choice question needs at least 2 choices, got {len(items)}: {items!r}")
    if any(not c for c in items):
        raise ConfigError(f"empty answer choice in {items!r}")
    return items


class ChoiceAnswerer:
    """A loaded adapter model directory that scores answer choices.

    Args:
        model_dir: Directory written by ``kgllm train csqa|obqa``.
        embedder: The frozen encoder; by default the one named in the manifest. Another encoder
            raises :class:`ModelError`.
        cache_dir: Where node embeddings are cached (default: ``model_dir/cache``).
    """

    def __init__(self, model_dir: str | Path, *, embedder=None, cache_dir: Path | None = None) -> None:  # noqa: ANN001
        self.model_dir = Path(model_dir)
        manifest = read_manifest(self.model_dir)
        if embedder is None:
            from kgllm.embed import Embedder

            embedder = Embedder(manifest["encoder"])
        if embedder.model_name != manifest["encoder"]:
            raise ModelError(f"{self.model_dir} was trained with encoder {manifest['encoder']!r}, "
                             f"not {embedder.model_name!r}")
        graph = load_graph(self.model_dir)
        self.model, self.manifest = load_model(self.model_dir, encoder=embedder.model_name,
                                               vocab_hash=graph.vocab_hash)
        docs_path = self.model_dir / DOCUMENTS
        documents = docs_path.read_text(encoding="utf-8").splitlines() if docs_path.exists() else []
        extra = self.manifest.get("features", {})
        self.builder = FeatureBuilder(graph, embedder, documents=documents,
                                      cache_dir=cache_dir or self.model_dir / "cache",
                                      max_nodes=extra.get("max_nodes", 32), hops=extra.get("hops", 3),
                                      top_documents=extra.get("top_documents", 2))
        load_saved_vectors(self.model_dir, self.builder)
        self.graph = graph

    def __repr__(self) -> str:
        return f"ChoiceAnswerer(model_dir={str(self.model_dir)!r}, model={self.model!r})"

    def answer_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[Answer]:
        """Answer ``(question, choices)`` pairs; questions are batched by their number of choices."""
        checked = [(q, validate_choices(q, c)) for q, c in items]
        out: list[Answer | None] = [None] * len(checked)
        by_k: dict[int, list[int]] = {}
        for i, (_, choices) in enumerate(checked):
            by_k.setdefault(len(choices), []).append(i)
        for idx in by_k.values():
            started = time.perf_counter()
            questions = [MCQuestion(id=str(i), stem=checked[i][0], choices=checked[i][1],
                                    labels=[choice_label(j) for j in range(len(checked[i][1]))]) for i in idx]
            feats = self.builder.compute(questions, len(questions[0].choices))
            scores = predict(self.model, GraphData(feats, self.graph.n_relation_ids))
            seconds = (time.perf_counter() - started) / len(idx)
            for row, i in enumerate(idx):
                out[i] = self._answer(questions[row], scores[row], feats, row, seconds)
        return [a for a in out if a is not None]

    def _answer(self, q: MCQuestion, scores: np.ndarray, feats: MCFeatures, row: int, seconds: float) -> Answer:
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")
        k = len(q.choices)
        graphs = feats.graphs[row * k:(row + 1) * k]
        warnings = [UNGROUNDED] if not any(g.grounded for g in graphs) else []
        best = graphs[int(order[0])]
        facts = []
        for (s, d), r in zip(best.edge_index.T.tolist(), best.edge_type.tolist(), strict=True):
            n_rel = len(self.graph.relations)
            if r >= n_rel:  # each edge is stored both ways; report the forward one
                continue
            head, tail = self.graph.names[int(best.nodes[s])], self.graph.names[int(best.nodes[d])]
            facts.append(Fact(head=head, relation=self.graph.relations[r], tail=tail, domain="concepts",
                              source="graph.tsv"))
        return Answer(question=q.stem, text=q.choices[int(order[0])],
                      answers=[ScoredAnswer(id=q.labels[j], name=q.choices[j], score=float(probs[j])) for j in order],
                      facts=facts[:20], warnings=warnings, timings={"adapter": seconds})


#: Loaded model directories, most recently used last: path -> (stamp of its files, answerer).
_LOADED: OrderedDict[str, tuple[tuple[tuple[int, int] | None, ...], ChoiceAnswerer]] = OrderedDict()
_LOADED_MAX = 4
_LOADED_LOCK = threading.Lock()


def _answerer(model_dir: str) -> ChoiceAnswerer:
    """The loaded model of ``model_dir``, reused until one of its files changes: a model trained again
    into the same directory is loaded again (and the old one dropped), not served from memory."""
    stamp: list[tuple[int, int] | None] = []
    for name in (MANIFEST, WEIGHTS, GRAPH, DOCUMENTS, NODE_VECTORS, DOCUMENT_VECTORS):
        try:
            info = (Path(model_dir) / name).stat()
            stamp.append((info.st_mtime_ns, info.st_size))
        except OSError:
            stamp.append(None)
    key = tuple(stamp)
    with _LOADED_LOCK:
        found = _LOADED.get(model_dir)
        if found is not None and found[0] == key:
            _LOADED.move_to_end(model_dir)
            return found[1]
        _LOADED.pop(model_dir, None)
    answerer = ChoiceAnswerer(model_dir)
    with _LOADED_LOCK:
        _LOADED[model_dir] = (key, answerer)
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    return answerer


def _zero_shot(question: str, choices: list[str], embedder: Any) -> Answer:
    """Without a trained adapter: rank choices by cosine of question+choice with the question."""
    started = time.perf_counter()
    q_vec = embedder.encode([question])[0]
    joint = embedder.encode([f"{question} {c}" for c in choices])
    c_vec = embedder.encode(choices)
    scores = (joint @ q_vec + c_vec @ q_vec) / 2
    order = np.argsort(-scores, kind="stable")
    return Answer(question=question, text=choices[int(order[0])],
                  answers=[ScoredAnswer(id=choice_label(j), name=choices[j], score=float(scores[j])) for j in order],
                  warnings=[NO_ADAPTER],
                  timings={"zero_shot": time.perf_counter() - started})


def answer_choices(kb: Any, question: str, choices: Sequence[str], model_dir: str | Path | None = None) -> Answer:
    """Answer a multiple-choice question.

    Args:
        kb: A knowledge base (its embedder is reused for the zero-shot fallback) or None.
        question: The question.
        choices: At least two answer choices.
        model_dir: A directory from ``kgllm train csqa|obqa``; None ranks by embedding similarity.

    Returns:
        An :class:`Answer` whose ``answers`` are the choices ranked (``id`` = letter A, B, ...,
        ``score`` = probability), ``facts`` the concept-graph edges behind the best choice, and a
        warning when nothing could be grounded.

    Raises:
        ConfigError: a missing question, fewer than two choices, or an empty choice.
        ModelError: ``model_dir`` is not an adapter directory or does not fit its graph/encoder.
    """
    return answer_choices_many(kb, [question], choices, model_dir)[0]


def answer_choices_many(kb: Any, questions: Sequence[str], choices: Sequence[str],
                        model_dir: str | Path | None = None) -> list[Answer]:
    """:func:`answer_choices` for several questions sharing the same choices; with an adapter they go
    through it in batches (``ask_many``)."""
    if choices is not None and not isinstance(choices, str):  # validate_choices names those
        choices = list(choices)  # a generator would be used up by the first question
    items = [(question, validate_choices(question, choices)) for question in questions]
    if model_dir is not None:
        return _answerer(str(Path(model_dir).resolve())).answer_many(items)
    embedder = getattr(kb, "embedder", None)
    if embedder is None:
        from kgllm.embed import Embedder

        embedder = Embedder()
    return [_zero_shot(question, checked, embedder) for question, checked in items]
