"""The embedded graph store: a directory on disk, compact arrays in memory, no server.

Layout of a store directory::

    manifest.json                 the only file ever rewritten; replaced atomically by each commit
    .lock                         advisory lock held while committing, deleting and cleaning
    domains/<dir>/<segment>/      one segment per committed load, never modified afterwards
        head.npy rel.npy tail.npy     int32 node / relation indexes of the new triples
        source.npy line.npy           int32 provenance: index into the sources (-1: none), line (0: none)
        entities.json                 entity ids new in this segment, in node-index order
        relations.json sources.json   relation names / source files new in this segment
        names.json                    display names set by this load (``{id: name}``)

A load is staged in memory by a :class:`LocalBulkWriter`; ``commit`` deduplicates it, writes one
new segment (fsynced) and then atomically replaces the manifest, which is the moment it becomes
visible. A load that fails before that leaves both disk and memory as they were; a crash between
the two leaves an unreferenced segment, removed the next time the store is opened.

In memory each domain becomes a :class:`~kgllm.stores.snapshot.GraphSnapshot` (CSR in both
directions), built on first use and cached until the domain changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kgllm.exceptions import DomainNotFound, KBNotFound, StoreError
from kgllm.stores._local_state import ARRAYS, DomainState, fsync_dir, write_segment
from kgllm.stores._local_writer import LocalBulkWriter
from kgllm.stores.base import Direction, RawTriple, subgraph_to_networkx
from kgllm.stores.snapshot import GraphSnapshot
from kgllm.types import Entity, Fact, Subgraph

try:  # advisory locking between processes; POSIX only, a no-op elsewhere
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["LocalGraphStore", "LocalBulkWriter"]

FORMAT = "kgllm-local-graph"
VERSION = 1
MANIFEST = "manifest.json"


def _gather(ptr: np.ndarray, order: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Edge indices of the CSR rows ``nodes`` concatenated, without a Python loop over nodes."""
    starts = ptr[nodes]
    lengths = ptr[nodes + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return order[shift + np.arange(total)]


class LocalGraphStore:
    """The embedded :class:`~kgllm.stores.base.GraphStore`: a durable directory, CSR arrays in memory.

    Args:
        path: the store directory; created (with parents) when missing or empty.
        create: when False a missing store is an error instead of being created.

    Raises:
        KBNotFound: ``path`` is a file, a non-empty directory that is not a store, or (with
            ``create=False``) does not exist.

    One process may write at a time per domain (commits take an advisory lock and check that the
    domain did not change underneath); a store sees commits made by other processes after
    :meth:`refresh` or reopening.
    """

    backend = "local"

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._states: dict[str, DomainState] = {}
        self._writers: dict[str, LocalBulkWriter] = {}
        self._closed = False
        manifest = self.path / MANIFEST
        if self.path.exists() and not self.path.is_dir():
            raise KBNotFound(f"{self.path} is not a kgllm graph store: it is a file, not a directory")
        if manifest.is_file():
            self._manifest = self._read_manifest()
        elif self.path.is_dir() and any(self.path.iterdir()):
            raise KBNotFound(f"{self.path} is not a kgllm graph store: it has files but no {MANIFEST}")
        elif not create:
            raise KBNotFound(f"no kgllm graph store at {self.path}")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._manifest = {"format": FORMAT, "version": VERSION, "generation": 0, "domains": {}}
            self._write_manifest(self._manifest)
        (self.path / "domains").mkdir(exist_ok=True)
        self._clean_orphans()

    def __repr__(self) -> str:
        return f"LocalGraphStore({str(self.path)!r}, domains={len(self._manifest['domains'])})"

    def __enter__(self) -> LocalGraphStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        self.close()

    # -- writing -------------------------------------------------------------------------------
    def writer(self, domain: str, *, batch_size: int = 50_000) -> LocalBulkWriter:
        """A writer staging one load into ``domain`` (created by the first commit that adds triples).

        Raises:
            StoreError: another writer for ``domain`` is still open.
        """
        self._check_open()
        if not isinstance(domain, str) or not domain:
            raise ValueError(f"a domain name must be a non-empty string, got {domain!r}")
        with self._lock:
            if domain in self._writers:
                raise StoreError(f"a writer for domain {domain!r} is already open; commit or abort it first")
            base = self._state(domain) if domain in self._manifest["domains"] else None
            writer = LocalBulkWriter(self, domain, base, batch_size=batch_size)
            self._writers[domain] = writer
            return writer

    def add_triples(self, domain: str, triples: Iterable[RawTriple], *, batch_size: int = 50_000) -> int:
        """Load ``triples`` atomically into ``domain``; returns the number of new triples."""
        with self.writer(domain, batch_size=batch_size) as writer:
            writer.add(triples)
        return writer.added or 0

    def delete_domain(self, domain: str) -> None:
        """Remove ``domain`` and its files; other domains are untouched.

        Raises:
            DomainNotFound: no such domain.
            StoreError: a writer for it is open.
        """
        self._check_open()
        with self._lock, self._file_lock():
            self._sync()
            if domain not in self._manifest["domains"]:
                raise DomainNotFound(domain, self.domains())
            if domain in self._writers:
                raise StoreError(f"cannot delete domain {domain!r} while a writer for it is open")
            manifest = json.loads(json.dumps(self._manifest))
            entry = manifest["domains"].pop(domain)
            self._write_manifest(manifest)
            self._manifest = manifest
            self._states.pop(domain, None)
            shutil.rmtree(self.path / "domains" / entry["dir"], ignore_errors=True)

    def _publish(self, writer: LocalBulkWriter, arrays: dict[str, np.ndarray], lex_order: np.ndarray,
                 names: dict[str, str]) -> None:
        """Write the writer's segment, then replace the manifest: the commit point."""
        domain, base = writer.domain, writer._base
        with self._lock, self._file_lock():
            current = self._states.get(domain) if domain in self._manifest["domains"] else None
            if base is not None and current is not None and current is not base:
                raise StoreError(f"domain {domain!r} changed since this writer started; load again")
            self._sync()
            entry = self._manifest["domains"].get(domain)
            on_disk = [s["name"] for s in entry["segments"]] if entry else None
            if on_disk != ([s["name"] for s in base.segments] if base is not None else None):
                raise StoreError(f"domain {domain!r} was changed by another process since this writer "
                                 f"started; reopen the store and load again")
            dir_name = base.dir if base is not None else f"d-{secrets.token_hex(6)}"
            domain_path = self.path / "domains" / dir_name
            new_ids = writer._new_names(writer._ids, writer._num_ids)
            new_rels = writer._new_names(writer._rels, writer._num_rels)
            seg_name = f"seg-{secrets.token_hex(8)}"
            segment: dict[str, Any] = {"name": seg_name, "triples": int(arrays["head"].shape[0]),
                       "entities": len(new_ids), "relations": len(new_rels), "sources": len(writer._new_sources)}
            manifest = json.loads(json.dumps(self._manifest))
            manifest["domains"][domain] = {"dir": dir_name,
                                           "segments": [*(base.segments if base else []), segment]}
            try:
                domain_path.mkdir(exist_ok=True)
                write_segment(domain_path / seg_name, arrays, new_ids, new_rels, writer._new_sources, names)
                self._write_manifest(manifest)
            except BaseException:
                shutil.rmtree(domain_path if base is None else domain_path / seg_name, ignore_errors=True)
                raise
            self._manifest = manifest
            start = base if base is not None else DomainState.empty(domain, dir_name)
            self._states[domain] = start.extended(segment, writer._ids, new_ids, writer._rels, new_rels,
                                                  writer._new_sources, names, arrays, lex_order)

    def compact(self, domain: str) -> None:
        """Rewrite a domain's segments as one, so reopening reads a few files instead of many.

        The content is unchanged; like a commit, the switch is one atomic manifest replacement.

        Raises:
            DomainNotFound: no such domain.
            StoreError: a writer for it is open.
        """
        self._check_open()
        with self._lock, self._file_lock():
            self._sync()
            state = self._state(domain)
            if domain in self._writers:
                raise StoreError(f"cannot compact domain {domain!r} while a writer for it is open")
            if len(state.segments) <= 1:
                return
            seg_name = f"seg-{secrets.token_hex(8)}"
            segment: dict[str, Any] = {"name": seg_name, "triples": state.num_triples,
                                       "entities": state.num_entities, "relations": len(state.relations),
                                       "sources": len(state.sources)}
            domain_path = self.path / "domains" / state.dir
            manifest = json.loads(json.dumps(self._manifest))
            manifest["domains"][domain] = {"dir": state.dir, "segments": [segment]}
            names = {state.ids[i]: name for i, name in state.name_overrides.items()}
            try:
                write_segment(domain_path / seg_name, state.arrays, state.ids, state.relations, state.sources, names)
                self._write_manifest(manifest)
            except BaseException:
                shutil.rmtree(domain_path / seg_name, ignore_errors=True)
                raise
            self._manifest = manifest
            # same content: the new state shares the cached arrays, indexes and snapshot
            self._states[domain] = dataclasses.replace(state, segments=[segment])
            for old in state.segments:
                shutil.rmtree(domain_path / old["name"], ignore_errors=True)

    def _writer_done(self, writer: LocalBulkWriter) -> None:
        with self._lock:
            if self._writers.get(writer.domain) is writer:
                del self._writers[writer.domain]

    # -- reading -------------------------------------------------------------------------------
    def domains(self) -> list[str]:
        self._check_open()
        return sorted(self._manifest["domains"])

    def count(self, domain: str | None = None) -> dict[str, int]:
        """``{"entities": n, "triples": m}`` for one domain or summed over all (from the manifest)."""
        self._check_open()
        # one manifest throughout: a commit or delete meanwhile replaces it (a domain listed in the
        # old one may be gone from the new one)
        domains = self._manifest["domains"]
        entries = [self._entry(domain)] if domain is not None else list(domains.values())
        totals = {"entities": 0, "triples": 0}
        for entry in entries:
            for segment in entry["segments"]:
                totals["entities"] += int(segment["entities"])
                totals["triples"] += int(segment["triples"])
        return totals

    def relations(self, domain: str) -> list[str]:
        """The domain's relation names, sorted, with their original spelling."""
        return sorted(self._state(domain).relations)

    def entity(self, id: str, domain: str) -> Entity | None:
        state = self._state(domain)
        index = state.id_index.get(id)
        return None if index is None else state.entity(index)

    def find_entities(self, name: str, *, domain: str | None = None, limit: int = 10) -> list[Entity]:
        """Entities named ``name`` ignoring case, then those whose name starts with it.

        ``name`` is stripped of surrounding blanks (an empty query finds nothing). Exact matches are
        ordered by (domain, id), prefix matches by (lowercased name, domain, id).
        """
        query = name.strip().lower()
        if not query or limit <= 0:
            return []
        exact: list[Entity] = []
        prefix: list[tuple[str, str, str, Entity]] = []
        for d in [domain] if domain is not None else self.domains():
            try:
                state = self._state(d)
            except DomainNotFound:
                if domain is not None:
                    raise
                continue  # deleted (by another thread or process) since it was listed
            hits, starts = state.find(query, limit)
            exact.extend(state.entity(i) for i in hits)
            prefix.extend((state.names[i].lower(), d, state.ids[i], state.entity(i)) for i in starts)
        prefix.sort(key=lambda item: item[:3])
        return (exact + [item[3] for item in prefix])[:limit]

    def neighbors(self, ids: Sequence[str], *, domain: str, relations: Sequence[str] | None = None,
                  direction: Direction = "out", limit: int | None = None) -> list[Fact]:
        """Facts leaving (``out``), entering (``in``) or touching (``both``) any of ``ids``.

        Unknown ids and relations are ignored; each fact appears once (a self-loop too), ordered by
        the position of its node in ``ids``, outgoing before incoming, then load order.
        """
        if direction not in ("out", "in", "both"):
            raise ValueError(f"direction must be one of 'out', 'in', 'both', got {direction!r}")
        # one state for both: a commit between two lookups would pair new node indexes with old arrays
        state = self._state(domain)
        snap = state.snapshot()
        nodes = list(dict.fromkeys(i for i in map(state.id_index.get, ids) if i is not None))
        if not nodes:
            return []
        node_array = np.asarray(nodes, dtype=np.int64)
        parts = []
        for node in node_array:
            if direction in ("out", "both"):
                parts.append(snap.out_edges(node))
            if direction in ("in", "both"):
                parts.append(snap.in_edges(node))
        edges = np.concatenate(parts)
        if len(nodes) > 1 or direction == "both":  # the same edge can be reached twice
            _, first = np.unique(edges, return_index=True)
            edges = edges[np.sort(first)]
        if relations is not None:
            wanted = [r for r in map(state.relation_index.get, relations) if r is not None]
            edges = edges[np.isin(snap.rel[edges], wanted)]
        if limit is not None:
            edges = edges[:max(limit, 0)]
        return [snap.fact(int(e)) for e in edges]

    def k_hop(self, seeds: Sequence[str], k: int, *, domain: str, limit: int = 10_000) -> Subgraph:
        """Nodes within ``k`` undirected hops of ``seeds`` and the facts on paths of length ≤ k from them.

        Those facts are the ones touching a node fewer than ``k`` hops away. Expansion is breadth-first,
        each level's facts in (head name, head id, relation, tail name, tail id) order; once ``limit`` facts
        are gathered it stops (``truncated``), keeping the first facts in that order and the nodes they
        reach (in the order they are reached). Unknown seeds are ignored.
        """
        if k < 0 or limit < 0:
            raise ValueError(f"k and limit must be >= 0, got k={k!r}, limit={limit!r}")
        state = self._state(domain)  # one state for both, as in neighbors
        snap = state.snapshot()
        seed_nodes = list(dict.fromkeys(i for i in map(state.id_index.get, seeds) if i is not None))
        unseen = np.iinfo(np.int32).max
        depth = np.full(snap.num_nodes, unseen, dtype=np.int32)
        frontier = np.asarray(seed_nodes, dtype=np.int64)
        depth[frontier] = 0
        found, kept, total, truncated = [frontier], [], 0, False
        for level in range(k):
            if frontier.size == 0 or truncated:
                break
            edges = np.unique(np.concatenate([_gather(snap.out_ptr, snap.out_order, frontier),
                                              _gather(snap.in_ptr, snap.in_order, frontier)]))
            # edges already taken from an earlier level touch a node of smaller depth
            edges = edges[np.minimum(depth[snap.head[edges]], depth[snap.tail[edges]]) == level]
            edges = edges[snap.edge_order(edges)]  # the order every backend agrees on
            if total + edges.shape[0] > limit:
                edges, truncated = edges[:limit - total], True
            kept.append(edges)
            total += edges.shape[0]
            ends = np.stack([snap.head[edges], snap.tail[edges]], axis=1).ravel()  # each fact's head, then tail
            ends = ends[depth[ends] == unseen]
            _, first = np.unique(ends, return_index=True)
            frontier = ends[np.sort(first)].astype(np.int64)
            depth[frontier] = level + 1
            found.append(frontier)
        nodes = [state.entity(int(i)) for part in found for i in part]
        facts = [snap.fact(int(e)) for part in kept for e in part]
        return Subgraph(nodes=nodes, facts=facts, seeds=[state.ids[i] for i in seed_nodes], truncated=truncated)

    def iter_triples(self, domain: str) -> Iterator[Fact]:
        """Every stored fact of ``domain`` in load order, with names and provenance (source, line)."""
        state = self._state(domain)
        ids, names, relations, sources = state.ids, state.names, state.relations, state.sources
        a = state.arrays
        step = 65_536
        for start in range(0, state.num_triples, step):
            chunk = [a[key][start:start + step].tolist() for key in ARRAYS]
            for h, r, t, s, line in zip(*chunk, strict=True):
                yield Fact(head=ids[h], relation=relations[r], tail=ids[t], domain=domain, head_name=names[h],
                           tail_name=names[t], source=sources[s] if s >= 0 else None, line=line or None)

    def snapshot(self, domain: str) -> GraphSnapshot:
        """The domain as CSR arrays; built on first use, cached until the domain changes."""
        return self._state(domain).snapshot()

    def to_networkx(self, subgraph: Subgraph) -> nx.MultiDiGraph:
        return subgraph_to_networkx(subgraph)

    def refresh(self) -> None:
        """Pick up commits made by other processes since this store was opened."""
        self._check_open()
        with self._lock:
            self._sync()

    def close(self) -> None:
        """Abort open writers and drop the in-memory state; the store cannot be used afterwards."""
        with self._lock:
            for writer in list(self._writers.values()):
                writer.abort()
            self._states.clear()
            self._closed = True

    # -- internals -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the graph store at {self.path} is closed")

    def _entry(self, domain: str) -> dict[str, Any]:
        entry = self._manifest["domains"].get(domain)
        if entry is None:
            raise DomainNotFound(domain, sorted(self._manifest["domains"]))
        return entry

    def _state(self, domain: str) -> DomainState:
        self._check_open()
        state = self._states.get(domain)
        if state is None:
            with self._lock:
                state = self._states.get(domain)
                if state is None:
                    state = DomainState.load(domain, self._entry(domain), self.path / "domains")
                    self._states[domain] = state
        return state

    def _read_manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST
        try:
            manifest = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise KBNotFound(f"{self.path} is not a kgllm graph store: unreadable {MANIFEST} ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise KBNotFound(f"{self.path} is not a kgllm graph store: {MANIFEST} is not of format {FORMAT!r}")
        if int(manifest.get("version", 0)) > VERSION:
            raise StoreError(f"{self.path} was written by a newer kgllm (store format version "
                             f"{manifest['version']}, this one reads up to {VERSION})")
        return manifest

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        """Atomically replace the manifest: temp file, fsync, rename, fsync the directory."""
        manifest["generation"] = int(manifest.get("generation", 0)) + 1
        tmp = self.path / f"{MANIFEST}.tmp-{secrets.token_hex(4)}"
        try:
            with open(tmp, "wb") as handle:
                handle.write(json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / MANIFEST)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        fsync_dir(self.path)

    def _sync(self) -> None:
        """Adopt the manifest on disk if another process committed; drop the domains it changed."""
        disk = self._read_manifest()
        if disk.get("generation") == self._manifest.get("generation"):
            return
        for name in set(disk["domains"]) | set(self._manifest["domains"]):
            if disk["domains"].get(name) != self._manifest["domains"].get(name):
                self._states.pop(name, None)
        self._manifest = disk

    @contextlib.contextmanager
    def _file_lock(self, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the store's advisory lock; yields False when ``blocking`` is off and it is taken."""
        if fcntl is None:  # pragma: no cover - Windows: single-process use
            yield True
            return
        with open(self.path / ".lock", "a+b") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _clean_orphans(self) -> None:
        """Remove what interrupted commits left behind: temp manifests and unreferenced segments."""
        with self._file_lock(blocking=False) as locked:
            if not locked:  # another process is committing; its staged files are not orphans
                return
            self._sync()
            for tmp in self.path.glob(f"{MANIFEST}.tmp-*"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
            referenced = {e["dir"]: {s["name"] for s in e["segments"]} for e in self._manifest["domains"].values()}
            for child in (self.path / "domains").iterdir():
                if child.name not in referenced:
                    _remove(child)
                    continue
                for segment in child.iterdir():
                    if segment.name not in referenced[child.name]:
                        _remove(segment)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
