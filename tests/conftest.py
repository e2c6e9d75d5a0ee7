"""Shared fixtures: where the benchmark data lives, and the real Neo4j server for the suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def shared_data_dir() -> Path:
    """The full benchmark data: ``$KGLLM_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("KGLLM_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full data folder; tests needing it skip (with the reason) only where it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"full benchmark data not found at {path} (set KGLLM_DATA)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture()
def tiny_movies_kb(tmp_path: Path):  # noqa: ANN201 - a generator fixture
    """A fresh embedded KB holding the tiny movies pack."""
    import kgllm

    with kgllm.open(tmp_path / "kb") as kb:
        kb.load(FIXTURES / "kb" / "tiny_movies")
        yield kb


try:  # the real Neo4j server fixture (session scoped); see tests/neo4j_testserver.py
    from neo4j_testserver import neo4j_server  # noqa: F401
except ImportError:  # pragma: no cover - until the server module exists
    pass
