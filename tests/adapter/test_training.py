"""Training the multiple-choice adapter on a small real subset; checkpoints and their checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kgllm.exceptions import ModelError
from kgllm.fusion.features import MCFeatures
from kgllm.fusion.grounding import NODE_CHOICE, ConceptGraph
from kgllm.fusion.training import (
    GraphData,
    TrainConfig,
    build_model,
    load_model,
    predict,
    save_model,
    train_adapter,
)


def test_features_have_lm_states_and_grounded_graphs(csqa_features: tuple[MCFeatures, MCFeatures],
                                                     embedder) -> None:  # noqa: ANN001
    train, dev = csqa_features
    assert train.lm.shape == (48, 5, 4 * embedder.dim) and dev.lm.shape == (16, 5, 4 * embedder.dim)
    assert set(train.answers.tolist()) <= set(range(5))
    # the joint (question + choice) block is a unit vector from the real encoder
    assert np.allclose(np.linalg.norm(train.lm[:, :, :embedder.dim], axis=-1), 1.0, atol=1e-2)
    # CSQA documents block is empty (no open book)
    assert np.abs(train.lm[:, :, 3 * embedder.dim:]).max() == 0.0
    grounded = np.mean([(g.types == NODE_CHOICE).any() for g in train.graphs])
    assert grounded > 0.5
    assert max(len(g.nodes) for g in train.graphs) <= 32
    assert sum(g.edge_index.shape[1] for g in train.graphs) > 0


def test_cached_features_load_back_identically(csqa_features, concept_graph: ConceptGraph, embedder, mcqa_dir: Path,
                                               tmp_path: Path) -> None:  # noqa: ANN001
    from kgllm.fusion.features import FeatureBuilder, read_mc_jsonl

    builder = FeatureBuilder(concept_graph, embedder, cache_dir=tmp_path)
    questions = read_mc_jsonl(mcqa_dir / "commonsenseqa" / "dev.jsonl")
    first = builder.build(questions)
    assert len(list(tmp_path.glob("features-*.npz"))) == 1
    again = builder.build(questions)
    assert np.allclose(first.lm, again.lm, atol=1e-3)
    assert all(np.array_equal(a.nodes, b.nodes) and np.array_equal(a.edge_index, b.edge_index)
               and np.array_equal(a.edge_type, b.edge_type) for a, b in zip(first.graphs, again.graphs, strict=True))


def test_saving_the_cache_leaves_another_process_s_temporary_files_alone(concept_graph: ConceptGraph, embedder,
                                                                        mcqa_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from kgllm.fusion.features import FeatureBuilder, read_mc_jsonl

    builder = FeatureBuilder(concept_graph, embedder, cache_dir=tmp_path)
    questions = read_mc_jsonl(mcqa_dir / "commonsenseqa" / "dev.jsonl")
    builder.build(questions)
    cached = next(tmp_path.glob("features-*.npz"))
    cached.unlink()
    # what a run sharing this cache is writing now, under the one temporary name every run used to share
    theirs = cached.with_suffix(".tmp.npz")
    theirs.write_bytes(b"half written by another run")
    builder.build(questions)
    assert theirs.read_bytes() == b"half written by another run"
    assert cached.is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == [theirs.name]


def test_small_data_training_loss_falls_and_adapter_gets_gradients(csqa_features, concept_graph: ConceptGraph
                                                                    ) -> None:  # noqa: ANN001
    train, _ = csqa_features
    data = GraphData(train, concept_graph.n_relation_ids)
    cfg = TrainConfig(epochs=12, lr=3e-3, batch_size=8, hidden=32, heads=2, dropout=0.0, seed=0)
    model = build_model(train.lm.shape[-1], train.node_vectors.shape[1], concept_graph.n_relation_ids, cfg)
    lm, graphs = data.batch([0, 1, 2, 3])
    # the graph branch enters through a gate that starts closed: the untrained model is its LM scorer
    assert torch.equal(model(lm, graphs), model(lm, None))
    scores = model(lm, graphs).view(4, 5)
    torch.nn.functional.cross_entropy(scores, torch.from_numpy(train.answers[:4])).backward()
    assert model.graph_gate.grad is not None and float(model.graph_gate.grad.abs()) > 0
    model, history = train_adapter(data, cfg, n_graph_relations=concept_graph.n_relation_ids)
    losses = [h["loss"] for h in history]
    assert losses[-1] < 0.7 * losses[0], losses
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    # once trained, the gate is open and gradients reach every GNN layer on a real batch
    assert model.graph_gate.detach().abs().item() > 0
    model.train()
    scores = model(lm, graphs).view(4, 5)
    torch.nn.functional.cross_entropy(scores, torch.from_numpy(train.answers[:4])).backward()
    for name, param in model.named_parameters():
        if name.startswith("gnn.layers") and "bias" not in name:
            assert param.grad is not None and float(param.grad.abs().sum()) > 0, name


def test_same_seed_same_model(csqa_features, concept_graph: ConceptGraph) -> None:  # noqa: ANN001
    train, dev = csqa_features
    cfg = TrainConfig(epochs=1, batch_size=16, hidden=16, heads=2, seed=3)
    data, dev_data = GraphData(train, concept_graph.n_relation_ids), GraphData(dev, concept_graph.n_relation_ids)
    a, _ = train_adapter(data, cfg, n_graph_relations=concept_graph.n_relation_ids)
    b, _ = train_adapter(data, cfg, n_graph_relations=concept_graph.n_relation_ids)
    assert np.allclose(predict(a, dev_data), predict(b, dev_data))


def _saved(tmp_path: Path, csqa_features, concept_graph: ConceptGraph, mcqa_dir: Path, embedder,  # noqa: ANN001
           use_graph: bool = True) -> tuple[Path, np.ndarray]:
    train, dev = csqa_features
    cfg = TrainConfig(epochs=1, batch_size=16, hidden=16, heads=2, seed=1, use_graph=use_graph)
    model, _ = train_adapter(GraphData(train, concept_graph.n_relation_ids), cfg,
                             n_graph_relations=concept_graph.n_relation_ids)
    out = save_model(tmp_path / "model", model, cfg, encoder=embedder.model_name, encoder_dim=embedder.dim,
                     graph_path=mcqa_dir / "conceptnet_100k" / "train.txt", vocab_hash=concept_graph.vocab_hash,
                     n_graph_relations=concept_graph.n_relation_ids, node_dim=embedder.dim)
    return out, predict(model, GraphData(dev, concept_graph.n_relation_ids))


@pytest.mark.parametrize("use_graph", [True, False])
def test_checkpoint_round_trip(tmp_path: Path, csqa_features, concept_graph: ConceptGraph, mcqa_dir: Path,
                               embedder, use_graph: bool) -> None:  # noqa: ANN001
    out, scores = _saved(tmp_path, csqa_features, concept_graph, mcqa_dir, embedder, use_graph)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["encoder"] == embedder.model_name and manifest["encoder_dim"] == embedder.dim
    assert manifest["graph_vocab_hash"] == concept_graph.vocab_hash and manifest["seed"] == 1
    assert (out / "graph.tsv").is_file()
    model, _ = load_model(out, encoder=embedder.model_name, vocab_hash=concept_graph.vocab_hash)
    assert np.allclose(predict(model, GraphData(csqa_features[1], concept_graph.n_relation_ids)), scores, atol=1e-5)


def test_loading_for_another_encoder_or_graph_fails(tmp_path: Path, csqa_features, concept_graph: ConceptGraph,
                                                    mcqa_dir: Path, embedder) -> None:  # noqa: ANN001
    out, _ = _saved(tmp_path, csqa_features, concept_graph, mcqa_dir, embedder)
    with pytest.raises(ModelError, match="trained with encoder"):
        load_model(out, encoder="sentence-transformers/all-mpnet-base-v2")
    # one triple fewer: another vocabulary
    lines = (mcqa_dir / "conceptnet_100k" / "train.txt").read_text().splitlines()
    other_path = tmp_path / "other.tsv"
    other_path.write_text("\n".join(lines[:-200]) + "\nIsA\tzzz unseen concept\tthing\n")
    other = ConceptGraph.from_triples(other_path)
    with pytest.raises(ModelError, match="graph vocabulary"):
        load_model(out, vocab_hash=other.vocab_hash)
    with pytest.raises(ModelError, match="manifest.json is missing"):
        load_model(tmp_path)
    (out / "adapter.pt").write_bytes(b"not weights")
    with pytest.raises(ModelError, match="weights"):
        load_model(out)


def test_raw_text_features_take_one_encoder_call(concept_graph: ConceptGraph, csqa_features, mcqa_dir: Path
                                                 ) -> None:  # noqa: ANN001
    """Inference encodes stems, choices and question+choice texts in one batched call; same features."""
    from kgllm.embed import Embedder
    from kgllm.fusion.features import FeatureBuilder, read_mc_jsonl

    _, cached = csqa_features
    builder = FeatureBuilder(concept_graph, Embedder())  # a cold in-memory cache
    builder.use_node_vectors(cached.node_vectors)
    questions = read_mc_jsonl(mcqa_dir / "commonsenseqa" / "dev.jsonl")
    feats = builder.compute(questions, 5)
    assert builder.embedder.stats.model_calls == 1
    assert np.allclose(feats.lm, cached.lm, atol=2e-3)  # the cache stores float16
    assert all(np.array_equal(a.nodes, b.nodes) for a, b in zip(feats.graphs, cached.graphs, strict=True))


def test_incomplete_or_unknown_manifests_and_missing_files_are_model_errors(tmp_path: Path, csqa_features,
                                                                            concept_graph: ConceptGraph,
                                                                            mcqa_dir: Path, embedder) -> None:  # noqa: ANN001
    from kgllm.fusion.training import load_graph

    out, _ = _saved(tmp_path, csqa_features, concept_graph, mcqa_dir, embedder)
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("config", "lm_dim", "encoder"):
        (out / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != key}))
        with pytest.raises(ModelError, match=f"manifest.json: incomplete manifest, missing {key}"):
            load_model(out)
    # a manifest written by a later version with a setting this one does not have
    (out / "manifest.json").write_text(json.dumps({**manifest, "config": {**manifest["config"], "pool": "mean"}}))
    with pytest.raises(ModelError, match=r"config has entries this version does not know: \['pool'\]"):
        load_model(out)
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert load_graph(out).vocab_hash == concept_graph.vocab_hash
    (out / "graph.tsv").unlink()
    with pytest.raises(ModelError, match=r"concept graph graph\.tsv is missing"):
        load_graph(out)
    (out / "adapter.pt").unlink()
    with pytest.raises(ModelError, match=r"weights adapter\.pt are missing"):
        load_model(out)
    (out / "adapter.pt").write_bytes(b"")  # a copy cut short: the message says what failed
    with pytest.raises(ModelError, match=r"weights adapter\.pt unreadable or not fitting the manifest \(\w+"):
        load_model(out)


def test_saving_over_an_earlier_model_drops_its_optional_files(tmp_path: Path, csqa_features,
                                                              concept_graph: ConceptGraph, mcqa_dir: Path,
                                                              embedder) -> None:  # noqa: ANN001
    train, _ = csqa_features
    cfg = TrainConfig(epochs=1, batch_size=16, hidden=16, heads=2, use_graph=False)
    model, _ = train_adapter(GraphData(train, concept_graph.n_relation_ids), cfg,
                             n_graph_relations=concept_graph.n_relation_ids)
    common = {"encoder": embedder.model_name, "encoder_dim": embedder.dim, "vocab_hash": concept_graph.vocab_hash,
              "graph_path": mcqa_dir / "conceptnet_100k" / "train.txt", "node_dim": embedder.dim,
              "n_graph_relations": concept_graph.n_relation_ids}
    out = tmp_path / "model"
    facts = ["a bank keeps money", "a library lends books"]
    save_model(out, model, cfg, documents=facts, node_vectors=train.node_vectors,
               document_vectors=embedder.encode(facts), **common)
    assert {"documents.txt", "document_vectors.npy", "node_vectors.npy"} <= {p.name for p in out.iterdir()}
    # the same directory again, for a model without facts (an OBQA model replaced by a CSQA one)
    save_model(out, model, cfg, **common)
    assert sorted(p.name for p in out.iterdir()) == ["adapter.pt", "graph.tsv", "manifest.json"]


def test_device_names(csqa_features, concept_graph: ConceptGraph) -> None:  # noqa: ANN001
    from kgllm.exceptions import ConfigError
    from kgllm.fusion.training import resolve_device

    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(None).type == resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "gpu", "cuda:x"):
        with pytest.raises(ConfigError, match=f"unknown device '{bad}'; use cpu, cuda or cuda:N"):
            resolve_device(bad)
    with pytest.raises(ConfigError, match=r"device 'cuda:99' asked for, but torch sees \d+ CUDA GPU"):
        resolve_device("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device 'cuda' asked for, but torch sees 0 CUDA GPU"):
            resolve_device("cuda")
    # a model trained anywhere comes back on the CPU, where saving and the answerer expect it
    train, _ = csqa_features
    model, _ = train_adapter(GraphData(train, concept_graph.n_relation_ids), TrainConfig(epochs=1, hidden=16, heads=2),
                             n_graph_relations=concept_graph.n_relation_ids, device=None)
    assert {p.device.type for p in model.parameters()} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_gives_a_cpu_model_that_scores_like_the_gpu(csqa_features,
                                                                    concept_graph: ConceptGraph) -> None:  # noqa: ANN001
    train, dev = csqa_features
    cfg = TrainConfig(epochs=3, batch_size=16, hidden=16, heads=2, dropout=0.0, seed=4)  # no dropout: the
    data, dev_data = GraphData(train, concept_graph.n_relation_ids), GraphData(dev, concept_graph.n_relation_ids)
    gpu, history = train_adapter(data, cfg, dev=dev_data, n_graph_relations=concept_graph.n_relation_ids,
                                 device="cuda")  # GPU draws its masks from another generator than the CPU
    assert {p.device.type for p in gpu.parameters()} == {"cpu"} and len(history) == 3
    on_cpu = predict(gpu, dev_data)
    gpu.to("cuda")
    assert np.allclose(predict(gpu, dev_data), on_cpu, atol=1e-4)
    cpu, _ = train_adapter(data, cfg, dev=dev_data, n_graph_relations=concept_graph.n_relation_ids, device="cpu")
    # same seed, same data: close, not bit-equal (on an H200: 3e-3 apart; two GPU runs 1e-4 apart)
    assert np.allclose(predict(cpu, dev_data), on_cpu, atol=1e-2)
