"""Sparse-matrix algebra of rule bodies over a graph snapshot, shared by rule mining and application.

A relation path ``b1(X,A), b2(A,B), b3(B,Y)`` is a product of per-relation adjacency matrices; its
groundings obey AnyBURL's object identity (the path's variables bind distinct nodes), enforced by
inclusion-exclusion on the product so no explicit path enumeration is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from kgllm.stores.snapshot import GraphSnapshot

__all__ = ["Atom", "RuleMatrices", "diag_of_product", "body_counts"]

Atom = tuple[str, bool]  # (relation, inverse)

# -- graph as sparse matrices -----------------------------------------------------------------------
class RuleMatrices:
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



def diag_of_product(a: sp.csr_matrix, b: sp.csr_matrix) -> np.ndarray:
    """``diag(a @ b)`` without forming the product."""
    return np.asarray(a.multiply(b.T).sum(axis=1)).ravel()


def body_counts(m: RuleMatrices, body: Sequence[Atom], start: sp.csr_matrix | None = None,
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
        t1 = sa.multiply(diag_of_product(b, c)[None, :])          # A == Y
        d_ab = diag_of_product(a, b)
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
