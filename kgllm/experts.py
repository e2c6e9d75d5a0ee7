"""Domain experts and the router that sends a question to the right ones.

An :class:`Expert` is a named domain of the KB: its graph namespace in the store, its vector
indexes, relation texts, reasoning settings, an optional trained path scorer and prompt template.
The :class:`Router` scores experts for a question from three signals:

* ``semantic``: similarity of the question to the expert's description and to a sample of its
  relation and entity texts (MiniLM embeddings, computed once per expert);
* ``links``: entity-linking hits, i.e. question spans that name an entity of the expert's graph,
  weighted by span length and by how specific the name is to that expert;
* ``classifier`` (optional): logistic regression over question embeddings and character n-grams,
  trained from labelled questions with ``kgllm train router``. Used only while every expert routed
  among is one it was trained for (its probabilities renormalized over them): with an expert added
  since, the question is routed zero-shot and :meth:`Router.model_warning` says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kgllm.exceptions import ConfigError, ModelError
from kgllm.retrieval.evidence import DEFAULT_RETRIEVERS, check_retrievers
from kgllm.types import ExpertChoice

if TYPE_CHECKING:
    from kgllm.kb import KnowledgeBase

__all__ = ["ReasoningConfig", "Expert", "Router", "RouterModel", "new_expert", "reasoning_settings",
           "check_expert_info", "question_spans", "normalize_name"]

_TOKEN = re.compile(r"[\w'\-\.]+", re.UNICODE)
_BRACKET = re.compile(r"\[([^\]]+)\]")
_STOP = frozenset("a an the of in on at to for by with from is are was were be been what which who whom whose "
                  "where when why how do does did can could would should will shall may might must has have had "
                  "that this these those it its and or not no yes there their they them he she his her i you we "
                  "me my your our as about into than then also".split())
_MAX_SPAN = 8


def normalize_name(name: str) -> str:
    """The form under which names are compared across experts: lowercase, ``_`` as space, trimmed."""
    return " ".join(name.replace("_", " ").lower().split())


def question_spans(question: str, max_len: int = _MAX_SPAN) -> list[tuple[str, int, bool]]:
    """Candidate mention spans as ``(normalized text, token count, bracketed)``; bracketed first."""
    spans = [(normalize_name(m), len(m.split()), True) for m in _BRACKET.findall(question)]
    tokens = [t.strip(".'") for t in _TOKEN.findall(question.replace("_", " ").lower())]
    tokens = [t for t in tokens if t]
    for i in range(len(tokens)):
        for j in range(i + 1, min(len(tokens), i + max_len) + 1):
            words = tokens[i:j]
            if all(w in _STOP for w in words):
                continue
            spans.append((" ".join(words), j - i, False))
    return spans


class ReasoningConfig(BaseModel):
    """How an expert reasons: hops, beam width, which retrievers to mix."""

    model_config = ConfigDict(extra="forbid")

    # strict: True or "2" is no hop count (pydantic would read them as 1 and 2)
    max_hops: int = Field(default=3, ge=1, le=4, strict=True)
    beam: int = Field(default=8, ge=1, le=256, strict=True)
    retrievers: list[str] = Field(default_factory=lambda: list(DEFAULT_RETRIEVERS))

    @field_validator("retrievers")
    @classmethod
    def _known_retrievers(cls, value: list[str]) -> list[str]:
        return check_retrievers(value)  # its ConfigError is a ValueError: pydantic reports it for the field


class Expert(BaseModel):
    """A domain of knowledge with its own graph, indexes and settings."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    relation_text: dict[str, str] = Field(default_factory=dict)
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    scorer: str | None = None
    prompt_template: str | None = None
    same_as: list[dict[str, str]] = Field(default_factory=list)

    @classmethod
    def from_info(cls, name: str, info: dict[str, Any]) -> Expert:
        """The expert a domain's manifest entry describes: reasoning settings by their config names (a
        pack's ``hops`` is ``max_hops``), ``same_as`` pairs without unset keys (a pack's pair that names
        no ``domain`` is recorded with ``domain: null``), unknown reasoning keys left to the reasoner."""
        fields = {key: info[key] for key in ("description", "relation_text", "scorer", "prompt_template")
                  if info.get(key) is not None}
        fields["reasoning"] = {k: v for k, v in reasoning_settings(info.get("reasoning")).items()
                               if k in ReasoningConfig.model_fields}
        fields["same_as"] = [{k: v for k, v in pair.items() if v is not None} for pair in info.get("same_as") or []]
        return cls(name=name, **fields)


