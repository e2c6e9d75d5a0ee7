"""The compact ComplEx model: it fits a small real graph, saves/loads, refuses another vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from kgllm.eval import metrics
from kgllm.eval.kgdata import KGDataset
from kgllm.exceptions import ModelError
from kgllm.reasoning.kge import ComplEx, KGEConfig, combine, train_complex


def test_complex_fits_training_triples_and_round_trips(fixtures_dir, tmp_path):
    folder = tmp_path / "nations"
    folder.mkdir()
    (folder / "train.txt").write_text((fixtures_dir / "eval" / "nations_train_head.txt").read_text())
    ds = KGDataset.load(folder, name="nations")
    train = ds.indexed("train")
    config = KGEConfig(dim=32, epochs=40, seed=1)
    model, stats = train_complex(train, len(ds.entities), len(ds.relations), config)
    assert stats["final_loss"] > 0
    scores = model.score(train[:, 0], train[:, 1])
    ranks = metrics.filtered_ranks(scores, train[:, 2], np.zeros_like(scores, dtype=bool))
    # raw (unfiltered) ranks among 14 nations; memorising the training graph puts most answers on top
    assert metrics.mrr(ranks) > 0.5

    model.save(tmp_path / "m", config, ds.entities, ds.relations)
    loaded = ComplEx.load(tmp_path / "m", ds.entities, ds.relations)
    assert np.allclose(loaded.score(train[:5, 0], train[:5, 1]), scores[:5], atol=1e-6)
    with pytest.raises(ModelError, match="trained on another graph"):
        ComplEx.load(tmp_path / "m", ds.entities[:-1], ds.relations)


def test_combine_lets_rules_reorder_and_kge_break_ties():
    kge = np.array([[2.0, 1.0, 0.0]])
    rules = np.array([[0.0, 0.9, 0.9]])
    out = combine(kge, rules)
    assert list(np.argsort(-out[0])) == [1, 2, 0]


def test_damaged_model_files_are_model_errors(tmp_path):
    # a cut kge.pt was torch's RuntimeError, a missing one FileNotFoundError, a bad kge.json a JSONDecodeError
    entities, relations = ["a", "b", "c"], ["r"]
    model, _ = train_complex(np.array([[0, 0, 1], [1, 0, 2]]), 3, 1, KGEConfig(dim=4, epochs=1))
    directory = tmp_path / "m"
    model.save(directory, KGEConfig(dim=4), entities, relations)
    weights = (directory / "kge.pt").read_bytes()
    (directory / "kge.pt").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ModelError, match=r"m: damaged KGE model \("):
        ComplEx.load(directory, entities, relations)
    (directory / "kge.pt").unlink()
    with pytest.raises(ModelError, match="KGE model without its weights"):
        ComplEx.load(directory, entities, relations)
    (directory / "kge.pt").write_bytes(weights)
    (directory / "kge.json").write_text('{"format": "kgllm-kge-complex"}', encoding="utf-8")
    with pytest.raises(ModelError, match=r"trained on another graph \(0 entities / 0 relations"):
        ComplEx.load(directory, entities, relations)
    (directory / "kge.json").write_text("{bad", encoding="utf-8")
    with pytest.raises(ModelError, match=r"kge\.json: damaged manifest, not JSON"):
        ComplEx.load(directory, entities, relations)
