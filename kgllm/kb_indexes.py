"""The vector indexes and document chunks of a knowledge base's domains (a part of :class:`KnowledgeBase`).

Indexes are derived data under ``index/<domain>/<kind>``: brought up to date incrementally (only items not
yet indexed, or whose text changed, e.g. an entity named by labels loaded later, are embedded) when first
asked for after a load, and forgotten when the domain changes. ``texts.json`` beside each index holds a
digest of every item's text and the embedder's weights identity (a local model re-trained in place is
embedded again). Document chunks live in ``docs/<domain>.jsonl``; a chunks index held in memory
is reloaded when that file changed (another opener of the KB added documents).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import shutil
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgllm.exceptions import ConfigError, DomainNotFound, IndexMismatch, LoadError
from kgllm.kb_manifest import atomic_write_text, locked_kb
from kgllm.types import Chunk

if TYPE_CHECKING:
    from kgllm.embed import Embedder
    from kgllm.index import VectorIndex
    from kgllm.stores.base import GraphStore

__all__ = ["DomainIndexes", "INDEX_KINDS"]

INDEX_KINDS = ("entities", "facts", "chunks")
_TEXTS_FILE = "texts.json"  # the embedder's weights and, per item id, a digest of the text embedded


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


class DomainIndexes:
    """The embedder, vector indexes and document chunks of a KB's domains.

    A base of :class:`kgllm.kb.KnowledgeBase`, which provides the attributes and the two methods below.
    """

    path: Path
    store: GraphStore
    _manifest: dict[str, Any]
    _embedder: Embedder | None
    _indexes: dict[tuple[str, str], VectorIndex]
    _index_stamps: dict[tuple[str, str], object]  # the source's identity each cached index was built from
    _pipeline: Any  # the question pipeline, rebuilt when next used once set to None
    _index_locks: dict[tuple[str, str], threading.Lock]  # held while an index is brought up to date

    def domain_info(self, domain: str) -> dict[str, Any]:
        raise NotImplementedError

    def relation_text(self, domain: str) -> dict[str, str]:
        raise NotImplementedError

    def _update_manifest(self, change: Callable[[dict[str, Any]], None] | None = None) -> None:
        raise NotImplementedError

    # -- how indexes are built -------------------------------------------------------------------
    def index_options(self, kind: str) -> dict[str, Any]:
        """How every domain's ``kind`` index is built: the FAISS ``factory`` (default ``Flat``, exact
        search) and, when set, the search knobs ``nprobe`` (IVF lists probed) and ``ef_search`` (HNSW)."""
        _check_kind(kind)
        return {"factory": "Flat", **self._manifest.get("index_options", {}).get(kind, {})}

    def set_index_options(self, kind: str | None = None, *, factory: str | None = None,
                          nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Build the ``kind`` indexes (``None``: all kinds) with another FAISS ``factory`` (``"HNSW32"``,
        ``"IVF1024,Flat"``, ``"IVF1024,PQ32"``...) or search knobs; recorded in the KB manifest.

        An index built with another factory is rebuilt when next used (vectors come from the embedding
        cache); an IVF/PQ index searches exactly until it has enough vectors to train on.

        Raises:
            ConfigError: an unknown kind, a factory FAISS cannot build for the embedder's dimension, or a
                knob that is not a positive int; the manifest is left as it was.
        """
        from kgllm.index import VectorIndex

        kinds = INDEX_KINDS if kind is None else (_check_kind(kind),)
        changes: dict[str, Any] = {}
        if factory is not None:
            VectorIndex.create(self.embedder.dim, factory=factory, device="cpu")  # raises ConfigError
            changes["factory"] = factory
        for knob, value in (("nprobe", nprobe), ("ef_search", ef_search)):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                    raise ConfigError(f"{knob} must be a positive int, got {value!r}")
                if value >= 2**31:  # FAISS takes a C int: a larger one failed every search with OverflowError
                    raise ConfigError(f"{knob} must be below 2**31 (a FAISS int), got {value!r}")
                changes[knob] = int(value)  # a numpy integer too (JSON takes only ints)

        def record(manifest: dict[str, Any]) -> None:
            options = manifest.setdefault("index_options", {})
            for k in kinds:
                options[k] = {**options.get(k, {}), **changes}

        self._update_manifest(record)
        self._indexes = {key: value for key, value in self._indexes.items() if key[1] not in kinds}
        self._pipeline = None  # its retrievers hold the indexes they were given: asks kept the old ones

    # -- embedder and indexes --------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The embedding model (loaded on first use; the KB remembers which model built its indexes)."""
        if self._embedder is None:
            from kgllm.embed import Embedder

            self._embedder = Embedder(self._manifest.get("embedder"), cache_dir=self.path / "cache")
        return self._embedder

    def _index_dir(self, domain: str, kind: str) -> Path:
        return self.path / "index" / domain / kind

    def index(self, domain: str, kind: str) -> VectorIndex:
        """The ``kind`` index of ``domain``, brought up to date: only new items and items whose text changed
        are embedded."""
        options = self.index_options(kind)
        self.domain_info(domain)
        # one build at a time per index: threads asking at once each built it, embedded its items and saved
        # into the same folder, where one's checksums could describe the other's files
        with self._index_locks.setdefault((domain, kind), threading.Lock()):
            return self._up_to_date_index(domain, kind, options)

    def _up_to_date_index(self, domain: str, kind: str, options: dict[str, Any]) -> VectorIndex:
        from kgllm.index import VectorIndex

        stamp = self._source_stamp(domain, kind)
        cached = self._indexes.get((domain, kind))
        if cached is not None and _same_source(self._index_stamps.get((domain, kind)), stamp):
            return cached  # up to date: loads and deletes drop the domain's cached indexes
        directory = self._index_dir(domain, kind)
        known: dict[str, str] = {}
        index: VectorIndex | None = None
        if (directory / "manifest.json").exists():
            try:
                index = VectorIndex.load(directory, model=self.embedder.model_name, dim=self.embedder.dim)
            except (LoadError, IndexMismatch) as exc:  # derived data: say how to get it back
                raise type(exc)(f"{exc}; the index is rebuilt from the domain's graph and documents when "
                                f"its folder is deleted: {directory}") from exc
            if index.factory == options["factory"]:
                known = _read_digests(directory / _TEXTS_FILE, self.embedder.cache_identity)
            else:  # built as another type (set_index_options since): every item goes into a new one
                index = None
        rebuilt = index is None
        if index is None:
            index = VectorIndex.create(self.embedder.dim, factory=options["factory"], model=self.embedder.model_name)
        index.nprobe = options.get("nprobe", index.nprobe)
        index.ef_search = options.get("ef_search", index.ef_search)
        items = self._index_items(domain, kind)
        digests = {item_id: _digest(text) for item_id, text in items}
        missing = [(item_id, text) for item_id, text in items
                   if item_id not in index or known.get(item_id) != digests[item_id]]
        # items the source no longer holds (a folder left behind by a delete that failed, or written by
        # another opener meanwhile) must not be served
        held = len(digests) - len(missing)  # items in the index already: it holds others only when larger
        gone = [item_id for item_id in index.ids() if item_id not in digests] if len(index) > held else []
        if gone:
            index.remove(gone)
        if missing:
            ids, texts = zip(*missing)
            index.add(list(ids), self.embedder.encode(list(texts)))  # a changed text replaces its vector
        if missing or rebuilt or gone:
            index.save(directory)
        if known != digests:
            doc = {"embedder": self.embedder.cache_identity, "digests": digests}
            atomic_write_text(directory / _TEXTS_FILE, json.dumps(doc, ensure_ascii=False))
        self._indexes[(domain, kind)] = index
        self._index_stamps[(domain, kind)] = stamp
        return index

    def _source_stamp(self, domain: str, kind: str) -> object:
        """What tells whether a cached index is stale: the chunks file's identity for ``chunks`` (one stat),
        the store's snapshot of the graph otherwise (cached by the store until the domain changes)."""
        if kind != "chunks":
            # another client of the store (a second KB object, another process with Neo4j) may have loaded
            # into the domain: the index built from the older graph missed its new entities and facts
            try:
                return weakref.ref(self.store.snapshot(domain))  # a weak one: an old graph is not kept in memory
            except DomainNotFound:  # a domain with documents only
                return None
        try:
            st = os.stat(self._docs_file(domain))
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def has_index(self, domain: str, kind: str) -> bool:
        """Whether the ``kind`` index of ``domain`` has been built (``index`` builds it on first use)."""
        return (domain, kind) in self._indexes or (self._index_dir(domain, kind) / "manifest.json").exists()

    def _index_items(self, domain: str, kind: str) -> list[tuple[str, str]]:
        if kind == "chunks":
            return [(chunk.id, chunk.text) for chunk in self.chunks(domain)]
        if domain not in self.store.domains():  # a domain with documents only
            return []
        snapshot = self.store.snapshot(domain)
        if kind == "entities":
            return list(zip(snapshot.ids, snapshot.names))
        texts = self.relation_text(domain)
        rel_text = [texts.get(rel, rel) for rel in snapshot.relations]
        return [(f"{snapshot.ids[h]}\x1f{snapshot.relations[r]}\x1f{snapshot.ids[t]}",
                 f"{snapshot.names[h]} {rel_text[r]} {snapshot.names[t]}")
                for h, r, t in zip(snapshot.head.tolist(), snapshot.rel.tolist(), snapshot.tail.tolist())]

    # -- documents ---------------------------------------------------------------------------------
    def _docs_file(self, domain: str) -> Path:
        return self.path / "docs" / f"{domain}.jsonl"

    def has_documents(self, domain: str) -> bool:
        """Whether ``domain`` holds document chunks (one file check, no read)."""
        return self._docs_file(domain).exists()

    def chunks(self, domain: str) -> list[Chunk]:
        """Document chunks stored for ``domain``."""
        path = self._docs_file(domain)
        if not path.exists():
            return []
        from pydantic import ValidationError

        chunks = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    chunks.append(Chunk.model_validate_json(line))
                except ValidationError as exc:  # was pydantic's error, naming neither the file nor the line
                    raise LoadError(f"damaged document chunk, changed outside kgllm? ({exc.errors()[0]['msg']})",
                                    path=path, line=number) from exc
        return chunks

    def _chunk_count(self, domain: str) -> int:
        """How many chunks ``domain`` holds, without reading them (``stats`` works with a damaged file)."""
        path = self._docs_file(domain)
        if not path.exists():
            return 0
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())

    def add_chunks(self, domain: str, chunks: Sequence[Chunk]) -> int:
        """Append chunks (same id and text = same chunk, kept once); returns how many were new.

        Raises:
            LoadError: a chunk's id is held already with another text: another document of the same
                name, or the same one edited or chunked otherwise (nothing is written). Chunk ids are
                ``<source>#<n>``, so keeping both would mix the two documents' chunks.
        """
        # read, add and write under the KB's lock: two openers (or threads) adding documents at once each
        # rewrote the file from what they had read, and the chunks of one of them were lost
        with locked_kb(self.path):
            existing = self.chunks(domain)
            texts = {chunk.id: chunk.text for chunk in existing}
            new = []
            for chunk in chunks:
                text = texts.get(chunk.id)
                if text is None:
                    texts[chunk.id] = chunk.text
                    new.append(chunk.model_copy(update={"domain": domain}))
                elif text != chunk.text:
                    from kgllm.loaders._io import shorten

                    raise LoadError(f"domain {domain!r} already holds a different document named "
                                    f"{chunk.source!r} (its chunk {chunk.id!r} has another text); rename the file, "
                                    "or delete the domain and load it again", path=chunk.source, line=chunk.line,
                                    value=shorten(chunk.text))
            if new:
                text = "".join(chunk.to_json() + "\n" for chunk in existing + new)
                atomic_write_text(self._docs_file(domain), text)
                self._indexes.pop((domain, "chunks"), None)
        return len(new)

    def _indexed_counts(self, domain: str) -> dict[str, int]:
        """Items in each index of ``domain`` that has been built."""
        counts = {}
        for kind in INDEX_KINDS:
            manifest = self._index_dir(domain, kind) / "manifest.json"
            if manifest.exists():
                try:
                    counts[kind] = int(json.loads(manifest.read_text(encoding="utf-8")).get("count", 0))
                except (OSError, ValueError, TypeError, AttributeError):  # damaged: kb.index raises LoadError
                    continue
        return counts

    def _forget_indexes(self, domain: str) -> None:
        """Drop ``domain``'s indexes held in memory (they are brought up to date when next asked for)."""
        self._indexes = {key: value for key, value in self._indexes.items() if key[0] != domain}

    def _remove_indexes_and_documents(self, domain: str) -> None:
        shutil.rmtree(self.path / "index" / domain, ignore_errors=True)
        self._docs_file(domain).unlink(missing_ok=True)
        self._forget_indexes(domain)


def _same_source(old: object, new: object) -> bool:
    """Whether two source stamps (see ``_source_stamp``) name the same source."""
    if isinstance(old, weakref.ref) and isinstance(new, weakref.ref):
        return old() is not None and old() is new()
    return old == new


def _check_kind(kind: str) -> str:
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; expected one of {', '.join(INDEX_KINDS)}")
    return kind


def _read_digests(path: Path, embedder: str) -> dict[str, str]:
    """The item digests saved beside an index by ``embedder`` ({} when missing, unreadable or written with
    other weights: every item is embedded again, mostly from the embedding cache)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("embedder") != embedder or not isinstance(doc.get("digests"), dict):
        return {}
    return doc["digests"]