def check_expert_info(name: str, info: dict[str, Any]) -> Expert:
    """The expert a domain's manifest entry describes, checked.

    Raises:
        ConfigError: a setting is malformed or out of range (named in the message).
    """
    from pydantic import ValidationError

    if info.get("reasoning") is not None and not isinstance(info["reasoning"], dict):
        raise ConfigError(f"expert {name!r}: reasoning must be a dict of settings (hops or max_hops 1-4, "
                          f"beam 1-256, retrievers), got {info['reasoning']!r}")
    same_as = info.get("same_as") or []
    bad = next((pair for pair in same_as if not isinstance(pair, dict) or not isinstance(pair.get("entity"), str)
                or not isinstance(pair.get("same_as_domain"), str)
                or not isinstance(pair.get("same_as_entity"), str)), None) if isinstance(same_as, list) else same_as
    if bad is not None:
        raise ConfigError(f"expert {name!r}: a same_as pair needs entity, same_as_domain and same_as_entity "
                          f"(strings), got {bad!r}")
    try:
        return Expert.from_info(name, info)
    except ValidationError as exc:
        raise _bad_setting(name, exc, "setting") from exc


def reasoning_settings(reasoning: dict[str, Any] | None) -> dict[str, Any]:
    """Reasoning settings named as :class:`ReasoningConfig` names them: a pack manifest's ``hops`` is
    ``max_hops``."""
    settings = dict(reasoning or {})
    if "hops" in settings:
        hops = settings.pop("hops")
        settings.setdefault("max_hops", hops)
    return settings


def new_expert(name: str, *, description: str, relation_text: dict[str, str] | None = None,
               reasoning: dict[str, Any] | None = None, scorer: str | Path | None = None,
               prompt_template: str | None = None) -> Expert:
    """A checked :class:`Expert` from :meth:`KnowledgeBase.add_expert <kgllm.kb.KnowledgeBase.add_expert>`'s
    arguments (``scorer`` recorded by its absolute path).

    Raises:
        ConfigError: a reasoning setting is unknown or out of range, ``scorer`` is no trained path
            scorer, the template lacks ``{question}``, or a setting is malformed.
    """
    from pydantic import ValidationError

    from kgllm.config import validate_domain_name
    from kgllm.fusion.context import ContextFusion
    from kgllm.loaders.packs import SCORER_MANIFEST

    if reasoning is not None and not isinstance(reasoning, dict):
        raise ConfigError(f"expert {name!r}: reasoning must be a dict of settings (hops or max_hops 1-4, "
                          f"beam 1-256, retrievers), got {reasoning!r}")
    if scorer is not None and not (Path(scorer) / SCORER_MANIFEST).is_file():
        raise ConfigError(f"expert {name!r}: scorer {str(scorer)!r} is not a trained path-scorer directory "
                          f"(no {SCORER_MANIFEST}; train one with kgllm train metaqa)")
    if prompt_template is not None:
        try:
            ContextFusion(templates={name: prompt_template})  # checks the template's fields
        except ConfigError as exc:
            raise ConfigError(f"expert {name!r}: {exc}") from exc
    if reasoning and "hops" in reasoning and reasoning.get("max_hops", reasoning["hops"]) != reasoning["hops"]:
        raise ConfigError(f"expert {name!r}: reasoning gives hops={reasoning['hops']!r} and "
                          f"max_hops={reasoning['max_hops']!r}; give one of them")
    try:
        settings = ReasoningConfig(**reasoning_settings(reasoning))
    except ValidationError as exc:
        raise _bad_setting(name, exc, "reasoning setting",
                           " (settings: hops or max_hops 1-4, beam 1-256, retrievers)") from exc
    try:
        return Expert(name=validate_domain_name(name), description=description, relation_text=relation_text or {},
                      reasoning=settings, scorer=str(Path(scorer).resolve()) if scorer else None,
                      prompt_template=prompt_template)
    except ValidationError as exc:
        raise _bad_setting(name, exc, "setting") from exc


def _bad_setting(expert: str, exc: Any, what: str, hint: str = "") -> ConfigError:
    """A pydantic ``ValidationError`` of an expert's settings as one line naming the first bad field."""
    error = exc.errors()[0]
    return ConfigError(f"expert {expert!r}: bad {what} {'.'.join(map(str, error['loc']))!r}: {error['msg']}{hint}")


@dataclass
class _Profile:
    """What the router precomputes for one expert."""

    name: str
    description: np.ndarray  # (dim,)
    samples: np.ndarray  # (k, dim) relation and entity texts
    names: dict[str, int]  # normalized entity name -> number of entities with it


