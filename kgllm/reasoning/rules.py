"""Learned relation-path rules: the rule types, their application, explanation and persistence.

A rule predicts a *head atom* ``r(X, Y)`` (or its inverse) from a *body*:

* **path rules** (length 1-3), e.g. ``locatedin(X,Y) <- neighbor(X,A), locatedin(A,B), locatedin(B,Y)``;
* **constant rules**, e.g. ``term7(X, person3) <- term2(X, person9)`` or ``isa(X, entity) <- treats(X, ·)``.

Confidence is ``support / (groundings + smoothing)``; mining lives in :mod:`kgllm.reasoning.rule_mining`,
the sparse algebra of rule bodies in :mod:`kgllm.reasoning.rule_matrices`. Predictions aggregate the rules that fire by noisy-or, or by max (best rule first, noisy-or to
break ties), and each can be explained by the rule and one concrete path of real edges.

Modules relate as::

    RuleSet.mine(snapshot)  →  RuleSet.save(dir) / RuleSet.load(dir)
    RuleSet.score(snapshot, heads, relation)   batch scores (evaluation)
    RuleSet.infer(snapshot, head, relation)    ranked tails with an Inference each (for ``ask``)
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from kgllm.exceptions import LoadError, ModelError
from kgllm.loaders._io import iter_lines
from kgllm.model_manifest import read_model_manifest
from kgllm.reasoning.rule_matrices import Atom, RuleMatrices, body_counts
from kgllm.stores.snapshot import GraphSnapshot
from kgllm.types import Hop, ReasoningPath

__all__ = ["Atom", "Rule", "Inference", "RuleSet", "MANIFEST", "FORMAT"]

MANIFEST = "manifest.json"
FORMAT = "kgllm-rules"
_VARS = "XABY"
# Up to this many nodes, rule bodies are applied as cached dense matrices (the benchmarks' graphs: 14-271 nodes).
# Each costs n^3 to build and 8 n^2 bytes to keep: at 2000 nodes a length-3 body took 0.7 s and 32 MB, so the
# first `ask` of an expert with 300 rules ran minutes and held ~10 GB; the sparse path takes ~0.01 s a body.
_DENSE_NODES = 500
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
        self._cache: tuple[GraphSnapshot, RuleMatrices] | None = None

    def __len__(self) -> int:
        return len(self.rules)

    def for_head(self, relation: str, inverse: bool = False) -> list[Rule]:
        return list(self._by_head.get((relation, inverse), []))

    @classmethod
    def mine(cls, snapshot: GraphSnapshot, *, progress: bool = False, **options: Any) -> RuleSet:
        """Learn rules from every edge of ``snapshot``; ``options`` are those of
        :func:`kgllm.reasoning.rule_mining.mine_rules` (max_length, min_support, min_confidence, smoothing,
        constants, max_bodies, beam, max_path_rules, max_constants)."""
        from kgllm.reasoning.rule_mining import mine_rules  # lazy: rule_mining imports Rule from here

        rules, params = mine_rules(snapshot, progress=progress, **options)
        return cls(rules, params)

    # -- application -----------------------------------------------------------------------------
    def _matrices(self, snapshot: GraphSnapshot) -> RuleMatrices:
        # keyed by the snapshot itself: an id() outlives its object, and a new snapshot at the freed address
        # got the old graph's matrices (scores of another graph, or an index error)
        if self._cache is None or self._cache[0] is not snapshot:
            self._cache = (snapshot, RuleMatrices(snapshot))
        return self._cache[1]

    def score(self, snapshot: GraphSnapshot, heads: Sequence[int] | np.ndarray, relation: str, *,
              inverse: bool = False, aggregation: Aggregation = "max", max_rules: int | None = None) -> np.ndarray:
        """Scores of every node as the tail of ``relation(head, ?)`` for each head (``(len(heads), n)``).

        ``aggregation="noisy_or"`` gives ``1 - prod(1 - conf)`` over the rules that fire; ``"noisy_or_paths"``
        counts every grounding path of a rule as one piece of evidence; ``"max"`` is the best rule's
        confidence plus a tiny noisy-or term that orders candidates tied on their best rule.
        """
        best, noisy = self._evidence(snapshot, heads, relation, inverse=inverse, aggregation=aggregation,
                                     max_rules=max_rules)
        return noisy if aggregation == "noisy_or" else best + 1e-3 * noisy

    def _evidence(self, snapshot: GraphSnapshot, heads: Sequence[int] | np.ndarray, relation: str, *,
                  inverse: bool, aggregation: Aggregation, max_rules: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The best firing rule's confidence and the noisy-or of all firing rules, per (head, node)."""
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
            fired = body_counts(m, rule.body, start, heads, binary=binary).tocoo()
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
                conf.append(rule.confidence)
            if feat:
                shape = (len(atoms) * (n + 1), n)
                # clipped for the logarithm only: ``best`` keeps a confidence of 1 (min_score=1 in infer)
                weights = sp.csr_matrix((np.log1p(-np.minimum(conf, 0.999999)), (feat, tails)), shape=shape)
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
        return best, -np.expm1(log_miss)

    def infer(self, snapshot: GraphSnapshot, head_index: int, relation: str, *, inverse: bool = False,
              top_k: int = 10, min_score: float = 0.0,
              aggregation: Aggregation = "max") -> list[tuple[int, float, Inference]]:
        """Tails predicted for ``relation(head, ?)``, best first, each with the rule and a concrete path.

        Existing edges are included when rules re-derive them; callers wanting only *missing* edges
        drop those already in the graph. A tail is kept when rules derive it and its evidence (the best
        rule's confidence; with ``"noisy_or"`` the noisy-or) is at least ``min_score``.
        """
        best, noisy = self._evidence(snapshot, [head_index], relation, inverse=inverse, aggregation=aggregation,
                                     max_rules=None)
        scores = noisy[0] if aggregation == "noisy_or" else best[0] + 1e-3 * noisy[0]
        # the threshold applies to the evidence alone: the tie-breaking term of "max" must not lift a
        # rule of confidence 0.4996 over min_score 0.5
        evidence = noisy[0] if aggregation == "noisy_or" else best[0]
        ranked = np.lexsort((snapshot.name_rank, -np.round(scores, 9)))  # ties: by name, then id
        keep = (evidence > 0) & (evidence >= min_score)
        order = [int(i) for i in ranked[keep[ranked]][:top_k]]
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
            ModelError: the directory holds no rule set, another format, a damaged manifest, or a missing,
                truncated or damaged rule file (naming the file and line).
        """
        directory = Path(directory)
        manifest = read_model_manifest(directory, MANIFEST, key="format", expected=FORMAT, what="rule set")
        rules_path = directory / "rules.jsonl"
        if not rules_path.is_file():
            raise ModelError(f"{directory}: rule set without rules.jsonl (expected {MANIFEST} and rules.jsonl)")
        rules = []
        try:
            for number, line in iter_lines(rules_path):
                if line.strip():
                    try:  # a cut or edited line is a damaged model, not a crash
                        rules.append(Rule.from_dict(json.loads(line)))
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        raise ModelError(f"{rules_path} line {number}: damaged rule "
                                         f"({type(exc).__name__}: {exc}): {line.strip()[:200]!r}") from None
        except LoadError as exc:  # not UTF-8
            raise ModelError(str(exc)) from None
        if len(rules) != manifest.get("num_rules"):
            raise ModelError(f"{directory}: manifest lists {manifest.get('num_rules')} rules, file has {len(rules)}")
        return cls(rules, manifest.get("params", {}))


def _step(snapshot: GraphSnapshot, node: int, atom: Atom) -> list[tuple[int, int]]:
    """(edge index, next node) for one atom from ``node``, next nodes in (name, id) order (the same
    grounding on every backend)."""
    rel = snapshot.relation_index(atom[0])
    if rel is None:
        return []
    if atom[1]:
        edges = snapshot.in_edges(node)
        found = [(int(e), int(snapshot.head[e])) for e in edges if snapshot.rel[e] == rel]
    else:
        edges = snapshot.out_edges(node)
        found = [(int(e), int(snapshot.tail[e])) for e in edges if snapshot.rel[e] == rel]
    rank = snapshot.name_rank
    return sorted(found, key=lambda pair: int(rank[pair[1]]))


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
            # a self-loop grounds nothing: scoring drops them (RuleMatrices), and an explanation must name
            # a rule that fired
            if other != x and (rule.const is None or snapshot.ids[other] == rule.const):
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
