"""KnowledgeBase: a workspace of domains (experts), their graph store, documents and vector indexes.

A KB is a directory::

    kgllm.json            manifest: format version, store settings (no password), embedding model, domains
    graph/                the embedded graph store (backend "local")
    docs/<domain>.jsonl   document chunks
    index/<domain>/<kind> FAISS indexes (kind: entities | facts | chunks) with their manifests
    cache/                embedding cache

Loading is atomic per call: every file of a pack is parsed and staged before anything becomes
visible, so a bad line leaves the KB exactly as it was. Indexes are derived data: they are brought
up to date incrementally (only new items are embedded) when first needed after a load.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgllm.config import StoreSettings, validate_domain_name
from kgllm.exceptions import ConfigError, DomainNotFound, KBNotFound, LoadError, ModelError
from kgllm.kb_indexes import INDEX_KINDS, DomainIndexes
from kgllm.kb_manifest import (
    MANIFEST,
    check_index_models,
    new_kb_manifest,
    read_kb_manifest,
    update_kb_manifest,
)
from kgllm.types import Answer, Chunk

if TYPE_CHECKING:
    from kgllm.embed import Embedder
    from kgllm.experts import Expert, Router
    from kgllm.index import VectorIndex
    from kgllm.stores.base import GraphStore, RawTriple

__all__ = ["KnowledgeBase", "open_kb", "MANIFEST", "INDEX_KINDS"]

log = logging.getLogger(__name__)
_BATCH = 50_000


def _batched(items: Iterable[RawTriple], size: int) -> Iterator[list[RawTriple]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class KnowledgeBase(DomainIndexes):
    """Domains of knowledge behind one ``ask``. Create with :func:`kgllm.open`."""

    def __init__(self, path: Path, *, store: GraphStore, settings: StoreSettings, manifest: dict[str, Any],
                 embedder: Embedder | str | None = None) -> None:
        self.path = path
        self.store = store
        self.settings = settings
        self._manifest = manifest
        self._embedder: Embedder | None = embedder if not isinstance(embedder, (str, type(None))) else None
        self._indexes: dict[tuple[str, str], VectorIndex] = {}
        self._index_stamps: dict[tuple[str, str], object] = {}
        self._index_locks: dict[tuple[str, str], threading.Lock] = {}
        self._pipeline: Any = None
        self._router: Router | None = None

    # -- manifest ----------------------------------------------------------------------------
    def _update_manifest(self, change: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Apply ``change`` to the manifest as it is on disk now (another process may have loaded or
        deleted domains since this KB was opened: its edits are kept) and save it."""
        self._manifest, others_changed = update_kb_manifest(self.path, self._manifest, change)
        if others_changed and hasattr(self.store, "refresh"):
            self.store.refresh()  # the graphs of those domains too

    @property
    def domains(self) -> list[str]:
        """Domains with data in this KB."""
        return sorted(self._manifest["domains"])

    def domain_info(self, domain: str) -> dict[str, Any]:
        """Description, license, relation texts and settings recorded for ``domain``."""
        if domain not in self._manifest["domains"]:
            raise DomainNotFound(domain, self.domains)
        return dict(self._manifest["domains"][domain])

    def set_domain_info(self, domain: str, **info: Any) -> None:
        """Record (merge) metadata for ``domain``; creates the entry when new.

        Raises:
            ConfigError: the merged expert settings are malformed (as :meth:`add_expert` checks them);
                nothing is recorded.
        """
        validate_domain_name(domain)

        from kgllm.experts import check_expert_info, reasoning_settings

        def merge(manifest: dict[str, Any]) -> None:
            entry = dict(manifest["domains"].get(domain, {}))
            for key, value in info.items():
                if key == "reasoning" and isinstance(value, dict):  # hops and max_hops: one setting, the new one
                    entry[key] = {**reasoning_settings(entry.get(key)), **reasoning_settings(value)}
                elif isinstance(value, dict) and isinstance(entry.get(key), dict):
                    entry[key] = {**entry[key], **value}
                elif value is not None:
                    entry[key] = value
            # a bad setting recorded here made kb.experts() and kb.stats() fail with pydantic's errors
            check_expert_info(domain, entry)
            manifest["domains"][domain] = entry

        self._update_manifest(merge)
        self._pipeline = None
        self._router = None

    def relation_text(self, domain: str) -> dict[str, str]:
        """Natural-language text per relation: the manifest's text; else, for a relation that is also a
        node with a label of its own (an RDF predicate with an ``rdfs:label``), that label; else the name
        made readable: an IRI's local name (after ``#``, else the last ``/``), ``_`` and camelCase split
        into lower-case words (``http://ex.org/capitalOf`` -> ``capital of``, ``directed_by`` ->
        ``directed by``); all-capital words stay (``hasURL`` -> ``has URL``)."""
        import re

        from kgllm.loaders.names import is_iri, relation_words

        def squeeze(text: str) -> str:
            return re.sub(r"[\W_]", "", text.lower())

        known = self.domain_info(domain).get("relation_text", {})
        if domain not in self.store.domains():  # documents only: no relations
            return {}
        relations = self.store.relations(domain)
        texts = {rel: known[rel] if rel in known else relation_words(rel) for rel in relations}
        iris = [rel for rel in relations if rel not in known and is_iri(rel)]
        if iris:
            snapshot = self.store.snapshot(domain)
            for rel in iris:
                node = snapshot.index.get(rel)
                name = snapshot.names[node].strip() if node is not None else ""
                if name and name != rel and squeeze(name) != squeeze(relation_words(rel)):
                    texts[rel] = name  # the predicate's own label (an IRI without one is named by its local name)
        return texts

    # -- loading -------------------------------------------------------------------------------------
    def load(self, pack_dir: str | Path, *, progress: bool = False) -> dict[str, Any]:
        """Load a domain pack (``manifest.yaml`` + files). Atomic: all or nothing."""
        from kgllm.loaders import load_pack

        pack = load_pack(pack_dir)
        info = {"description": pack.description, "license": pack.license, "attribution": pack.attribution,
                "pack": str(pack.dir.resolve()), "relation_text": dict(pack.relation_text),
                "relation_aliases": dict(pack.relation_aliases),
                "same_as": [item.model_dump() for item in pack.same_as], "reasoning": dict(pack.reasoning),
                "examples": list(pack.examples),
                "scorer": str(pack.scorer_dir.resolve()) if pack.scorer_dir else None}
        report = self._load(pack.name, pack.triple_readers(), list(pack.read_documents(pack.name)), info,
                            names=pack.read_names(), progress=progress)
        missing = sorted({pair.same_as_domain for pair in pack.same_as} - set(self.domains))
        if missing:  # packs load in any order: the links work once those experts are loaded
            report["warnings"] = [f"same_as links name experts not in this KB (yet): {', '.join(missing)}; "
                                  f"known experts: {', '.join(self.domains)}"]
        return report

    def load_triples(self, domain: str, path: str | Path, *, format: str | None = None, order: str | None = None,
                     description: str | None = None, relation_text: dict[str, str] | None = None,
                     documents: Sequence[str | Path] = (), chunking: str | None = None,
                     progress: bool = False) -> dict[str, Any]:
        """Load one triples file into ``domain`` (created when new), with ``documents`` (chunked as
        ``chunking`` says, as in :meth:`load_documents`) in the same step. Atomic: a failure loads none of them."""
        from kgllm.loaders import read_documents, read_triples

        reader = read_triples(path, format, order=order)
        chunks = list(read_documents(documents, domain=domain, chunking=chunking or "paragraph")) if documents else []  # type: ignore[arg-type]
        info = {"description": description, "relation_text": relation_text or {}}
        return self._load(domain, [reader], chunks, info, progress=progress)

    def load_documents(self, domain: str, paths: Sequence[str | Path], *, chunking: str | None = None,
                       description: str | None = None) -> dict[str, Any]:
        """Chunk and store documents for ``domain``'s chunk index."""
        from kgllm.loaders import read_documents

        validate_domain_name(domain)
        chunks = list(read_documents(paths, domain=domain, chunking=chunking or "paragraph"))  # type: ignore[arg-type]
        if not chunks and domain not in self._manifest["domains"]:  # e.g. a glob that matched nothing
            raise LoadError(f"no documents given for the new domain {domain!r}: nothing loaded (an expert "
                            "without data is declared with add_expert)")
        return self._load(domain, [], chunks, {"description": description})

    def _load(self, domain: str, readers: Sequence[Iterable[RawTriple]], chunks: Sequence[Chunk],
              info: dict[str, Any], *, names: dict[str, str] | None = None,
              progress: bool = False) -> dict[str, Any]:
        """Stage every reader's triples in one store transaction, then record chunks and metadata.

        Documents are parsed by the caller before this runs, so a bad document fails before the
        graph changes; a bad triple line aborts the transaction.
        """
        validate_domain_name(domain)
        added = new_chunks = 0
        if readers:
            bar = _progress(progress, f"loading {domain}")
            with self.store.writer(domain) as writer:
                edges = 0
                for reader in readers:
                    for batch in _batched(reader, _BATCH):
                        writer.add(batch)
                        edges += len(batch)
                        if bar is not None:
                            bar.update(len(batch))
                    if getattr(reader, "names", None):  # RDF labels, known once the file is read
                        writer.set_names(reader.names)  # type: ignore[attr-defined]
                if not edges and not chunks and domain not in self.domains and domain not in self.store.domains():
                    # an RDF file of labels only: the names would be dropped and an empty expert made
                    files = [str(getattr(reader, "path", reader)) for reader in readers]
                    raise LoadError(f"no triples found, only entity names (labels); a new domain ({domain!r}) "
                                    "needs edges: load the names into the domain whose entities they name",
                                    path=", ".join(files))
                if names:
                    writer.set_names(names)
                # the chunks are written before the graph commits: a failed write leaves the graph as it was
                docs = self._docs_file(domain)
                before = docs.read_bytes() if docs.exists() else None
                new_chunks = self.add_chunks(domain, chunks) if chunks else 0
                try:
                    added = writer.commit()
                except BaseException:
                    if new_chunks:  # a failed commit takes the chunks back
                        if before is None:
                            docs.unlink(missing_ok=True)
                        else:
                            docs.write_bytes(before)
                        self._indexes.pop((domain, "chunks"), None)
                    raise
            if bar is not None:
                bar.close()
        elif chunks:
            new_chunks = self.add_chunks(domain, chunks)
        self.set_domain_info(domain, **info)
        self._forget_indexes(domain)
        return {"domain": domain, "triples_added": added, "chunks_added": new_chunks, **self._graph_counts(domain)}

    def _graph_counts(self, domain: str) -> dict[str, int]:
        """The store's entity and triple counts of ``domain`` (zeros for a domain with documents only)."""
        return self.store.count(domain) if domain in self.store.domains() else {"entities": 0, "triples": 0}

    def delete_domain(self, domain: str) -> None:
        """Remove a domain: its graph, documents, indexes and metadata. Other domains are untouched.

        A domain whose graph the store does not hold (documents only, an expert without data, or a graph
        removed by another client of the store) is removed all the same, with a logged warning unless it
        is a domain of documents only.
        """
        self.domain_info(domain)
        try:
            self.store.delete_domain(domain)
        except DomainNotFound:
            if self._indexed_counts(domain).get("entities") or not self._docs_file(domain).exists():
                log.warning("domain %r has no graph in the %s store (removed outside kgllm, or never loaded); "
                            "removing its indexes, documents and metadata", domain, self.settings.backend)
        self._remove_indexes_and_documents(domain)
        self._update_manifest(lambda manifest: manifest["domains"].pop(domain, None))
        self._pipeline = None
        self._router = None

    # -- experts ------------------------------------------------------------------------------------
    def experts(self) -> list[Expert]:
        """Every domain of the KB as an :class:`~kgllm.experts.Expert`.

        Raises:
            ConfigError: the manifest holds a malformed setting (edited by hand), named in the message.
        """
        from kgllm.experts import check_expert_info

        return [check_expert_info(name, self._manifest["domains"][name]) for name in self.domains]

    def expert(self, name: str) -> Expert:
        from kgllm.experts import check_expert_info

        return check_expert_info(name, self.domain_info(name))

    def add_expert(self, name: str, *, description: str, relation_text: dict[str, str] | None = None,
                   reasoning: dict[str, Any] | None = None, scorer: str | Path | None = None,
                   prompt_template: str | None = None) -> Expert:
        """Declare a new expert (domain); load its data with ``load_triples``/``load_documents``.

        ``reasoning`` takes the settings of a pack manifest's ``reasoning``: ``hops`` (or ``max_hops``,
        1-4), ``beam`` (1-256) and ``retrievers``. ``scorer`` is a trained path-scorer directory (recorded
        by its absolute path); ``prompt_template`` must contain ``{question}``.

        Raises:
            ConfigError: an expert with this name exists already, a reasoning setting is unknown or out of
                range, ``scorer`` is no trained path scorer, or a setting is malformed.
        """
        from kgllm.experts import new_expert

        if name in self._manifest["domains"]:
            raise ConfigError(f"an expert named {name!r} exists already; experts: {', '.join(self.domains)}")
        expert = new_expert(name, description=description, relation_text=relation_text, reasoning=reasoning,
                            scorer=scorer, prompt_template=prompt_template)
        self.set_domain_info(name, **expert.model_dump(exclude={"name"}))
        return expert

    @property
    def router(self) -> Router:
        """The router over this KB's experts (uses a trained router model when one is configured)."""
        from kgllm.experts import Router, RouterModel

        if self._router is None:
            model_dir = self._manifest.get("router")
            model, unusable = None, None
            if model_dir:
                try:
                    model = RouterModel.load(Path(model_dir), model=self.embedder.model_name)
                except (ModelError, OSError, ValueError) as exc:  # moved or deleted since: route zero-shot
                    unusable = (f"router model {model_dir} not used ({exc}): routed zero-shot; train it again "
                                "(kgllm train router ... -o kb=KB) or stop using it (kb.use_router_model(None))")
                    log.warning("%s", unusable)
            self._router = Router(self, model=model, unusable=unusable)
        return self._router

    def use_router_model(self, model_dir: str | Path | None) -> None:
        """Route with a classifier trained by ``kgllm train router`` (``None``: zero-shot)."""
        if model_dir is None:
            self._update_manifest(lambda manifest: manifest.pop("router", None))
        else:
            from kgllm.experts import RouterModel

            RouterModel.load(Path(model_dir), model=self.embedder.model_name)  # validate before recording
            self._update_manifest(lambda manifest: manifest.update(router=str(Path(model_dir).resolve())))
        self._router = None

    def use_rules(self, domain: str, rules_dir: str | Path | None, *, min_confidence: float | None = None) -> None:
        """Let ``domain``'s expert infer edges missing from its graph with rules from ``kgllm train rules``
        (``None``: stop). Inferred edges appear in answers as hops whose ``rule`` names the rule and path.

        Raises:
            DomainNotFound: no such domain.
            ModelError: not a rule set, or rules for relations the domain lacks.
        """
        from kgllm.reasoning.rule_inference import DEFAULT_MIN_CONFIDENCE, ExpertRules

        self.domain_info(domain)
        if rules_dir is None:
            self._update_manifest(lambda manifest: manifest["domains"].get(domain, {}).pop("rules", None))
            self._pipeline = None
            return
        confidence = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
        checked = ExpertRules.load(rules_dir, self.store.snapshot(domain), min_confidence=confidence)
        self.set_domain_info(domain, rules={"dir": checked.directory, "min_confidence": checked.min_confidence})

    # -- questions -----------------------------------------------------------------------------------
    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            from kgllm.pipeline import Pipeline

            self._pipeline = Pipeline(self)
        return self._pipeline

    def ask(self, question: str, *, domain: str | None = None, llm: Any = None, top_k: int = 10,
            choices: Sequence[str] | None = None, **options: Any) -> Answer:
        """Answer a question from the KB's domains. See :mod:`kgllm.pipeline` for the stages."""
        return self.pipeline.ask(question, domain=domain, llm=llm, top_k=top_k, choices=choices, **options)

    def ask_many(self, questions: Sequence[str], *, batch_size: int = 64, **options: Any) -> list[Answer]:
        """Batched ``ask``: same answers, shared work between questions."""
        return self.pipeline.ask_many(questions, batch_size=batch_size, **options)

    # -- inspection ----------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counts per domain, store and model in use, and the registered backends."""
        from kgllm.stores import STORES

        domains: dict[str, Any] = {}
        for name in self.domains:
            info = self._manifest["domains"][name]
            counts = self._graph_counts(name)
            indexes = self._indexed_counts(name)
            expert = self.expert(name)
            linked: dict[str, int] = {}
            for pair in expert.same_as:
                linked[pair["same_as_domain"]] = linked.get(pair["same_as_domain"], 0) + 1
            domains[name] = {**counts, "relations": len(self.store.relations(name)) if counts["triples"] else 0,
                             "chunks": self._chunk_count(name), "indexes": indexes,
                             "description": info.get("description"),
                             "expert": {"reasoning": expert.reasoning.model_dump(), "scorer": expert.scorer,
                                        "prompt_template": expert.prompt_template,
                                        "relation_texts": len(expert.relation_text),
                                        "same_as": linked, "rules": info.get("rules")}}
        return {"kb": str(self.path), "store": self.settings.backend,
                "embedder": self._manifest.get("embedder"), "domains": domains,
                "router": {"model": self._manifest.get("router")},
                "index_options": {kind: self.index_options(kind) for kind in INDEX_KINDS},
                "registered": {"stores": sorted(STORES), "llms": _registered_llms()}}

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KnowledgeBase({str(self.path)!r}, store={self.settings.backend!r}, domains={self.domains})"


