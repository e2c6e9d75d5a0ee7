"""Fixtures of the adapter tests: the small CSQA/OBQA/CN-100K subsets and their real MiniLM features."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgllm.fusion.features import FeatureBuilder, MCFeatures, read_mc_jsonl
from kgllm.fusion.grounding import ConceptGraph

torch.set_num_threads(1)  # the CI machine's cores are shared


@pytest.fixture(scope="session")
def mcqa_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "mcqa"


@pytest.fixture(scope="session")
def concept_graph(mcqa_dir: Path) -> ConceptGraph:
    return ConceptGraph.from_triples(mcqa_dir / "conceptnet_100k" / "train.txt")


@pytest.fixture(scope="session")
def mc_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature/embedding cache for the session, so each text is encoded once."""
    return tmp_path_factory.mktemp("mcqa-cache")


@pytest.fixture(scope="session")
def embedder(mc_cache: Path):  # noqa: ANN201
    from kgllm.embed import Embedder

    return Embedder(cache_dir=mc_cache)


@pytest.fixture(scope="session")
def csqa_features(concept_graph: ConceptGraph, embedder, mcqa_dir: Path, mc_cache: Path
                  ) -> tuple[MCFeatures, MCFeatures]:  # noqa: ANN001
    builder = FeatureBuilder(concept_graph, embedder, cache_dir=mc_cache)
    train = builder.build(read_mc_jsonl(mcqa_dir / "commonsenseqa" / "train_inhouse.jsonl"))
    dev = builder.build(read_mc_jsonl(mcqa_dir / "commonsenseqa" / "dev.jsonl"))
    return train, dev