class RouterModel:
    """A trained router (``kgllm train router``): logistic regression over the question's MiniLM
    embedding joined with TF-IDF character n-grams, which catch the style of a domain's questions
    (e.g. OpenBookQA's unfinished sentences vs CommonsenseQA's full questions) that embeddings blur.

    Saved as plain arrays and JSON (no pickles): coefficients, labels, n-gram vocabulary and idf.
    """

    def __init__(self, labels: list[str], coef: np.ndarray, intercept: np.ndarray, vocabulary: dict[str, int],
                 idf: np.ndarray, model: str) -> None:
        self.labels, self.coef, self.intercept, self.model = labels, coef, intercept, model
        self.vocabulary, self.idf = vocabulary, idf
        self.directory: Path | None = None  # where it was loaded from
        self._vectorizer = self._make_vectorizer(vocabulary, idf)

    @staticmethod
    def _make_vectorizer(vocabulary: dict[str, int] | None, idf: np.ndarray | None):  # type: ignore[no-untyped-def]
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True,
                                     vocabulary=vocabulary)
        if idf is not None:
            vectorizer.idf_ = idf
        return vectorizer

    def features(self, questions: Sequence[str], vectors: np.ndarray):  # type: ignore[no-untyped-def]
        from scipy.sparse import csr_matrix, hstack

        return hstack([self._vectorizer.transform(list(questions)), csr_matrix(vectors)]).tocsr()

    def probabilities(self, questions: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        logits = np.asarray(self.features(questions, vectors) @ self.coef.T) + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "router.npz", coef=self.coef, intercept=self.intercept, idf=self.idf)
        (directory / "vocabulary.json").write_text(json.dumps(self.vocabulary, ensure_ascii=False), encoding="utf-8")
        (directory / "manifest.json").write_text(json.dumps(
            {"kind": "kgllm-router", "labels": self.labels, "embedder": self.model,
             "features": int(self.coef.shape[1])}, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, *, model: str | None = None) -> RouterModel:
        directory = Path(directory)
        manifest_path = directory / "manifest.json"
        if not manifest_path.exists():
            raise ModelError(f"{directory} is not a router model directory (no manifest.json)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelError(f"{manifest_path}: not JSON ({exc}); train the router again") from exc
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        if kind != "kgllm-router":
            raise ModelError(f"{manifest_path}: kind {kind!r}, expected 'kgllm-router'")
        labels, embedder = manifest.get("labels"), manifest.get("embedder")
        # a damaged or hand-edited model raised KeyError or failed every question at routing: refuse it here
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or not isinstance(embedder, str):
            raise ModelError(f"{manifest_path}: not a router manifest (needs 'labels', a list of expert names, and "
                             f"'embedder'); train it again with kgllm train router")
        if model is not None and embedder != model:
            raise ModelError(f"{manifest_path}: router trained with embedder {embedder!r}, the KB uses {model!r}")
        try:
            with np.load(directory / "router.npz") as arrays:
                coef, intercept, idf = arrays["coef"], arrays["intercept"], arrays["idf"]
            vocabulary = json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{directory}: router model files are missing or damaged ({exc}); "
                             "train it again with kgllm train router") from exc
        if (not isinstance(vocabulary, dict) or coef.ndim != 2 or coef.shape[0] != len(labels)
                or coef.shape[1] <= len(vocabulary) or intercept.shape != (len(labels),)
                or idf.shape != (len(vocabulary),)):
            raise ModelError(f"{directory}: router model files do not fit together (coefficients {coef.shape} for "
                             f"{len(labels)} labels and {len(vocabulary) if isinstance(vocabulary, dict) else '?'} "
                             "n-grams): saved by two trainings? train it again with kgllm train router")
        loaded = cls(labels, coef, intercept, vocabulary, idf, embedder)
        loaded.directory = directory
        return loaded

    @classmethod
    def fit(cls, questions: Sequence[str], vectors: np.ndarray, labels: Sequence[str], *, model: str,
            c: float = 10.0, seed: int = 0) -> RouterModel:
        """Fit on labelled questions (a few thousand train in seconds)."""
        from scipy.sparse import csr_matrix, hstack
        from sklearn.linear_model import LogisticRegression

        vectorizer = cls._make_vectorizer(None, None).fit(list(questions))
        features = hstack([vectorizer.transform(list(questions)), csr_matrix(vectors)]).tocsr()
        classifier = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(features, list(labels))
        coef, intercept = classifier.coef_, classifier.intercept_
        if len(classifier.classes_) == 2:  # sklearn keeps one row for two classes
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        return cls([str(c) for c in classifier.classes_], coef.astype(np.float32), intercept.astype(np.float32),
                   {k: int(v) for k, v in vectorizer.vocabulary_.items()}, vectorizer.idf_, model)


class Router:
    """Ranks a KB's experts for a question. Precomputes per-expert profiles on first use."""

    #: weights of the zero-shot signals
    WEIGHTS = {"description": 0.5, "samples": 0.9, "links": 0.4}
    SAMPLE_ENTITIES = 48
    MAX_CHUNKS = 2000
    #: share of the trained classifier in the score, when one is configured
    CLASSIFIER_WEIGHT = 0.6

    def __init__(self, kb: KnowledgeBase, *, model: RouterModel | None = None, unusable: str | None = None) -> None:
        self.kb = kb
        self.model = model
        self.unusable = unusable  # why the KB's configured router model could not be loaded
        self._profiles: dict[str, _Profile] = {}

    def model_warning(self, experts: Sequence[str]) -> str | None:
        """Why the classifier does not score a question routed among ``experts`` (``None`` when it does,
        or when no router model is configured): it could not be loaded, or it was trained without some of
        them (an expert added since). Such questions are routed zero-shot."""
        if self.unusable is not None:
            return self.unusable
        if self.model is None:
            return None
        unknown = [name for name in experts if name not in self.model.labels]
        if not unknown:
            return None
        where = f" {self.model.directory}" if self.model.directory is not None else ""
        return (f"router model{where} was trained for experts {', '.join(self.model.labels)}, not for "
                f"{', '.join(unknown)}: routed zero-shot; train it again with every expert "
                "(kgllm train router ... -o kb=KB) or stop using it (kb.use_router_model(None))")

    def profile(self, name: str) -> _Profile:
        if name not in self._profiles:
            self._profiles[name] = self._build_profile(name)
        return self._profiles[name]

    def _build_profile(self, name: str) -> _Profile:
        info = self.kb.domain_info(name)
        description = info.get("description") or name
        samples: list[str] = []
        counts: dict[str, int] = {}
        if name in self.kb.store.domains():
            snapshot = self.kb.store.snapshot(name)
            samples.extend(self.kb.relation_text(name).values())
            for entity_name in snapshot.names:
                key = normalize_name(entity_name)
                counts[key] = counts.get(key, 0) + 1
            degree = np.bincount(np.concatenate([snapshot.head, snapshot.tail]), minlength=snapshot.num_nodes)
            top = np.argsort(-degree, kind="stable")[: self.SAMPLE_ENTITIES]
            samples.extend(snapshot.names[int(i)] for i in top)
        # Documents are few and on-topic (e.g. a science book): all of them, up to a cap, are samples.
        samples.extend(chunk.text for chunk in self.kb.chunks(name)[: self.MAX_CHUNKS])
        samples.extend(info.get("examples") or [])
        vectors = self.kb.embedder.encode([f"{name}: {description}"] + (samples or [description]))
        return _Profile(name=name, description=vectors[0], samples=vectors[1:], names=counts)

    def route(self, question: str, *, experts: Sequence[str] | None = None, top: int | None = None,
              vector: np.ndarray | None = None) -> list[ExpertChoice]:
        """Experts ranked by score (higher is better), each with the reasons for its score."""
        names = list(experts) if experts is not None else self.kb.domains
        if not names:
            return []
        profiles = [self.profile(name) for name in names]
        q = vector if vector is not None else self.kb.embedder.encode([question])[0]
        spans = question_spans(question)
        holders: dict[str, int] = {}
        for profile in profiles:
            for span, _, _ in spans:
                if span in profile.names:
                    holders[span] = holders.get(span, 0) + 1
        words = max(1, sum(1 for _, n, bracketed in spans if n == 1 and not bracketed))
        probabilities = None
        if self.model is not None and self.model_warning(names) is None:
            # an expert removed since training takes its share with it: the classifier's probabilities
            # are renormalized over the experts routed among
            row = dict(zip(self.model.labels, self.model.probabilities([question], q[None, :])[0].tolist()))
            total = sum(row[name] for name in names)
            probabilities = {name: row[name] / total if total > 0 else 1.0 / len(names) for name in names}
        choices = []
        for profile in profiles:
            description = float(profile.description @ q)
            samples = float(np.sort(profile.samples @ q)[-3:].mean()) if len(profile.samples) else 0.0
            linked, covered = [], 0.0
            for span, length, bracketed in spans:
                if span in profile.names:
                    specificity = 1.0 / holders[span]
                    covered = max(covered, (3.0 if bracketed else length) * specificity)
                    linked.append(span)
            links = min(1.0, covered / min(3.0, words))
            score = (self.WEIGHTS["description"] * description + self.WEIGHTS["samples"] * samples
                     + self.WEIGHTS["links"] * links)
            reasons = [f"description similarity {description:.2f}", f"relation/entity similarity {samples:.2f}"]
            if linked:
                best = sorted(set(linked), key=len, reverse=True)[:3]
                reasons.append("entity links: " + ", ".join(repr(s) for s in best))
            if probabilities is not None:
                p = probabilities.get(profile.name, 0.0)
                score = (1 - self.CLASSIFIER_WEIGHT) * score + self.CLASSIFIER_WEIGHT * p
                reasons.append(f"classifier {p:.2f}")
            choices.append(ExpertChoice(name=profile.name, score=round(float(score), 4), reasons=reasons))
        choices.sort(key=lambda c: (-c.score, c.name))
        return choices[:top] if top else choices
