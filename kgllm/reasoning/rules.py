"""Learned relation-path rules: mining (AnyBURL/NeuralLP style), application and explanation.

A rule predicts a *head atom* ``r(X, Y)`` (or its inverse) from a *body*:

* **path rules** (length 1-3), e.g. ``locatedin(X,Y) <- neighbor(X,A), locatedin(A,B), locatedin(B,Y)``;
* **constant rules**, e.g. ``term7(X, person3) <- term2(X, person9)`` or ``isa(X, entity) <- treats(X, ·)``.

Confidence is ``support / (groundings + smoothing)``, counted exactly over the whole graph with
``scipy.sparse`` products. Body groundings obey AnyBURL's object identity (the variables of a path
bind distinct nodes), which also keeps a training edge from ever supporting its own rule.
Predictions aggregate the rules that fire by noisy-or, or by max (best rule first, noisy-or to
break ties), and each can be explained by the rule and one concrete path of real edges.

Modules relate as::

    RuleSet.mine(snapshot)  →  RuleSet.save(dir) / RuleSet.load(dir)
    RuleSet.score(snapshot, heads, relation)   batch scores (evaluation)
    RuleSet.infer(snapshot, head, relation)    ranked tails with an Inference each (for ``ask``)
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from kgllm.exceptions import ModelError
from kgllm.stores.snapshot import GraphSnapshot
from kgllm.types import Hop, ReasoningPath

__all__ = ["Atom", "Rule", "Inference", "RuleSet", "MANIFEST", "FORMAT"]

Atom = tuple[str, bool]  # (relation, inverse)
MANIFEST = "manifest.json"
FORMAT = "kgllm-rules"
_VARS = "XABY"
_DENSE_NODES = 2000  # up to this many nodes, rule bodies are applied as cached dense matrices
Aggregation = Literal["max", "noisy_or", "noisy_or_paths"]


@dataclass(frozen=True)
class Rule:
    """One weighted rule. ``tail``/``const`` are set for constant rules only.

    Attributes:
        head: the predicted atom (relation, inverse).
        body: path atoms for path rules; one atom for constant rules.
        confidence: ``support / (groundings + smoothing)``.
        support: body groundings that are true head facts in the training graph.
        groundings: all body groundings.
        tail: constant rules: the predicted tail entity id.
        const: constant rules: the body's constant (entity id), None for "any".
    """

    head: Atom
    body: tuple[Atom, ...]
    confidence: float
    support: int
    groundings: int
    tail: str | None = None
    const: str | None = None

    @property
    def kind(self) -> str:
        return "path" if self.tail is None else "const"

    def text(self) -> str:
        """Human-readable form, e.g. ``locatedin(X,Y) <- neighbor(X,A), locatedin(A,Y)``."""
        def atom(a: Atom, x: str, y: str) -> str:
            rel, inv = a
            return f"{rel}({y},{x})" if inv else f"{rel}({x},{y})"

        if self.tail is not None:
            other = self.const if self.const is not None else "_"
            return f"{atom(self.head, 'X', self.tail)} <- {atom(self.body[0], 'X', other)}"
        names = ["X", *_VARS[1:len(self.body)], "Y"]
        body = ", ".join(atom(a, names[i], names[i + 1]) for i, a in enumerate(self.body))
        return f"{atom(self.head, 'X', 'Y')} <- {body}"

    def to_dict(self) -> dict[str, Any]:
        return {"head": list(self.head), "body": [list(a) for a in self.body], "confidence": self.confidence,
                "support": self.support, "groundings": self.groundings, "tail": self.tail, "const": self.const}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        return cls(head=(d["head"][0], bool(d["head"][1])), body=tuple((a[0], bool(a[1])) for a in d["body"]),
                   confidence=float(d["confidence"]), support=int(d["support"]), groundings=int(d["groundings"]),
                   tail=d.get("tail"), const=d.get("const"))


@dataclass
class Inference:
    """Why a tail was predicted: the best rule that fired and one concrete path of real edges."""

    rule: Rule
    path: ReasoningPath

    def hop(self, head: str, relation: str, tail: str, *, domain: str | None = None,
            head_name: str | None = None, tail_name: str | None = None, inverse: bool = False) -> Hop:
        """The inferred edge as a :class:`~kgllm.types.Hop` whose ``rule`` names the rule and the path."""
        return Hop(head=head, relation=relation, tail=tail, head_name=head_name, tail_name=tail_name,
                   domain=domain, inverse=inverse,
                   rule=f"{self.rule.text()} [conf {self.rule.confidence:.3f}] via {self.path.text()}")


# -- graph as sparse matrices -----------------------------------------------------------------------
class _Matrices:
    """Per-relation binary adjacency (self-loops dropped: a path never stays in place)."""

    def __init__(self, snapshot: GraphSnapshot) -> None:
        self.n = snapshot.num_nodes
        self.relations = list(snapshot.relations)
        keep = snapshot.head != snapshot.tail
        h, r, t = snapshot.head[keep], snapshot.rel[keep], snapshot.tail[keep]
        self.fwd: dict[str, sp.csr_matrix] = {}
        for i, name in enumerate(self.relations):
            sel = r == i
            m = sp.csr_matrix((np.ones(int(sel.sum())), (h[sel], t[sel])), shape=(self.n, self.n))
            m.data[:] = 1.0  # duplicates collapse to one edge
            self.fwd[name] = m
        self.bwd = {name: m.T.tocsr() for name, m in self.fwd.items()}
        self.bodies: dict[tuple[tuple[Atom, ...], bool], np.ndarray] = {}
        self._features: sp.csr_matrix | None = None
        self._dense: dict[Atom, np.ndarray] = {}

    def dense_body(self, body: tuple[Atom, ...], binary: bool) -> np.ndarray:
        """Distinct-variable grounding counts of ``body`` for all (X, Y) as a dense array (cached)."""
        key = (body, binary)
        if key not in self.bodies:
            mats = []
            for a in body:
                if a not in self._dense:
                    self._dense[a] = self.atom(a).toarray()
                mats.append(self._dense[a])
            if len(mats) == 1:
                out = mats[0].copy()
            elif len(mats) == 2:
                out = mats[0] @ mats[1]
            else:
                first, second, third = mats
                out = first @ second @ third - first * np.einsum("uv,vu->u", second, third)[None, :] \
                    - np.einsum("xv,vx->x", first, second)[:, None] * third + first * second.T * third
            np.fill_diagonal(out, 0.0)
            out[out < 0.5] = 0.0
            self.bodies[key] = (out > 0).astype(np.float64) if binary else out
        return self.bodies[key]

    def features(self) -> sp.csr_matrix:
        """Node -> constant-rule features: ``(atom, d)`` at ``atom * n + d``, ``(atom, any)`` after them."""
        if self._features is None:
            mats = [self.atom(a) for a in self.atoms()]
            anyf = np.column_stack([np.diff(x.indptr) > 0 for x in mats]).astype(np.float64)
            self._features = sp.hstack([*mats, sp.csr_matrix(anyf)]).tocsr()
        return self._features

    def atom(self, a: Atom) -> sp.csr_matrix:
        rel, inv = a
        if rel not in self.fwd:
            return sp.csr_matrix((self.n, self.n))
        return self.bwd[rel] if inv else self.fwd[rel]

    def atoms(self) -> list[Atom]:
        return [(r, inv) for r in self.relations for inv in (False, True)]


def _top_per_group(group: np.ndarray, conf: np.ndarray, support: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` best rows (confidence, then support) of each group."""
    if not group.size:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-support, -conf, group))
    g = group[order]
    starts = np.r_[0, np.nonzero(np.diff(g))[0] + 1]
    rank = np.arange(g.size) - np.repeat(starts, np.diff(np.r_[starts, g.size]))
    return order[rank < limit]


