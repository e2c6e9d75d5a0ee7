"""Rule mining (AnyBURL/NeuralLP style): path rules of length 1-3 and constant rules, counted exactly.

Confidence is ``support / (groundings + smoothing)``, counted over the whole graph with
``scipy.sparse`` products (see :mod:`kgllm.reasoning.rule_matrices`); body groundings bind distinct
nodes, which also keeps a training edge from ever supporting its own rule. The result is wrapped in
a :class:`~kgllm.reasoning.rules.RuleSet` by :meth:`RuleSet.mine <kgllm.reasoning.rules.RuleSet.mine>`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from kgllm.reasoning.rule_matrices import Atom, RuleMatrices, diag_of_product
from kgllm.reasoning.rules import Rule
from kgllm.stores.snapshot import GraphSnapshot

__all__ = ["mine_rules"]


def mine_rules(snapshot: GraphSnapshot, *, max_length: int = 3, min_support: int = 2,
         min_confidence: float = 0.01, smoothing: float = 5.0, constants: bool = True,
         max_bodies: int = 20_000, beam: int = 5, max_path_rules: int = 300, max_constants: int = 1000,
         progress: bool = False) -> tuple[list[Rule], dict[str, Any]]:
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
        The rules and the mining parameters (with the time taken).
    """
    if not 1 <= max_length <= 3:
        raise ValueError(f"max_length must be 1, 2 or 3, got {max_length!r}")
    started = time.perf_counter()
    m = RuleMatrices(snapshot)
    n = m.n
    atoms = m.atoms()
    params = {"max_length": max_length, "min_support": min_support, "min_confidence": min_confidence,
              "smoothing": smoothing, "constants": constants, "max_bodies": max_bodies, "beam": beam,
              "max_path_rules": max_path_rules, "max_constants": max_constants,
              "mined_on": {"nodes": n, "edges": snapshot.num_edges, "relations": len(m.relations)}}
    if not atoms:  # a graph without relations has no rules (and the stacked matrices below need one)
        return [], {**params, "seconds": round(time.perf_counter() - started, 3)}
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
        # Distinct variables by inclusion-exclusion (see rule_matrices.body_counts), for all last atoms at once.
        diag_next = _all_diagonals(mats, n)
        for a, b in _progress(prefixes, progress, "mining rules (length 3)"):
            ma, mb = mats[a], mats[b]
            full = (ma @ mb) @ every
            d_bc = diag_next[:, b, :] if diag_next is not None else \
                np.column_stack([diag_of_product(mb, mc) for mc in mats])
            ca = ma.tocoo()                                                            # A == Y
            hit_e, hit_c = np.nonzero(d_bc[ca.col])
            t1 = sp.csr_matrix((ca.data[hit_e] * d_bc[ca.col[hit_e], hit_c],
                                (ca.row[hit_e], hit_c * n + ca.col[hit_e])), shape=full.shape)
            t2 = sp.diags(diag_of_product(ma, mb)) @ every                            # B == X
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
    return rules, {**params, "seconds": round(time.perf_counter() - started, 3)}


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


def _mine_constants(m: RuleMatrices, ids: list[str], atoms: list[Atom], min_support: int, min_confidence: float,
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


def _progress(items: Sequence[Any], enabled: bool, desc: str):  # type: ignore[no-untyped-def]
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)
