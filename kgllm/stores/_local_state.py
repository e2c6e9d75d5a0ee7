"""One domain of the local store: its segment files on disk and its state in memory.

A :class:`DomainState` is never changed once built: a commit makes a new one (sharing nothing
mutable with the old), so a snapshot or an iteration in progress keeps seeing the graph it started on.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kgllm.exceptions import StoreError
from kgllm.stores.snapshot import GraphSnapshot
from kgllm.types import Entity

__all__ = ["DomainState", "triple_keys", "write_segment", "fsync_dir"]

ARRAYS = ("head", "rel", "tail", "source", "line")
_INT64_MAX = np.iinfo(np.int64).max


def triple_keys(head: np.ndarray, rel: np.ndarray, tail: np.ndarray, num_entities: int,
                num_relations: int) -> np.ndarray:
    """One sortable key per triple; equal keys ⇔ equal ``(head, rel, tail)``; order is lexicographic.

    Packed into int64 when ``num_entities² · num_relations`` fits (always, short of ~10⁸ entities);
    otherwise 12-byte big-endian records, which numpy sorts and searches bytewise in the same order.
    """
    n_ent, n_rel = max(num_entities, 1), max(num_relations, 1)
    if n_ent * n_ent * n_rel <= _INT64_MAX:
        keys = head.astype(np.int64) * n_rel + rel
        keys *= n_ent
        keys += tail
        return keys
    rows = np.empty((head.shape[0], 3), dtype=">i4")
    rows[:, 0], rows[:, 1], rows[:, 2] = head, rel, tail
    return rows.view("V12").ravel()


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new or renamed files) durable; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, write: Any) -> None:
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def write_segment(path: Path, arrays: dict[str, np.ndarray], entities: list[str], relations: list[str],
                  sources: list[str], names: dict[str, str]) -> None:
    """Write one segment directory (every file fsynced); ``path`` must not exist yet."""
    path.mkdir(parents=False)
    for key in ARRAYS:
        _write_file(path / f"{key}.npy", lambda h, key=key: np.save(h, arrays[key], allow_pickle=False))
    for key, value in (("entities", entities), ("relations", relations), ("sources", sources), ("names", names)):
        data = json.dumps(value, ensure_ascii=False).encode("utf-8")
        _write_file(path / f"{key}.json", lambda h, data=data: h.write(data))
    fsync_dir(path)
    fsync_dir(path.parent)


def _join(chunks: list[np.ndarray]) -> np.ndarray:
    if not chunks:
        return np.zeros(0, dtype=np.int32)
    joined = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    return joined.astype(np.int32, copy=False)


def _read_json(path: Path) -> Any:
    with open(path, "rb") as handle:
        return json.loads(handle.read())


@dataclass
class DomainState:
    """A domain as committed: entity ids, relations, sources, display names and the edge arrays.

    Attributes:
        name: the domain name.
        dir: its directory name under ``domains/``.
        segments: the manifest entries of its segments, oldest first.
        ids: entity id per node index; relations: name per relation index; sources: provenance files.
        name_overrides: node index → display name, where it differs from the id.
        arrays: ``head``, ``rel``, ``tail``, ``source``, ``line`` — int32, one entry per triple.
    """

    name: str
    dir: str
    segments: list[dict[str, Any]]
    ids: list[str]
    relations: list[str]
    sources: list[str]
    name_overrides: dict[int, str]
    arrays: dict[str, np.ndarray]
    _id_index: dict[str, int] | None = field(default=None, repr=False)
    _rel_index: dict[str, int] | None = field(default=None, repr=False)
    _lex_order: np.ndarray | None = field(default=None, repr=False)
    _snapshot: GraphSnapshot | None = field(default=None, repr=False)
    _names: list[str] | None = field(default=None, repr=False)
    _lower: dict[str, list[int]] | None = field(default=None, repr=False)
    _lower_sorted: list[str] | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, name: str, dir: str) -> DomainState:
        arrays = {key: np.zeros(0, dtype=np.int32) for key in ARRAYS}
        return cls(name, dir, [], [], [], [], {}, arrays, _id_index={}, _rel_index={},
                   _lex_order=np.zeros(0, dtype=np.int64))

    @classmethod
    def load(cls, name: str, entry: dict[str, Any], domains_dir: Path) -> DomainState:
        """Read a domain's segments as listed in its manifest ``entry``."""
        ids: list[str] = []
        relations: list[str] = []
        sources: list[str] = []
        raw_names: dict[str, str] = {}
        parts: dict[str, list[np.ndarray]] = {key: [] for key in ARRAYS}
        base = domains_dir / entry["dir"]
        try:
            for segment in entry["segments"]:
                path = base / segment["name"]
                ids.extend(_read_json(path / "entities.json"))
                relations.extend(_read_json(path / "relations.json"))
                sources.extend(_read_json(path / "sources.json"))
                raw_names.update(_read_json(path / "names.json"))
                for key in ARRAYS:
                    parts[key].append(np.load(path / f"{key}.npy", allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise StoreError(f"domain {name!r}: cannot read segment files under {base}: {exc}") from exc
        arrays = {key: _join(chunks) for key, chunks in parts.items()}
        expected = sum(int(s["triples"]) for s in entry["segments"])
        if arrays["head"].shape[0] != expected or len(ids) != sum(int(s["entities"]) for s in entry["segments"]):
            raise StoreError(f"domain {name!r}: segment files under {base} do not match the manifest")
        state = cls(name, entry["dir"], list(entry["segments"]), ids, relations, sources, {}, arrays)
        if raw_names:
            index = state.id_index
            state.name_overrides = {index[i]: n for i, n in raw_names.items() if i in index and n != i}
        return state

    # -- sizes and lookups ---------------------------------------------------------------------
    @property
    def num_entities(self) -> int:
        return len(self.ids)

    @property
    def num_triples(self) -> int:
        return int(self.arrays["head"].shape[0])

    @property
    def id_index(self) -> dict[str, int]:
        """Entity id → node index (shared with the snapshot when one is built)."""
        if self._id_index is None:
            if self._snapshot is not None and self._snapshot._index is not None:
                self._id_index = self._snapshot._index
            else:
                self._id_index = dict(zip(self.ids, range(len(self.ids)), strict=True))  # ~2x a dict comprehension
                if self._snapshot is not None:
                    self._snapshot._index = self._id_index
        return self._id_index

    @property
    def relation_index(self) -> dict[str, int]:
        if self._rel_index is None:
            self._rel_index = dict(zip(self.relations, range(len(self.relations)), strict=True))
        return self._rel_index

    @property
    def names(self) -> list[str]:
        """Display name per node index (the id itself unless a name was set)."""
        if self._names is None:
            if not self.name_overrides:
                self._names = self.ids
            else:
                get = self.name_overrides.get
                self._names = [get(i, eid) for i, eid in enumerate(self.ids)]
        return self._names

    def entity(self, i: int) -> Entity:
        return Entity(id=self.ids[i], name=self.names[i], domain=self.name)

    def snapshot(self) -> GraphSnapshot:
        if self._snapshot is None:
            a = self.arrays
            self._snapshot = GraphSnapshot(self.name, self.ids, self.names, self.relations, a["head"], a["rel"],
                                           a["tail"], sources=self.sources, source=a["source"], line=a["line"],
                                           _index=self._id_index)
        return self._snapshot

    def lex_order(self) -> np.ndarray:
        """Edge indices in lexicographic ``(head, rel, tail)`` order (for dedup against new loads)."""
        if self._lex_order is None:
            a = self.arrays
            keys = triple_keys(a["head"], a["rel"], a["tail"], self.num_entities, len(self.relations))
            self._lex_order = np.argsort(keys, kind="stable")
        return self._lex_order

    # -- names ---------------------------------------------------------------------------------
    def find(self, query: str, limit: int) -> tuple[list[int], list[int]]:
        """Node indices whose lowercased name equals ``query`` / starts with it (at most ``limit`` each).

        ``query`` is already lowercased. Exact matches come by id; prefix matches by (name, id).
        """
        if self._lower is None:
            lower: dict[str, list[int]] = {}
            for i, name in enumerate(self.names):
                lower.setdefault(name.lower(), []).append(i)
            self._lower = lower
        ids = self.ids
        exact = sorted(self._lower.get(query, ()), key=ids.__getitem__)[:limit]
        prefix: list[int] = []
        if self._lower_sorted is None:
            self._lower_sorted = sorted(self._lower)
        keys = self._lower_sorted
        pos = bisect_left(keys, query)
        while pos < len(keys) and len(prefix) < limit and keys[pos].startswith(query):
            if keys[pos] != query:
                prefix.extend(sorted(self._lower[keys[pos]], key=ids.__getitem__))
            pos += 1
        return exact, prefix[:limit]

    # -- growth --------------------------------------------------------------------------------
    def extended(self, segment: dict[str, Any], id_index: dict[str, int], new_ids: list[str],
                 rel_index: dict[str, int], new_relations: list[str], new_sources: list[str],
                 names: dict[str, str], arrays: dict[str, np.ndarray], lex_order: np.ndarray | None) -> DomainState:
        """The state after appending one committed segment (``self`` is left untouched).

        ``id_index`` / ``rel_index`` map every name (old and new) to its index; they are taken over.
        """
        overrides = dict(self.name_overrides)
        for eid, name in names.items():
            overrides.pop(id_index[eid], None)
            if name != eid:
                overrides[id_index[eid]] = name
        if arrays["head"].shape[0]:
            merged = {key: np.concatenate([self.arrays[key], arrays[key]]) for key in ARRAYS}
        else:
            merged = self.arrays
        return DomainState(self.name, self.dir, [*self.segments, segment], self.ids + new_ids,
                           self.relations + new_relations, self.sources + new_sources, overrides, merged,
                           _id_index=id_index, _rel_index=rel_index, _lex_order=lex_order)
