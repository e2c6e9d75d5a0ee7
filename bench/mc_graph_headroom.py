"""How many accuracy points the concept graph's connections can add to a trained encoder (CSQA, OBQA dev).

For each dev question, the encoder-alone model (``kgllm train csqa|obqa --no-graph``) scores every
choice, and per choice the concept graph (CN-100K, ``--wordnet`` adds WordNet) gives connection features: question concepts
linked to a choice concept by each relation (both directions), common neighbours (2-hop paths),
whether the choice is grounded and how connected its concepts are. A conditional logit (softmax over
a question's choices) over the encoder score alone and over the score plus the graph features is
fitted by 10-fold cross-validation **on dev itself**: the second can only use what the graph tells,
and fitting on the evaluation questions makes it an optimistic bound for any scorer that combines
these connections linearly with the encoder's score. Two feature sets: ``link_counts`` (links, 2-hop
paths, grounded, log degree) and ``per_relation`` (links counted per relation); the L2 penalty is the
best of a small grid, also picked on dev.

    python bench/mc_graph_headroom.py --data-root DATA --model csqa=MODEL_DIR --model obqa=MODEL_DIR [--wordnet]

Writes ``bench/results/mc_graph_headroom.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchjson import machine_info, write_result  # noqa: E402
from concept_graphs import CACHE, add_graph_options, graph_and_out  # noqa: E402

DEV_SETS = {"csqa": "commonsenseqa", "obqa": "openbookqa"}
FOLDS = 10
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def connection_features(questions: list[Any], graph: Any, grounder: Any) -> np.ndarray:
    """Per (question, choice): direct links per relation id, 2-hop paths, grounded, log degree.

    Shape ``(n_questions, n_choices, graph.n_relation_ids + 3)``.
    """
    n_rel = graph.n_relation_ids
    out = np.zeros((len(questions), len(questions[0].choices), n_rel + 3), dtype=np.float32)
    for i, q in enumerate(questions):
        q_nodes = np.unique(np.asarray(grounder.ground(q.stem), dtype=np.int64))
        n_q = graph.neighbors(q_nodes) if len(q_nodes) else np.zeros(0, dtype=np.int64)
        for j, choice in enumerate(q.choices):
            a_nodes = np.setdiff1d(np.asarray(grounder.ground(choice, whole=True), dtype=np.int64), q_nodes)
            if not len(a_nodes):
                continue
            nodes = np.concatenate([q_nodes, a_nodes])
            src, dst, rel = graph.edges_among(nodes)
            across = (src < len(q_nodes)) & (dst >= len(q_nodes))  # question concept -> choice concept
            out[i, j, :n_rel] = np.bincount(rel[across], minlength=n_rel)[:n_rel]
            out[i, j, n_rel] = len(np.intersect1d(n_q, graph.neighbors(a_nodes)))
            out[i, j, n_rel + 1] = 1.0
            out[i, j, n_rel + 2] = np.log1p(len(graph.neighbors(a_nodes)))
    return out


def _fit_logit(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Weights of a conditional logit ``softmax_j(x[q, j] @ w)`` fitted by L-BFGS with an L2 penalty."""
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    w = torch.zeros(x.shape[-1], dtype=torch.float32, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w, yt) + l2 * (w[1:] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def cross_validated_accuracy(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, seed: int = 0) -> float:
    """Accuracy of the conditional logit over ``FOLDS`` folds of the questions (each predicted once)."""
    folds = np.array_split(np.random.default_rng(seed).permutation(len(y)), FOLDS)
    correct = 0
    for fold in folds:
        train = np.setdiff1d(np.arange(len(y)), fold)
        mean, std = x[train].mean(axis=(0, 1)), x[train].std(axis=(0, 1)) + 1e-6
        w = _fit_logit((x[train] - mean) / std, y[train], l2)
        predicted = (((x[fold] - mean) / std) @ w).argmax(1)
        correct += int((predicted == y[fold]).sum())
    return correct / len(y)


def headroom(name: str, data: Path, model_dir: Path, links_graph: Path) -> dict[str, Any]:
    from kgllm.embed import Embedder
    from kgllm.eval.multiple_choice import SPLIT_FILES
    from kgllm.fusion.features import FeatureBuilder, read_mc_jsonl
    from kgllm.fusion.grounding import ConceptGraph, ConceptGrounder
    from kgllm.fusion.training import GraphData, accuracy, load_model, load_saved_vectors, predict

    graph = ConceptGraph.from_triples(model_dir / "graph.tsv")
    model, manifest = load_model(model_dir, vocab_hash=graph.vocab_hash)
    if manifest["config"]["use_graph"]:
        raise SystemExit(f"{model_dir}: needs the encoder-alone model (kgllm train {name} --no-graph)")
    docs = model_dir / "documents.txt"
    documents = docs.read_text(encoding="utf-8").splitlines() if docs.exists() else []
    builder = FeatureBuilder(graph, Embedder(manifest["encoder"], cache_dir=CACHE), documents=documents, cache_dir=CACHE,
                             **manifest.get("features", {}))
    load_saved_vectors(model_dir, builder)
    questions = read_mc_jsonl(data / SPLIT_FILES[name]["dev"])
    feats = builder.build(questions)
    encoder = predict(model, GraphData(feats, graph.n_relation_ids))
    answers = feats.answers.astype(np.int64)
    concepts = ConceptGraph.from_triples(links_graph)  # may differ from the model's own graph
    links = connection_features(questions, concepts, ConceptGrounder(concepts))
    alone = encoder[..., None].astype(np.float32)
    n_rel = concepts.n_relation_ids
    feature_sets = {"link_counts": np.concatenate([links[..., :n_rel].sum(-1, keepdims=True), links[..., n_rel:]], -1),
                    "per_relation": links}
    result: dict[str, Any] = {"questions": len(questions), "graph": links_graph.name, "graph_edges": concepts.n_edges,
                              "model": str(model_dir),
                              "encoder_alone_accuracy": round(accuracy(encoder, answers), 4),
                              "cv_encoder_score": round(cross_validated_accuracy(alone, answers), 4)}
    for feature_set, extra in feature_sets.items():
        x = np.concatenate([alone, extra], axis=-1)
        # the penalty is picked on dev too: part of what makes this bound optimistic
        by_l2 = {l2: cross_validated_accuracy(x, answers, l2=l2) for l2 in L2_GRID}
        best = max(by_l2, key=lambda l2: by_l2[l2])
        result[f"cv_plus_{feature_set}"] = {"accuracy": round(by_l2[best], 4), "l2": best,
                                            "gain_points": round(100 * (by_l2[best] - result["cv_encoder_score"]), 2)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="folder with commonsenseqa/, openbookqa/ and conceptnet_100k/")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                        help="encoder-alone model directory per benchmark (csqa=..., obqa=...)")
    add_graph_options(parser)
    args = parser.parse_args()
    links_graph, out = graph_and_out(args, "mc_graph_headroom")
    models = dict(item.split("=", 1) for item in args.model)
    unknown = set(models) - set(DEV_SETS)
    if unknown or not models:
        raise SystemExit(f"--model NAME=DIR with NAME in {sorted(DEV_SETS)}; got {sorted(models) or 'none'}")
    results = {name: headroom(name, args.data_root / DEV_SETS[name], Path(path), links_graph)
               for name, path in models.items()}
    write_result(out, {"benchmark": "mc_graph_headroom", "folds": FOLDS, "wordnet": args.wordnet is not None,
                       "dev": results,
                            "machine": machine_info()})


if __name__ == "__main__":
    main()
