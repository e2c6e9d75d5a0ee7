"""Fixtures of the reasoning tests: a hand-made movie graph, the real embedder, the MetaQA fixture KB."""

from __future__ import annotations

from pathlib import Path

import pytest
from reasoning_graphs import MOVIE_TRIPLES, make_snapshot

from kgllm.stores.snapshot import GraphSnapshot


@pytest.fixture()
def movies() -> GraphSnapshot:
    return make_snapshot(MOVIE_TRIPLES)


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory):
    import torch

    from kgllm.embed import Embedder

    torch.set_num_threads(2)
    return Embedder(cache_dir=tmp_path_factory.mktemp("embcache"))


@pytest.fixture(scope="session")
def metaqa_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "metaqa"


@pytest.fixture(scope="session")
def metaqa_kb(tmp_path_factory: pytest.TempPathFactory, metaqa_dir: Path, embedder):
    from kgllm.kb import open_kb

    kb = open_kb(tmp_path_factory.mktemp("kb") / "metaqa", embedder=embedder)
    kb.load_triples("movies", metaqa_dir / "kb.txt", format="pipe")
    yield kb
    kb.close()


@pytest.fixture(scope="session")
def model_dir(metaqa_kb, metaqa_dir, tmp_path_factory):
    from kgllm.eval.metaqa import train
    from kgllm.eval.registry import TrainRequest

    out = tmp_path_factory.mktemp("scorer") / "model"
    stats = train(TrainRequest(data=metaqa_dir, out=out, split="dev",
                               options={"kb": metaqa_kb.path, "epochs": 40, "all_lines": True,
                                        "hidden": 128, "min_steps": 400}))
    assert stats["supervised"] > 0
    return out
