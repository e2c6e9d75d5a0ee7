"""Does a path GNN beat rules + ComplEx on UMLS / Kinships / Nations? A probe on the simulated split.

An NBFNet-style model (Zhu et al. 2021, "Neural Bellman-Ford Networks"): for a query ``(h, r, ?)`` the
head's node starts from the query relation's vector (the boundary condition), each layer passes DistMult
messages ``x_u * w_rel`` along every edge and its inverse, sums them with the boundary, and updates with
a linear layer, layer norm, ReLU and a residual; an MLP scores every node from its final state and the
query vector. Training is 1-N cross-entropy over all entities with the other true answers masked, and the
batch's own triples are removed from the graph (otherwise the model learns to read the edge it predicts).

It learns from train' of :meth:`kgllm.eval.kgdata.KGDataset.simulated` (the same re-split of
``train.txt`` as ``bench/link_prediction_filter.py``, seed 0) and ranks valid' filtered with and without
test', so its numbers stand beside that bench's rules / ComplEx / combined. Writes
``bench/results/path_gnn_probe_NAME.json`` with the metrics every ``--eval-every`` epochs.

    python bench/path_gnn_probe.py --data-root ../shared/data --name umls [--epochs 10] [--dependent] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchjson import machine_info, write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class BellmanFordLayer(nn.Module):
    """One message-passing step over node states shaped ``(nodes, queries, dim)``."""

    def __init__(self, dim: int, num_relations: int, *, dependent: bool) -> None:
        super().__init__()
        self.dim, self.num_relations, self.dependent = dim, num_relations, dependent
        # dependent: relation vectors are a projection of the query (NBFNet's default); else one table
        self.relation = nn.Linear(dim, num_relations * dim) if dependent else None
        self.table = None if dependent else nn.Parameter(1.0 + 0.1 * torch.randn(num_relations, dim))
        self.update = nn.Linear(2 * dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, query: torch.Tensor, boundary: torch.Tensor,
                edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        src, dst, rel = edges
        sent = x.index_select(0, src)
        if self.relation is not None:
            vectors = self.relation(query).view(-1, self.num_relations, self.dim).transpose(0, 1)
            messages = sent * vectors.index_select(0, rel)
        else:
            messages = sent * self.table.index_select(0, rel).unsqueeze(1)
        summed = torch.zeros_like(x).index_add_(0, dst, messages) + boundary
        return x + torch.relu(self.norm(self.update(torch.cat([summed, x], -1))))


class PathGNN(nn.Module):
    """Scores every entity as the answer of ``(head, relation, ?)``; relations ``r + R`` are inverses."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, layers: int, *, dependent: bool) -> None:
        super().__init__()
        self.num_entities = num_entities
        self.query = nn.Embedding(2 * num_relations, dim)
        self.layers = nn.ModuleList(BellmanFordLayer(dim, 2 * num_relations, dependent=dependent)
                                    for _ in range(layers))
        self.score = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, 1))

    def forward(self, heads: torch.Tensor, rels: torch.Tensor,
                edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        query = self.query(rels)
        b, n = heads.shape[0], self.num_entities
        boundary = torch.zeros(n, b, query.shape[1])
        boundary[heads, torch.arange(b)] = query
        x = boundary
        for layer in self.layers:
            x = layer(x, query, boundary, edges)
        return self.score(torch.cat([x, query.unsqueeze(0).expand(n, -1, -1)], -1)).squeeze(-1).T


def answers_of(triples: np.ndarray, num_relations: int) -> dict[tuple[int, int], set[int]]:
    """(entity, relation or inverse) -> true answers, for masking and filtering."""
    known: dict[tuple[int, int], set[int]] = {}
    for h, r, t in triples.tolist():
        known.setdefault((h, r), set()).add(t)
        known.setdefault((t, r + num_relations), set()).add(h)
    return known


def probe(folder: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from kgllm.eval import metrics
    from kgllm.eval.kgdata import KGDataset

    torch.manual_seed(args.seed)
    ds = KGDataset.load(folder, name=name, need=("train", "dev")).simulated(seed=args.seed)
    n, r = len(ds.entities), len(ds.relations)
    train = torch.as_tensor(ds.indexed("train"))
    m = train.shape[0]
    src, dst = torch.cat([train[:, 0], train[:, 2]]), torch.cat([train[:, 2], train[:, 0]])
    rel = torch.cat([train[:, 1], train[:, 1] + r])
    heads, rels, tails = src.clone(), rel.clone(), dst.clone()  # every edge is also a training query
    known = answers_of(ds.indexed("train"), r)
    filters = {"with_test_filter": answers_of(np.concatenate([ds.indexed(s) for s in ("train", "dev", "test", "known")]), r),
               "without_test_filter": answers_of(np.concatenate([ds.indexed(s) for s in ("train", "dev", "known")]), r)}
    model = PathGNN(n, r, args.dim, args.layers, dependent=args.dependent)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    valid = ds.indexed("dev")

    def evaluate() -> dict[str, dict[str, float]]:
        model.eval()
        ranks: dict[str, list[float]] = {k: [] for k in filters}
        with torch.no_grad():
            for inverse in (False, True):
                q = torch.as_tensor(valid[:, 2] if inverse else valid[:, 0])
                a = valid[:, 0] if inverse else valid[:, 2]
                qr = torch.as_tensor(valid[:, 1] + (r if inverse else 0))
                scores = model(q, qr, (src, dst, rel)).numpy()
                for key, table in filters.items():
                    mask = np.zeros_like(scores, dtype=bool)
                    for i, (e, rr) in enumerate(zip(q.tolist(), qr.tolist())):
                        mask[i, list(table.get((e, rr), ()))] = True
                    ranks[key].extend(metrics.filtered_ranks(scores, a, mask))
        model.train()
        return {k: {mm: round(v, 4) for mm, v in metrics.ranking_metrics(rk).items()} for k, rk in ranks.items()}

    history, started = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order, total = torch.randperm(2 * m), 0.0
        for i in range(0, 2 * m, args.batch_size):
            idx = order[i:i + args.batch_size]
            keep = torch.ones(2 * m, dtype=torch.bool)
            own = idx % m  # the batch's triples leave the graph in both directions
            keep[own], keep[own + m] = False, False
            logits = model(heads[idx], rels[idx], (src[keep], dst[keep], rel[keep]))
            mask = torch.zeros_like(logits, dtype=torch.bool)
            for j, k in enumerate(idx.tolist()):
                mask[j, list(known[(int(heads[k]), int(rels[k]))])] = True
            mask[torch.arange(idx.shape[0]), tails[idx]] = False
            loss = nn.functional.cross_entropy(logits.masked_fill(mask, -1e9), tails[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.shape[0]
        point: dict[str, Any] = {"epoch": epoch, "loss": round(total / (2 * m), 4),
                                 "seconds": round(time.perf_counter() - started, 1)}
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            point.update(evaluate())
        history.append(point)
        print(point, file=sys.stderr, flush=True)
    return {"n": len(valid), "final": history[-1], "history": history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--name", choices=("umls", "kinships", "nations"), default="umls")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--dependent", action="store_true", help="query-dependent relation vectors (slower)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/path_gnn_probe_NAME.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, cpu = time.perf_counter(), time.process_time()
    result = probe(args.data_root / args.name, args.name, args)
    payload = {"benchmark": "path_gnn_probe", "machine": machine_info(), "dataset": args.name,
               "options": {k: v for k, v in vars(args).items() if k not in ("data_root", "out")},
               "results": result, "wall_s": round(time.perf_counter() - started, 1),
               "cpu_s": round(time.process_time() - cpu, 1)}
    write_result(args.out or RESULTS / f"path_gnn_probe_{args.name}.json", payload)


if __name__ == "__main__":
    main()
