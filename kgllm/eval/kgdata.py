"""Knowledge-graph benchmark folders: ``train.txt`` / ``valid.txt`` / ``test.txt`` of tab-separated triples.

Used by the link-prediction and Countries benchmarks; entity and relation indices are fixed over
all splits present so that scores of different splits line up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kgllm.exceptions import BenchmarkError, LoadError
from kgllm.loaders._io import iter_lines
from kgllm.stores.snapshot import GraphSnapshot

__all__ = ["SPLIT_FILES", "split_file", "read_split", "KGDataset", "snapshot_from_triples"]

# ``--split`` names → file names (the test split is kept apart from the development data).
SPLIT_FILES = {"train": "train.txt", "dev": "valid.txt", "valid": "valid.txt", "test": "test.txt"}

Triple = tuple[str, str, str]


def split_file(data: Path, split: str) -> Path:
    """The file of ``split`` in ``data`` (``dev`` and ``valid`` are the same split)."""
    if split not in SPLIT_FILES:
        raise BenchmarkError(f"unknown split {split!r}; known splits: {', '.join(SPLIT_FILES)}")
    return Path(data) / SPLIT_FILES[split]


def read_split(path: Path) -> list[Triple]:
    """Read ``head<TAB>relation<TAB>tail`` lines (blank lines skipped).

    Raises:
        LoadError: a line without exactly three non-empty tab-separated fields (file, line, value).
    """
    triples: list[Triple] = []
    for lineno, line in iter_lines(Path(path)):  # a bad byte is a LoadError naming its line, not a UnicodeDecodeError
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise LoadError(f"expected 3 tab-separated fields (head, relation, tail), got {len(parts)}",
                            path=path, line=lineno, value=line)
        triples.append((parts[0].strip(), parts[1].strip(), parts[2].strip()))
    return triples


def snapshot_from_triples(triples: Iterable[Triple], *, domain: str = "benchmark",
                          entities: Sequence[str] | None = None,
                          relations: Sequence[str] | None = None) -> GraphSnapshot:
    """A :class:`GraphSnapshot` over ``triples`` (fixed ``entities``/``relations`` order when given)."""
    triples = list(triples)
    ents = list(entities) if entities is not None else sorted({x for h, _, t in triples for x in (h, t)})
    rels = list(relations) if relations is not None else sorted({r for _, r, _ in triples})
    eidx = {e: i for i, e in enumerate(ents)}
    ridx = {r: i for i, r in enumerate(rels)}
    arr = np.array([(eidx[h], ridx[r], eidx[t]) for h, r, t in triples], dtype=np.int32).reshape(-1, 3)
    return GraphSnapshot(domain=domain, ids=ents, names=ents, relations=rels,
                         head=arr[:, 0], rel=arr[:, 1], tail=arr[:, 2])


@dataclass
class KGDataset:
    """The splits of one benchmark folder with shared entity / relation indices."""

    name: str
    splits: dict[str, list[Triple]]
    entities: list[str]
    relations: list[str]

    @classmethod
    def load(cls, data: Path, *, name: str, need: Sequence[str] = ("train",)) -> KGDataset:
        """Read every split file present; ``need`` lists the splits that must exist.

        Raises:
            BenchmarkError: the folder or a needed file is missing (the message lists what is expected), or
                a needed ``train.txt`` holds no triples (nothing to learn from).
            LoadError: a malformed line (file, line and value).
        """
        data = Path(data)
        missing = [SPLIT_FILES[s] for s in need if not split_file(data, s).is_file()]
        if not data.is_dir() or missing:
            expected = ", ".join(sorted({SPLIT_FILES[s] for s in need}))
            what = ("not a folder" if data.exists() else "folder not found") if not data.is_dir() else \
                f"missing {', '.join(missing)}"
            raise BenchmarkError(f"{name}: {data}: {what}; expected files: {expected}")
        splits = {}
        for split in ("train", "dev", "test"):
            path = split_file(data, split)
            if path.is_file():
                splits[split] = read_split(path)
        if "train" in need and not splits["train"]:
            raise BenchmarkError(f"{name}: {split_file(data, 'train')} holds no triples; expected "
                                 "head<TAB>relation<TAB>tail lines to learn from")
        ents = sorted({x for ts in splits.values() for h, _, t in ts for x in (h, t)})
        rels = sorted({r for ts in splits.values() for _, r, _ in ts})
        return cls(name=name, splits=splits, entities=ents, relations=rels)

    def simulated(self, *, seed: int = 0) -> KGDataset:
        """``train.txt`` alone re-split into train'/valid'/test' (fixed ``seed``), for measuring the protocol.

        valid' and test' each get the share valid.txt has of train+valid+test (test assumed as large as
        valid, as in the published UMLS / Kinships / Nations splits): 10% each for these graphs. The real
        valid.txt stays as split ``known``: true triples only filtered, never trained on nor scored (the
        withheld test.txt is the one set of true triples no filter here can hold). Entity and relation
        indices stay those of the full folder, so models index identically.

        Raises:
            BenchmarkError: the folder has no valid.txt to take the proportions from, or too few triples
                for valid' and test' to get one each.
        """
        if "dev" not in self.splits:
            raise BenchmarkError(f"{self.name}: simulating a split needs valid.txt for its proportions")
        train, valid = self.splits["train"], self.splits["dev"]
        held = round(len(train) * len(valid) / (len(train) + 2 * len(valid)))
        if held < 1:  # an empty valid' would have no questions (and no proportions to scale by)
            raise BenchmarkError(f"{self.name}: too few triples to simulate a split ({len(train)} in train.txt, "
                                 f"{len(valid)} in valid.txt): valid' and test' would be empty")
        order = np.random.default_rng(seed).permutation(len(train))
        pick = [train[i] for i in order]
        splits = {"train": pick[2 * held:], "dev": pick[:held], "test": pick[held:2 * held], "known": valid}
        return KGDataset(name=self.name, splits=splits, entities=self.entities, relations=self.relations)

    def snapshot(self, *splits: str) -> GraphSnapshot:
        """The graph of the given splits (default: train) over the shared indices."""
        triples = [t for s in (splits or ("train",)) for t in self.splits.get(s, [])]
        return snapshot_from_triples(triples, domain=self.name, entities=self.entities, relations=self.relations)

    def indexed(self, split: str) -> np.ndarray:
        """``(m, 3)`` int64 array of (head, relation, tail) indices of ``split``."""
        eidx = {e: i for i, e in enumerate(self.entities)}
        ridx = {r: i for i, r in enumerate(self.relations)}
        return np.array([(eidx[h], ridx[r], eidx[t]) for h, r, t in self.splits[split]],
                        dtype=np.int64).reshape(-1, 3)
