"""The writer of the local store: stages one load in memory as int32 arrays, deduplicates on commit."""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from kgllm.exceptions import LoadError
from kgllm.stores._local_state import ARRAYS, DomainState, triple_keys
from kgllm.stores.base import MAX_LINE, RawTriple, WriterLifecycle, bad_line

if TYPE_CHECKING:
    from kgllm.stores.local import LocalGraphStore

__all__ = ["LocalBulkWriter"]


def _indexer(committed: Mapping[str, int]) -> defaultdict[str, int]:
    """A copy of ``committed`` (name → index) that gives each unseen name the next free index.

    A ``defaultdict`` over a counter encodes a value with one C-level subscript whether it is new
    or not: the fastest dictionary encoding Python offers (about 1.7x a ``get``/``setdefault`` pair).
    """
    return defaultdict(itertools.count(len(committed)).__next__, committed)


def _encode(values: Sequence[Any], index: defaultdict[str, int]) -> np.ndarray:
    return np.fromiter(map(index.__getitem__, values), dtype=np.int32, count=len(values))


class LocalBulkWriter(WriterLifecycle):
    """Stages one load into one domain of a :class:`LocalGraphStore`; see :class:`~kgllm.stores.base.BulkWriter`.

    Triples are read in batches; each batch becomes five int32 arrays (entity and relation names are
    turned into indexes with one dict lookup each). Duplicates, within the load and against what the
    domain already holds, are removed at ``commit`` with a sort over int64 keys.
    """

    def __init__(self, store: LocalGraphStore, domain: str, base: DomainState | None, *,
                 batch_size: int = 50_000) -> None:
        self.domain = domain
        self.added: int | None = None  # set by commit
        self._store = store
        self._base = base
        self._batch_size = max(1, int(batch_size))
        # Entity / relation indexes: the committed ones copied, new ones appended in first-seen order.
        self._num_ids = base.num_entities if base is not None else 0
        self._num_rels = len(base.relations) if base is not None else 0
        self._ids = _indexer(base.id_index if base is not None else {})
        self._rels = _indexer(base.relation_index if base is not None else {})
        sources = base.sources if base is not None else []
        self._source_codes: dict[str | None, int] = {None: -1, **{s: i for i, s in enumerate(sources)}}
        self._num_sources = len(sources)
        self._new_sources: list[str] = []
        self._chunks: dict[str, list[np.ndarray]] = {key: [] for key in ARRAYS}
        self._names: dict[str, str] = {}
        self._status = "open"

    def __repr__(self) -> str:
        return f"LocalBulkWriter(domain={self.domain!r}, status={self._status!r})"

    # -- staging -------------------------------------------------------------------------------
    def add(self, triples: Iterable[RawTriple]) -> None:
        """Stage ``triples`` (any iterable of RawTriple or plain 3-tuples), read in batches.

        Raises:
            LoadError: an entity id or relation name is not a non-empty string (names source and line).
                The writer is aborted, as it is on any error raised while reading ``triples``.
        """
        self._check_open()
        try:
            iterator = iter(triples)
            while batch := list(itertools.islice(iterator, self._batch_size)):
                self._add_batch(batch)
        except BaseException:
            self.abort()
            raise

    def _add_batch(self, batch: list[Any]) -> None:
        width = min(map(len, batch))  # 3 for plain triples, 5 for RawTriples with provenance
        if width < 3:
            bad = next(row for row in batch if len(row) < 3)
            raise LoadError("expected (head, relation, tail) triples", value=bad)
        # one itemgetter pass per column: about 3x faster than zip(*batch) on 50k rows
        columns = [list(map(itemgetter(i), batch)) for i in range(min(width, 5))]
        heads, rels, tails = columns[0], columns[1], columns[2]
        seen = len(self._ids), len(self._rels)
        head, tail, rel = _encode(heads, self._ids), _encode(tails, self._ids), _encode(rels, self._rels)
        if (len(self._ids), len(self._rels)) != seen:  # only batches bringing unseen names need checking
            self._validate(batch, heads, rels, tails)
        n = len(batch)
        source = np.full(n, -1, dtype=np.int32)
        if len(columns) > 3:
            names = set(columns[3])
            if len(names) == 1:  # the usual case: a whole batch from one file
                source.fill(self._source_code(names.pop()))
            else:
                source[:] = [self._source_code(s) for s in columns[3]]
        line = self._lines(batch, columns[4]) if len(columns) > 4 else np.zeros(n, dtype=np.int32)
        for key, array in zip(ARRAYS, (head, rel, tail, source, line), strict=True):
            self._chunks[key].append(array)

    def _validate(self, batch: list[Any], heads: Sequence[Any], rels: Sequence[Any], tails: Sequence[Any]) -> None:
        types = set(map(type, heads))
        types.update(map(type, rels))
        types.update(map(type, tails))
        if types == {str} and "" not in self._ids and "" not in self._rels:
            return
        for row in batch:
            if not all(isinstance(v, str) and v for v in row[:3]):
                source = row[3] if len(row) > 3 else None
                line = row[4] if len(row) > 4 else None
                raise LoadError("entity ids and relation names must be non-empty strings",
                                path=source, line=line, value=tuple(row[:3]))

    @staticmethod
    def _lines(batch: list[Any], lines: list[Any]) -> np.ndarray:
        """The batch's line numbers as int32 (0: none), or a LoadError naming the first that is not one
        (numpy would silently take "3" or 3.5 as 3, and fail on 2**40 with an OverflowError)."""
        if set(map(type, lines)) <= {int, type(None)}:  # the usual case, checked with numpy
            with contextlib.suppress(OverflowError):
                values = np.array([x or 0 for x in lines] if None in lines else lines, dtype=np.int64)
                if values.min() >= 0 and values.max() <= MAX_LINE:
                    return values.astype(np.int32)
        row = next((row for row, x in zip(batch, lines, strict=True) if bad_line(x)), None)
        if row is None:  # ints of another type (bool, an int subclass), all in range
            return np.fromiter((int(x or 0) for x in lines), dtype=np.int32, count=len(lines))
        raise LoadError(f"a triple's line must be an int from 0 to {MAX_LINE} or None",
                        path=row[3] if isinstance(row[3], str) else None, value=row[4])

    def _source_code(self, source: Any) -> int:
        code = self._source_codes.get(source)
        if code is None:
            if not isinstance(source, str):
                raise LoadError("a triple's source must be a file name (str) or None", value=source)
            code = self._num_sources + len(self._new_sources)
            self._new_sources.append(source)
            self._source_codes[source] = code
        return code

    # -- ending --------------------------------------------------------------------------------
    def commit(self) -> int:
        """Deduplicate, write one segment and publish it; returns the number of new triples.

        Raises:
            StoreError: the domain was changed by another writer since this one started, or writing failed
                (the store is then left as it was).
        """
        self._check_open()
        try:
            arrays, lex_order = self._deduplicate()
            names = self._changed_names()
            added = int(arrays["head"].shape[0])
            if added or names:
                self._ids.default_factory = self._rels.default_factory = None  # plain lookups from now on
                self._store._publish(self, arrays, lex_order, names)
            self.added = added
            return added
        finally:
            self._finish("committed" if self.added is not None else "aborted")

    def abort(self) -> None:
        """Drop everything staged; the store is left exactly as before. Idempotent."""
        if self._status == "open":
            self._finish("aborted")

    def _finish(self, status: str) -> None:
        self._status = status
        self._chunks = {key: [] for key in ARRAYS}
        self._store._writer_done(self)


    def _deduplicate(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The staged arrays without duplicates (first occurrence kept, load order kept) and the
        lexicographic edge order of the domain after this commit."""
        arrays = {key: np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
                  for key, chunks in self._chunks.items()}
        self._chunks = {key: [] for key in ARRAYS}
        num_ids, num_rels = len(self._ids), len(self._rels)
        keys = triple_keys(arrays["head"], arrays["rel"], arrays["tail"], num_ids, num_rels)
        order = np.argsort(keys, kind="stable")  # stable: the first of equal keys is the earliest
        keys = keys[order]
        first = np.ones(keys.shape[0], dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        base_order: np.ndarray | None = None
        positions = np.zeros(0, dtype=np.int64)
        if self._base is not None and self._base.num_triples:
            base_order = self._base.lex_order()
            old = self._base.arrays
            existing = triple_keys(old["head"][base_order], old["rel"][base_order], old["tail"][base_order],
                                   num_ids, num_rels)
            positions = np.searchsorted(existing, keys)
            inside = positions < existing.shape[0]
            found = np.zeros_like(first)
            found[inside] = existing[positions[inside]] == keys[inside]
            first &= ~found
            positions = positions[first]
            del existing
        base_count = self._base.num_triples if self._base is not None else 0
        if first.all():  # nothing dropped (the common bulk load): edge ids follow the staged order
            new_edges = order + base_count
        else:
            kept_lex = order[first]  # indexes into the staged arrays, in (head, rel, tail) order
            keep = np.sort(kept_lex)
            arrays = {key: array[keep] for key, array in arrays.items()}
            rank = np.empty(order.shape[0], dtype=np.int64)  # staged index -> position among the kept
            rank[keep] = np.arange(base_count, base_count + keep.shape[0])
            new_edges = rank[kept_lex]
        lex_order = new_edges if base_order is None else np.insert(base_order, positions, new_edges)
        return arrays, lex_order

    def _changed_names(self) -> dict[str, str]:
        """The staged display names that change something, for ids the domain will hold."""
        current = self._base.names if self._base is not None else []
        changed = {}
        for eid, name in self._names.items():
            index = self._ids.get(eid)
            if index is None:
                continue
            if (current[index] if index < self._num_ids else eid) != name:
                changed[eid] = name
        return changed

    def _new_names(self, index: dict[str, int], committed: int) -> list[str]:
        # insertion order is index order: the committed names were copied first, new ones appended
        return list(itertools.islice(index, committed, None))