def _registered_llms() -> list[str]:
    try:
        from kgllm.llm import LLM_SPECS
    except ImportError:
        return ["extractive"]
    return list(LLM_SPECS)


def _progress(enabled: bool, description: str):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(desc=description, unit=" triples", leave=False)


def open_kb(path: str | Path, *, store: str = "local", embedder: Embedder | str | Path | None = None,
            create: bool = True, neo4j_uri: str | None = None, user: str | None = None,
            password: str | None = None, database: str | None = None) -> KnowledgeBase:
    """Open (or create) the knowledge base in directory ``path``.

    Args:
        path: the KB directory. Created when missing and ``create`` is true.
        store: graph backend, ``"local"`` (embedded, default) or ``"neo4j"``.
        embedder: an :class:`~kgllm.embed.Embedder` or a model name/path; default: the model the KB
            was built with, else the offline all-MiniLM-L6-v2.
        neo4j_uri, user, password, database: Neo4j connection (``store="neo4j"``).

    Raises:
        KBNotFound: ``path`` exists but is not a kgllm KB, or is missing and ``create`` is false.
        ConfigError: unknown store or bad settings.
    """
    from pydantic import ValidationError

    from kgllm.stores import open_store

    path = Path(path)
    if isinstance(embedder, os.PathLike):  # a model directory as a Path: was taken for an Embedder
        embedder = os.fspath(embedder)
    manifest = read_kb_manifest(path)
    if manifest is None:
        if path.exists() and not path.is_dir():
            raise KBNotFound(f"{path} is a file, not a kgllm knowledge base (a KB is a directory holding {MANIFEST})")
        if path.exists() and any(path.iterdir()):
            raise KBNotFound(f"{path} is not a kgllm knowledge base (no {MANIFEST}; refusing to write into a "
                             "non-empty directory)")
        if not create:
            raise KBNotFound(f"no knowledge base at {path}")
        manifest = new_kb_manifest()
    try:
        settings = StoreSettings(backend=store, neo4j_uri=neo4j_uri,  # type: ignore[arg-type]
                                 user=user, password=password, database=database)
    except ValidationError as exc:
        raise ConfigError(f"bad store settings: {exc.errors()[0]['msg']} "
                          f"(store={store!r}, neo4j_uri={neo4j_uri!r})") from exc
    if settings.backend == "local":
        graph = open_store("local", path=path / "graph")
    else:
        graph = open_store("neo4j", uri=settings.neo4j_uri or "bolt://127.0.0.1:7687", user=settings.user,
                           password=settings.password, database=settings.database)
    path.mkdir(parents=True, exist_ok=True)
    manifest["store"] = settings.model_dump(exclude_none=True)
    check_index_models(path, manifest, embedder)
    if embedder is not None:  # a new model for this KB: indexes built with another one will refuse to open
        from kgllm.embed import model_name

        # the stable name (a local directory's absolute path), so the KB opens from any working directory
        manifest["embedder"] = model_name(embedder) if isinstance(embedder, str) else embedder.model_name
    kb = KnowledgeBase(path, store=graph, settings=settings, manifest=manifest, embedder=embedder)
    kb._update_manifest()
    return kb