def _all_diagonals(mats: list[sp.csr_matrix], n: int) -> np.ndarray | None:
    """``out[u, b, c] = diag(mats[b] @ mats[c])[u]`` for every atom pair, dense (None when too large)."""
    k = len(mats)
    if k * n * n > 20_000_000:
        return None
    dense = np.stack([m.toarray() for m in mats])                  # (k, n, n)
    out = np.empty((n, k, k))
    transposed = dense.transpose(0, 2, 1)
    for b in range(k):
        out[:, b, :] = (dense[b][None, :, :] * transposed).sum(axis=2).T
    return out


def _diag_of_product(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    """``diag(a @ b)`` without forming the product."""
    return np.asarray(a.multiply(b.T).sum(axis=1)).ravel()


def _body_counts(m: _Matrices, body: Sequence[Atom], start: sp.csr_matrix | None = None,
                 starts: np.ndarray | None = None, *, binary: bool = True) -> sp.csr_matrix:
    """Counts of distinct-variable body groundings from each start row (all nodes when ``start`` is None).

    Length 3 subtracts the paths that revisit a node (``A == Y`` or ``B == X``) by inclusion-exclusion;
    shorter bodies cannot revisit once self-loops are gone. The diagonal (``Y == X``) is removed.
    """
    mats = [m.atom(a) for a in body]

    def left(x: sp.csr_matrix) -> sp.csr_matrix:
        return x if start is None else (start @ x).tocsr()

    if len(mats) == 1:
        out = left(mats[0])
    elif len(mats) == 2:
        out = left(mats[0]) @ mats[1]
    elif len(mats) == 3:
        a, b, c = mats
        sa = left(a)
        full = (sa @ b) @ c
        t1 = sa.multiply(_diag_of_product(b, c)[None, :])          # A == Y
        d_ab = _diag_of_product(a, b)
        t2 = left(sp.diags(d_ab) @ c)                               # B == X
        t3 = left(a.multiply(b.T).multiply(c))                      # both
        out = full - t1 - t2 + t3
    else:
        raise ValueError(f"rule bodies have 1-3 atoms, got {len(body)}")
    coo = sp.coo_matrix(out)
    rows = np.arange(coo.shape[0]) if starts is None else np.asarray(starts)
    keep = (coo.data > 0.5) & (coo.col != rows[coo.row])
    data = np.ones(int(keep.sum())) if binary else np.rint(coo.data[keep])
    return sp.csr_matrix((data, (coo.row[keep], coo.col[keep])), shape=coo.shape)


# -- the rule set -----------------------------------------------------------------------------------
@dataclass
class RuleSet:
    """Rules grouped by head atom, with the mining parameters that produced them."""

    rules: list[Rule]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rules.sort(key=lambda r: (-r.confidence, -r.support))
        self._by_head: dict[Atom, list[Rule]] = defaultdict(list)
        for rule in self.rules:
            self._by_head[rule.head].append(rule)
        self._cache: tuple[int, _Matrices] | None = None

    def __len__(self) -> int:
        return len(self.rules)

    def for_head(self, relation: str, inverse: bool = False) -> list[Rule]:
        return list(self._by_head.get((relation, inverse), []))

    # -- mining ----------------------------------------------------------------------------------
    @classmethod
    def mine(cls, snapshot: GraphSnapshot, *, max_length: int = 3, min_support: int = 2,
             min_confidence: float = 0.01, smoothing: float = 5.0, constants: bool = True,
             max_bodies: int = 20_000, beam: int = 5, max_path_rules: int = 300, max_constants: int = 1000,
             progress: bool = False) -> RuleSet:
        """Learn rules from every edge of ``snapshot`` (heads in both directions).

        Args:
            snapshot: the training graph.
            max_length: longest path body (1-3).
            min_support: least number of true head facts a rule must predict.
            min_confidence: rules below this confidence are dropped.
            smoothing: added to the groundings in the confidence denominator (penalises rare bodies).
            constants: also mine constant rules ``r(X,c) <- b(X,d)`` / ``r(X,c) <- b(X,_)``.
            max_bodies: length-3 bodies are enumerated exhaustively up to this many; beyond it only
                extensions of each head's ``beam`` best length-2 bodies are tried.
            beam: see ``max_bodies``.
            max_path_rules: path rules kept per head atom (the most confident).
            max_constants: constant rules kept per head atom (the most confident).
            progress: show a progress bar.

        Returns:
            The mined :class:`RuleSet`.
        """
        if not 1 <= max_length <= 3:
            raise ValueError(f"max_length must be 1, 2 or 3, got {max_length!r}")
        started = time.perf_counter()
        m = _Matrices(snapshot)
        n = m.n
        atoms = m.atoms()
        # Pair (x, y) -> head atoms holding between them: one sparse lookup table for all heads.
        keys, cols = [], []
        for j, a in enumerate(atoms):
            coo = m.atom(a).tocoo()
            keys.append(coo.row.astype(np.int64) * n + coo.col)
            cols.append(np.full(coo.nnz, j))
        table = sp.csr_matrix((np.ones(sum(k.size for k in keys)), (np.concatenate(keys), np.concatenate(cols))),
                              shape=(n * n, len(atoms)))
        table.data[:] = 1.0
        k = len(atoms)
        mats = [m.atom(a) for a in atoms]
        every = sp.hstack(mats).tocsr()            # (n, k*n): block c holds atom c's adjacency
        # Candidates are kept as arrays (dense small graphs yield millions); Rule objects come at the end.
        bodies: list[tuple[int, ...]] = []
        found_parts: list[np.ndarray] = []         # rows of (body id, head atom, support, groundings)

        def evaluate(prefix: tuple[int, ...], counts: sp.spmatrix) -> None:
            """Candidates for the bodies ``prefix + (c,)`` of every atom c, from their grounding counts."""
            coo = sp.coo_matrix(counts)
            ys = coo.col % n
            keep = (coo.data > 0.5) & (ys != coo.row)              # real groundings, Y != X
            rows, ys, block = coo.row[keep], ys[keep], coo.col[keep] // n
            if not rows.size:
                return
            totals = np.bincount(block, minlength=k)
            hit = sp.csr_matrix((np.ones(rows.size), (block, rows.astype(np.int64) * n + ys)), shape=(k, n * n))
            support = (hit @ table).toarray()                      # (body c, head atom)
            cs, js = np.nonzero(support >= min_support)
            if not prefix:
                cs, js = cs[cs != js], js[cs != js]                # r(X,Y) <- r(X,Y)
            if not cs.size:
                return
            base = len(bodies)
            bodies.extend((*prefix, c) for c in range(k))
            conf = support[cs, js] / (totals[cs] + smoothing)
            good = conf >= min_confidence if len(prefix) != 1 else conf >= 0  # length 2 feeds the beam
            cs, js = cs[good], js[good]
            found_parts.append(np.column_stack([base + cs, js, support[cs, js], totals[cs],
                                                np.full(cs.size, len(prefix) + 1)]).astype(np.int64))

        def best_two(limit: int) -> list[tuple[int, int]]:
            """Each head's ``limit`` most confident length-2 bodies (prefixes for length 3)."""
            found = np.concatenate(found_parts) if found_parts else np.zeros((0, 5), dtype=np.int64)
            found = found[found[:, 4] == 2]
            top = _top_per_group(found[:, 1], found[:, 2] / (found[:, 3] + smoothing), found[:, 2], limit)
            return sorted({(bodies[int(q)][0], bodies[int(q)][1]) for q in found[top, 0]})

        evaluate((), every)
        if max_length >= 2:
            for a in _progress(range(k), progress, "mining rules (length 2)"):
                evaluate((a,), mats[a] @ every)
        if max_length >= 3:
            prefixes = [(a, b) for a in range(k) for b in range(k)] if k ** 3 <= max_bodies else best_two(beam)
            # Distinct variables by inclusion-exclusion (see _body_counts), for all last atoms at once.
            diag_next = _all_diagonals(mats, n)
            for a, b in _progress(prefixes, progress, "mining rules (length 3)"):
                ma, mb = mats[a], mats[b]
                full = (ma @ mb) @ every
                d_bc = diag_next[:, b, :] if diag_next is not None else \
                    np.column_stack([_diag_of_product(mb, mc) for mc in mats])
                ca = ma.tocoo()                                                            # A == Y
                hit_e, hit_c = np.nonzero(d_bc[ca.col])
                t1 = sp.csr_matrix((ca.data[hit_e] * d_bc[ca.col[hit_e], hit_c],
                                    (ca.row[hit_e], hit_c * n + ca.col[hit_e])), shape=full.shape)
                t2 = sp.diags(_diag_of_product(ma, mb)) @ every                            # B == X
                both = ma.multiply(mb.T).tocoo()                                           # both
                hits = table[both.row.astype(np.int64) * n + both.col].tocoo()
                t3 = sp.csr_matrix((both.data[hits.row], (both.row[hits.row], hits.col * n + both.col[hits.row])),
                                   shape=full.shape)
                evaluate((a, b), full - t1 - t2 + t3)
        found = np.concatenate(found_parts) if found_parts else np.zeros((0, 5), dtype=np.int64)
        conf = found[:, 2] / (found[:, 3] + smoothing)
        ok = np.nonzero(conf >= min_confidence)[0]
        top = ok[_top_per_group(found[ok, 1], conf[ok], found[ok, 2], max_path_rules)]
        rules = [Rule(head=atoms[int(found[q, 1])], body=tuple(atoms[c] for c in bodies[int(found[q, 0])]),
                      confidence=float(conf[q]), support=int(found[q, 2]), groundings=int(found[q, 3]))
                 for q in top]
        if constants:
            rules += _mine_constants(m, snapshot.ids, atoms, min_support, min_confidence, smoothing, max_constants)
        params = {"max_length": max_length, "min_support": min_support, "min_confidence": min_confidence,
                  "smoothing": smoothing, "constants": constants, "max_bodies": max_bodies, "beam": beam,
                  "max_path_rules": max_path_rules, "max_constants": max_constants,
                  "mined_on": {"nodes": n, "edges": snapshot.num_edges, "relations": len(m.relations)},
                  "seconds": round(time.perf_counter() - started, 3)}
        return cls(rules, params)

    # -- application -----------------------------------------------------------------------------
    def _matrices(self, snapshot: GraphSnapshot) -> _Matrices:
        if self._cache is None or self._cache[0] != id(snapshot):
            self._cache = (id(snapshot), _Matrices(snapshot))
        return self._cache[1]

    def score(self, snapshot: GraphSnapshot, heads: Sequence[int] | np.ndarray, relation: str, *,
              inverse: bool = False, aggregation: Aggregation = "max", max_rules: int | None = None) -> np.ndarray:
        """Scores of every node as the tail of ``relation(head, ?)`` for each head (``(len(heads), n)``).

        ``aggregation="noisy_or"`` gives ``1 - prod(1 - conf)`` over the rules that fire; ``"noisy_or_paths"``
        counts every grounding path of a rule as one piece of evidence; ``"max"`` is the best rule's
        confidence plus a tiny noisy-or term that orders candidates tied on their best rule.
        """
        m = self._matrices(snapshot)
        heads = np.asarray(heads, dtype=np.int64)
        b, n = heads.size, m.n
        start = sp.csr_matrix((np.ones(b), (np.arange(b), heads)), shape=(b, n))
        log_miss = np.zeros((b, n))
        best = np.zeros((b, n))
        index = snapshot.index
        chosen = self.for_head(relation, inverse)[:max_rules]
        for rule in (r for r in chosen if r.tail is None):
            binary = aggregation != "noisy_or_paths"
            log_conf = np.log1p(-min(rule.confidence, 0.999999))
            if n <= _DENSE_NODES:  # small graph: each body's dense matrix once, rows picked per query
                sub = m.dense_body(rule.body, binary)[heads]
                log_miss += sub * log_conf
                np.maximum(best, (sub > 0) * rule.confidence, out=best)
                continue
            fired = _body_counts(m, rule.body, start, heads, binary=binary).tocoo()
            if fired.nnz:
                log_miss[fired.row, fired.col] += fired.data * log_conf
                np.maximum.at(best, (fired.row, fired.col), rule.confidence)
        consts = [r for r in chosen if r.tail is not None]
        if consts:
            # Constant rules as one (feature -> tail) matrix: feature = (body atom, constant | any).
            atoms = {a: i for i, a in enumerate(m.atoms())}
            feat, tails, conf = [], [], []
            for rule in consts:
                t, a = index.get(rule.tail or ""), atoms.get(rule.body[0])
                c = index.get(rule.const) if rule.const is not None else -1
                if t is None or a is None or c is None:
                    continue
                feat.append(a * n + c if c >= 0 else len(atoms) * n + a)
                tails.append(t)
                conf.append(min(rule.confidence, 0.999999))
            if feat:
                shape = (len(atoms) * (n + 1), n)
                weights = sp.csr_matrix((np.log1p(-np.array(conf)), (feat, tails)), shape=shape)
                confs = sp.csr_matrix((np.array(conf), (feat, tails)), shape=shape)
                active = m.features()[heads]
                log_miss += (active @ weights).toarray()
                table = confs.toarray() if shape[0] * n <= 20_000_000 else confs
                for i in range(b):
                    idx = active.indices[active.indptr[i]:active.indptr[i + 1]]
                    if idx.size:
                        row = table[idx].max(axis=0)
                        np.maximum(best[i], row if isinstance(row, np.ndarray) else row.toarray().ravel(),
                                   out=best[i])
        log_miss[np.arange(b), heads] = 0.0  # a rule never predicts its own head (Y != X)
        best[np.arange(b), heads] = 0.0
        noisy = -np.expm1(log_miss)
        return noisy if aggregation == "noisy_or" else best + 1e-3 * noisy

    def infer(self, snapshot: GraphSnapshot, head_index: int, relation: str, *, inverse: bool = False,
              top_k: int = 10, min_score: float = 0.0,
              aggregation: Aggregation = "max") -> list[tuple[int, float, Inference]]:
        """Tails predicted for ``relation(head, ?)``, best first, each with the rule and a concrete path.

        Existing edges are included when rules re-derive them; callers wanting only *missing* edges
        drop those already in the graph.
        """
        scores = self.score(snapshot, [head_index], relation, inverse=inverse, aggregation=aggregation)[0]
        order = [int(i) for i in np.argsort(-scores, kind="stable")[:top_k] if scores[i] > min_score]
        out: list[tuple[int, float, Inference]] = []
        for tail in order:
            explained = self.explain(snapshot, head_index, tail, relation, inverse=inverse)
            if explained is not None:
                out.append((tail, float(scores[tail]), explained))
        return out

    def explain(self, snapshot: GraphSnapshot, head_index: int, tail_index: int, relation: str, *,
                inverse: bool = False) -> Inference | None:
        """The most confident rule that derives ``relation(head, tail)`` and one grounding of its body."""
        for rule in self.for_head(relation, inverse):
            path = _ground(snapshot, rule, head_index, tail_index)
            if path is not None:
                return Inference(rule=rule, path=ReasoningPath(hops=path, score=rule.confidence, method="rule"))
        return None

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``rules.jsonl`` and ``manifest.json`` (format, version, counts, mining parameters)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "rules.jsonl", "w", encoding="utf-8") as fh:
            for rule in self.rules:
                fh.write(json.dumps(rule.to_dict()) + "\n")
        manifest = {"format": FORMAT, "version": 1, "kgllm_version": _version(), "num_rules": len(self.rules),
                    "heads": sorted({f"{'~' if inv else ''}{rel}" for rel, inv in self._by_head}),
                    "params": self.params}
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> RuleSet:
        """Read a rule set written by :meth:`save`.

        Raises:
            ModelError: the directory holds no rule set, another format, or a truncated rule file.
        """
        directory = Path(directory)
        path = directory / MANIFEST
        if not path.is_file():
            raise ModelError(f"{directory}: not a rule set (expected {MANIFEST} and rules.jsonl)")
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ModelError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
        rules = []
        with open(directory / "rules.jsonl", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    rules.append(Rule.from_dict(json.loads(line)))
        if len(rules) != manifest.get("num_rules"):
            raise ModelError(f"{directory}: manifest lists {manifest.get('num_rules')} rules, file has {len(rules)}")
        return cls(rules, manifest.get("params", {}))


def _mine_constants(m: _Matrices, ids: list[str], atoms: list[Atom], min_support: int, min_confidence: float,
                    smoothing: float, per_head: int) -> list[Rule]:
    """``r(X,c) <- b(X,d)`` and ``r(X,c) <- b(X,_)``: one sparse product per head atom; the ``per_head``
    most confident of each head are kept (constant rules are many and individually weak)."""
    n = m.n
    mats = [m.atom(a) for a in atoms]
    feats = sp.hstack([sp.hstack(mats), sp.csr_matrix(np.column_stack(
        [np.diff(x.indptr) > 0 for x in mats]).astype(np.float64))]).tocsc()   # x -> (atom, d) | (atom, any)
    nconst = len(atoms) * n
    counts = np.asarray(feats.sum(axis=0)).ravel()
    feats_t = feats.T.tocsr()
    out: list[Rule] = []
    for j, head in enumerate(atoms):
        support = (feats_t @ mats[j]).tocoo()                    # (feature, tail c) -> support
        f, c, s = support.row, support.col, support.data
        conf = s / (counts[f] + smoothing)
        is_any = f >= nconst
        body = np.where(is_any, f - nconst, f // n)
        trivial = (body == j) & (is_any | (f % n == c))          # the head edge would satisfy its own body
        keep = np.nonzero((s >= min_support) & (conf >= min_confidence) & ~trivial)[0]
        keep = keep[np.argsort(-conf[keep], kind="stable")[:per_head]]
        for q in keep:
            const = None if is_any[q] else ids[int(f[q] % n)]
            out.append(Rule(head=head, body=(atoms[int(body[q])],), confidence=float(conf[q]), support=int(s[q]),
                            groundings=int(counts[f[q]]), tail=ids[int(c[q])], const=const))
    return out


def _step(snapshot: GraphSnapshot, node: int, atom: Atom) -> list[tuple[int, int]]:
    """(edge index, next node) for one atom from ``node``."""
    rel = snapshot.relation_index(atom[0])
    if rel is None:
        return []
    if atom[1]:
        edges = snapshot.in_edges(node)
        return [(int(e), int(snapshot.head[e])) for e in edges if snapshot.rel[e] == rel]
    edges = snapshot.out_edges(node)
    return [(int(e), int(snapshot.tail[e])) for e in edges if snapshot.rel[e] == rel]


def _hop(snapshot: GraphSnapshot, edge: int, atom: Atom) -> Hop:
    """The edge as a hop in walking order (an inverse atom walks the stored edge backwards)."""
    a, b = int(snapshot.head[edge]), int(snapshot.tail[edge])
    if atom[1]:
        a, b = b, a
    return Hop(head=snapshot.ids[a], relation=atom[0], tail=snapshot.ids[b], head_name=snapshot.names[a],
               tail_name=snapshot.names[b], domain=snapshot.domain, inverse=atom[1])


def _ground(snapshot: GraphSnapshot, rule: Rule, x: int, y: int) -> list[Hop] | None:
    """One grounding of ``rule``'s body from ``x`` to ``y`` (distinct variables), or None."""
    if x == y:
        return None
    if rule.tail is not None:
        if snapshot.ids[y] != rule.tail:
            return None
        for edge, other in _step(snapshot, x, rule.body[0]):
            if rule.const is None or snapshot.ids[other] == rule.const:
                return [_hop(snapshot, edge, rule.body[0])]
        return None

    def walk(node: int, depth: int, seen: tuple[int, ...]) -> list[Hop] | None:
        atom = rule.body[depth]
        last = depth == len(rule.body) - 1
        for edge, nxt in _step(snapshot, node, atom):
            if last:
                if nxt == y:
                    return [_hop(snapshot, edge, atom)]
                continue
            if nxt in seen or nxt == y:
                continue
            rest = walk(nxt, depth + 1, (*seen, nxt))
            if rest is not None:
                return [_hop(snapshot, edge, atom), *rest]
        return None

    return walk(x, 0, (x,))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("kgllm")
    except Exception:  # noqa: BLE001 - not installed: a source checkout
        return "0+unknown"


def _progress(items: Sequence[Any], enabled: bool, desc: str):  # type: ignore[no-untyped-def]
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)
