"""Training the learned path scorer from (question, answers) pairs: weak supervision, no gold chains.

For each training question the chains (up to ``max_hops``, or exactly the known hop count) from the
topic entity are enumerated on the graph, and the chains whose answer set best matches the gold answers
(F1, at least ``min_f1``) become the targets, each weighted ``1/k`` when ``k`` chains tie. The
:class:`~kgllm.reasoning.learned.StepModel` then learns, with teacher forcing, to predict each step and
the final *stop* from the masked question's embedding.

Tied chains are ambiguous labels: a film whose director also wrote it answers "who directed X" by
``directed_by`` and by ``written_by`` alike. Left at ``1/k`` the model learns to split its belief
between the two for every "directed" question. So after the first half of the epochs the shares are
re-estimated each epoch from the model itself (soft EM over the latent chain): each tied chain gets
its posterior probability among the question's tied chains, and the unambiguous questions, where
the relation is clear, decide the ambiguous ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kgllm.reasoning.learned import LearnedScorer, StepModel
from kgllm.reasoning.paths import Chain, RelationGraph

if TYPE_CHECKING:
    from kgllm.embed import Embedder

__all__ = ["TrainingExample", "gold_chains", "train_path_scorer"]


@dataclass
class TrainingExample:
    """A masked question, its topic node indices, its gold answer node indices and (optional) hop count."""

    text: str
    topic: Sequence[int]
    answers: Sequence[int]
    hops: int | None = None


def gold_chains(graph: RelationGraph, topic: Sequence[int], answers: Sequence[int], *, max_hops: int = 3,
                hops: int | None = None, min_f1: float = 0.5) -> list[Chain]:
    """Chains from ``topic`` whose answer sets best match ``answers`` (ties: all; shortest first)."""
    start = np.unique(np.asarray(list(topic), dtype=np.int64))
    gold = np.unique(np.asarray(list(answers), dtype=np.int64))
    if start.size == 0 or gold.size == 0:
        return []
    best: list[Chain] = []
    best_f1 = min_f1
    lengths = range(1, max_hops + 1) if hops is None else [hops]
    deepest = max(lengths)

    def visit(chain: Chain, nodes: np.ndarray) -> None:
        nonlocal best, best_f1
        for code in graph.available(nodes).tolist():
            reached = np.setdiff1d(graph.expand(nodes, code), start, assume_unique=True)
            if reached.size == 0:
                continue
            extended = chain + (code,)
            if len(extended) in lengths:
                overlap = np.intersect1d(reached, gold, assume_unique=True).size
                if overlap:
                    f1 = 2 * overlap / (reached.size + gold.size)
                    if f1 > best_f1 + 1e-9:
                        best, best_f1 = [extended], f1
                    elif abs(f1 - best_f1) <= 1e-9:
                        best.append(extended)
            if len(extended) < deepest:
                visit(extended, reached)

    visit((), start)
    if hops is None and best:  # prefer the shortest chains among equally good ones
        shortest = min(len(c) for c in best)
        best = [c for c in best if len(c) == shortest]
    return best


def train_path_scorer(graph: RelationGraph, embedder: Embedder, examples: Sequence[TrainingExample], *,
                      max_hops: int = 3, hidden: int = 256, epochs: int = 30, lr: float = 2e-3,
                      batch_size: int = 256, seed: int = 0, min_steps: int = 800,
                      reestimate_ties: bool = True,
                      progress: bool = False) -> tuple[LearnedScorer, dict[str, Any]]:
    """Train a :class:`LearnedScorer` on ``examples``; returns it and training statistics.

    With ``reestimate_ties`` the shares of tied gold chains are re-estimated from the model after
    half of the epochs (see the module docstring); without, they stay ``1/k``.
    """
    import torch

    from kgllm.exceptions import ModelError

    torch.manual_seed(seed)
    rows_q: list[int] = []
    rows_prev: list[int] = []
    rows_hop: list[int] = []
    rows_target: list[int] = []
    rows_weight: list[float] = []
    rows_chain: list[int] = []  # the (question, chain) pair each row belongs to
    chain_question: list[int] = []
    stop = graph.num_codes
    supervised = 0
    iterator: Any = examples
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(examples, desc="gold chains", leave=False)
    for qi, example in enumerate(iterator):
        chains = gold_chains(graph, example.topic, example.answers, max_hops=max_hops, hops=example.hops)
        if not chains:
            continue
        supervised += 1
        share = 1.0 / len(chains)
        for chain in chains:
            chain_question.append(qi)
            previous = stop  # the start symbol shares the stop index (an embedding row of its own)
            for t, code in enumerate(list(chain) + ([stop] if len(chain) < max_hops else [])):
                rows_q.append(qi)
                rows_prev.append(previous)
                rows_hop.append(t)
                rows_target.append(code)
                rows_weight.append(share)
                rows_chain.append(len(chain_question) - 1)
                previous = code
    if not rows_q:
        raise ModelError("no training question could be matched to a chain of the graph")
    texts = [example.text for example in examples]
    vectors = torch.from_numpy(embedder.encode(texts, progress=progress))
    q = torch.tensor(rows_q)
    prev = torch.tensor(rows_prev)
    hop = torch.tensor(rows_hop)
    target = torch.tensor(rows_target)
    weight = torch.tensor(rows_weight, dtype=torch.float32)
    row_chain = torch.tensor(rows_chain)
    owner = torch.tensor(chain_question)
    ambiguous = torch.nonzero(weight < 1.0).squeeze(1)  # rows of questions with tied chains
    module = StepModel.build(int(embedder.dim), graph.num_codes, max_hops, hidden)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    module.train()
    # small training sets still get enough optimizer steps to fit
    batches = -(-q.shape[0] // batch_size)
    epochs = max(epochs, -(-min_steps // batches))
    for epoch in range(epochs):
        if reestimate_ties and epoch >= epochs // 2 and ambiguous.numel():
            rows = ambiguous
            weight[rows] = _posterior_shares(module, vectors[q[rows]], prev[rows], hop[rows], target[rows],
                                             row_chain[rows], owner)
        order = torch.randperm(q.shape[0], generator=generator)
        total = 0.0
        for begin in range(0, q.shape[0], batch_size):
            idx = order[begin:begin + batch_size]
            logits = module(vectors[q[idx]], prev[idx], hop[idx])
            loss = (torch.nn.functional.cross_entropy(logits, target[idx], reduction="none") * weight[idx]).sum()
            loss = loss / weight[idx].sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * idx.shape[0]
        schedule.step()
        losses.append(total / q.shape[0])
    module.eval()
    manifest = LearnedScorer.make_manifest(graph, embedder, max_hops=max_hops, hidden=hidden,
                                           trained_on=len(examples), supervised=supervised, epochs=epochs)
    stats = {"examples": len(examples), "supervised": supervised, "rows": int(q.shape[0]),
             "ambiguous": int(torch.unique(owner[row_chain[ambiguous]]).numel()) if ambiguous.numel() else 0,
             "final_loss": round(losses[-1], 5) if losses else None}
    return LearnedScorer(module, manifest, embedder), stats


def _posterior_shares(module: Any, question: Any, prev: Any, hop: Any, target: Any, row_chain: Any,
                      owner: Any) -> Any:
    """Per row: the posterior probability of its chain among its question's tied chains.

    A chain's log-probability is the sum of its rows' log-probabilities (teacher forcing); the
    softmax runs over the chains of one question (``owner[chain]``).
    """
    import torch

    module.eval()
    with torch.no_grad():
        logp = torch.log_softmax(module(question, prev, hop), dim=-1).gather(1, target[:, None]).squeeze(1)
    module.train()
    chains, local = torch.unique(row_chain, return_inverse=True)
    chain_logp = torch.zeros(chains.numel()).index_add_(0, local, logp)
    questions, by_question = torch.unique(owner[chains], return_inverse=True)
    best = torch.full((questions.numel(),), -torch.inf).scatter_reduce(0, by_question, chain_logp, "amax")
    mass = torch.exp(chain_logp - best[by_question])
    total = torch.zeros(questions.numel()).index_add_(0, by_question, mass)
    return (mass / total[by_question])[local]
