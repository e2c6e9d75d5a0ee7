"""A compact knowledge-graph embedding model: ComplEx with reciprocal relations and N3 regularisation.

The recipe of Lacroix et al. (2018, "Canonical Tensor Decomposition for Knowledge Base Completion"):
every triple also trains its inverse ``(t, r⁻¹, h)``, each query ``(h, r, ?)`` is scored against all
entities at once (1-N cross-entropy), and the weighted nuclear 3-norm keeps embeddings small.
Used beside :mod:`kgllm.reasoning.rules` by the link-prediction benchmarks; scores combine with
rule scores in :func:`combine`.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kgllm.exceptions import ModelError
from kgllm.model_manifest import read_model_manifest

__all__ = ["KGEConfig", "ComplEx", "train_complex", "combine"]

FORMAT = "kgllm-kge-complex"


@dataclass
class KGEConfig:
    """Hyper-parameters (defaults suit graphs of 10²-10⁴ entities on a CPU).

    Lacroix et al.'s recipe (Adagrad lr 0.1, init 1e-3, batch 256) with rank and N3 weight selected
    on a re-split of UMLS / Kinships / Nations ``train.txt`` (``bench/link_prediction_filter.py``),
    never on ``valid.txt``: mean MRR 0.661 at dim 200 / N3 5e-3 / 100 epochs, 0.685 at dim 500 /
    N3 2e-2 / 50 epochs, 0.687 with 100 epochs (twice the time), 0.647 with N3 5e-2; dim 1000 was
    no better on Kinships (0.716 vs 0.719) at three times the cost.
    """

    dim: int = 500
    epochs: int = 50
    batch_size: int = 256
    lr: float = 0.1
    n3: float = 2e-2
    init_scale: float = 1e-3
    seed: int = 0
    threads: int = 1


class ComplEx(nn.Module):
    """ComplEx scores ``Re(<e_h, w_r, conj(e_t)>)``; relations ``r`` and ``r + R`` (reciprocal) are separate.

    Shapes:
        - ``forward(heads, rels)``: ``(b,)``, ``(b,)`` int64 → ``(b, num_entities)`` scores.
    """

    def __init__(self, num_entities: int, num_relations: int, dim: int, init_scale: float = 1e-3) -> None:
        super().__init__()
        self.num_entities, self.num_relations, self.dim = num_entities, num_relations, dim
        self.ent = nn.Embedding(num_entities, 2 * dim)
        self.rel = nn.Embedding(2 * num_relations, 2 * dim)
        with torch.no_grad():
            self.ent.weight.mul_(init_scale)
            self.rel.weight.mul_(init_scale)

    def __repr__(self) -> str:
        return f"ComplEx(entities={self.num_entities}, relations={self.num_relations}, dim={self.dim})"

    def _parts(self, heads: torch.Tensor, rels: torch.Tensor):  # type: ignore[no-untyped-def]
        h, r = self.ent(heads), self.rel(rels)
        d = self.dim
        return h[:, :d], h[:, d:], r[:, :d], r[:, d:]

    def forward(self, heads: torch.Tensor, rels: torch.Tensor) -> torch.Tensor:
        hr, hi, rr, ri = self._parts(heads, rels)
        d = self.dim
        er, ei = self.ent.weight[:, :d], self.ent.weight[:, d:]
        return (hr * rr - hi * ri) @ er.T + (hr * ri + hi * rr) @ ei.T

    def n3(self, heads: torch.Tensor, rels: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """Weighted nuclear 3-norm of the factors touched by a batch."""
        d = self.dim
        total = torch.zeros(())
        for emb in (self.ent(heads), self.rel(rels), self.ent(tails)):
            modulus = torch.sqrt(emb[:, :d] ** 2 + emb[:, d:] ** 2)
            total = total + (modulus ** 3).sum()
        return total / heads.shape[0]

    @torch.no_grad()
    def score(self, heads: np.ndarray, rels: np.ndarray, *, inverse: bool = False) -> np.ndarray:
        """Scores of all entities as tails of ``(head, rel, ?)`` (``inverse``: heads of ``(?, rel, head)``)."""
        rel_ids = torch.as_tensor(np.asarray(rels) + (self.num_relations if inverse else 0), dtype=torch.long)
        return self(torch.as_tensor(np.asarray(heads), dtype=torch.long), rel_ids).numpy()

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, directory: Path, config: KGEConfig, entities: list[str], relations: list[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / "kge.pt")
        manifest = {"format": FORMAT, "config": asdict(config), "entities": entities, "relations": relations}
        (directory / "kge.json").write_text(json.dumps(manifest), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, entities: list[str], relations: list[str]) -> ComplEx:
        """Load weights saved by :meth:`save`; the entity/relation vocabularies must match exactly.

        Raises:
            ModelError: no model, another format or vocabulary, or a damaged or missing file (named).
        """
        manifest = read_model_manifest(directory, "kge.json", key="format", expected=FORMAT, what="KGE model")
        if not (directory / "kge.pt").is_file():
            raise ModelError(f"{directory}: KGE model without its weights (expected kge.json and kge.pt)")
        if manifest.get("entities") != entities or manifest.get("relations") != relations:
            raise ModelError(f"{directory}: the KGE model was trained on another graph "
                             f"({len(manifest.get('entities') or [])} entities / "
                             f"{len(manifest.get('relations') or [])} relations, "
                             f"this one has {len(entities)} / {len(relations)})")
        try:  # a cut or edited file is a damaged model, not a traceback from deep inside torch
            model = cls(len(entities), len(relations), int(manifest["config"]["dim"]))
            model.load_state_dict(torch.load(directory / "kge.pt", weights_only=True))
        except (KeyError, TypeError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            first_line = (str(exc).splitlines() or [""])[0]  # one-line messages (torch's run over several)
            raise ModelError(f"{directory}: damaged KGE model ({type(exc).__name__}: {first_line})") from None
        model.eval()
        return model


def train_complex(triples: np.ndarray, num_entities: int, num_relations: int, config: KGEConfig | None = None,
                  *, progress: bool = False) -> tuple[ComplEx, dict[str, float]]:
    """Train ComplEx on ``(m, 3)`` int (head, relation, tail) triples; returns the model and stats."""
    config = config or KGEConfig()
    torch.manual_seed(config.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, config.threads))
    try:
        model = ComplEx(num_entities, num_relations, config.dim, config.init_scale)
        trip = torch.as_tensor(np.asarray(triples, dtype=np.int64))
        heads = torch.cat([trip[:, 0], trip[:, 2]])
        rels = torch.cat([trip[:, 1], trip[:, 1] + num_relations])
        tails = torch.cat([trip[:, 2], trip[:, 0]])
        opt = torch.optim.Adagrad(model.parameters(), lr=config.lr)
        loss_fn = nn.CrossEntropyLoss()
        started = time.perf_counter()
        epochs = range(config.epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc="training ComplEx", leave=False)
        loss_value = 0.0
        for _ in epochs:
            perm = torch.randperm(heads.shape[0])
            for i in range(0, perm.shape[0], config.batch_size):
                idx = perm[i:i + config.batch_size]
                h, r, t = heads[idx], rels[idx], tails[idx]
                loss = loss_fn(model(h, r), t) + config.n3 * model.n3(h, r, t)
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_value = float(loss.detach())
        model.eval()
        return model, {"seconds": round(time.perf_counter() - started, 2), "final_loss": round(loss_value, 4)}
    finally:
        torch.set_num_threads(previous_threads)


def combine(kge_scores: np.ndarray, rule_scores: np.ndarray, *, rule_weight: float = 1.0) -> np.ndarray:
    """Rule scores added to the KGE's softmax probabilities (per row), so a confident rule can reorder
    the embedding's ranking and the embedding breaks the ties rules leave."""
    z = kge_scores - kge_scores.max(axis=1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    return prob + rule_weight * rule_scores
