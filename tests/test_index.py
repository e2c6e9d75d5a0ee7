"""VectorIndex over real FAISS: ids, updates, factories, persistence, manifests, GPU."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from kgllm.exceptions import ConfigError, IndexMismatch, LoadError
from kgllm.index import IndexManifest, VectorIndex
from kgllm.index.manifest import sha256_file

DIM = 16
HAS_GPU = hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int = DIM, centers: int = 20, seed: int = 0) -> np.ndarray:
    """Unit vectors around a few centres: the shape of real embeddings, where IVF/PQ recall is meaningful."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, dim))
    return unit(means[rng.integers(0, centers, n)] + 0.3 * rng.standard_normal((n, dim)))


def ids_of(n: int) -> list[str]:
    return [f"e{i}" for i in range(n)]


def recall_at(index: VectorIndex, exact: VectorIndex, queries: np.ndarray, k: int) -> float:
    got, want = index.search(queries, k), exact.search(queries, k)
    return float(np.mean([len({i for i, _ in g} & {i for i, _ in w}) / k for g, w in zip(got, want, strict=True)]))


@pytest.fixture
def flat() -> VectorIndex:
    index = VectorIndex.create(DIM, model="test-model", device="cpu")
    index.add(ids_of(200), clustered(200))
    return index


# --------------------------------------------------------------------------- basics
def test_search_finds_each_vector_first_with_descending_scores(flat: VectorIndex) -> None:
    vecs = clustered(200)
    hits = flat.search(vecs[:10], 5)
    assert [row[0][0] for row in hits] == ids_of(10)
    for row in hits:
        assert len(row) == 5
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)
        assert row[0][1] == pytest.approx(1.0, abs=1e-5)
    assert flat.search(vecs[3], 1)[0][0][0] == "e3"  # a single (dim,) query works too
    assert len(flat) == 200 and "e7" in flat and "x" not in flat


def test_k_larger_than_the_index_and_empty_index() -> None:
    index = VectorIndex.create(DIM, device="cpu")
    assert index.search(clustered(2), 3) == [[], []]
    index.add(["a", "b"], clustered(2))
    assert len(index.search(clustered(1), 10)[0]) == 2


def test_existing_id_is_replaced_not_duplicated(flat: VectorIndex) -> None:
    new = clustered(1, seed=99)
    flat.add(["e5"], new)
    assert len(flat) == 200
    top = flat.search(new, 3)[0]
    assert top[0] == ("e5", pytest.approx(1.0, abs=1e-5))
    assert [i for i, _ in flat.search(clustered(200)[5], 200)[0]].count("e5") == 1


def test_repeated_id_in_one_add_keeps_the_last_row() -> None:
    index = VectorIndex.create(DIM, device="cpu")
    rows = clustered(3, seed=4)
    index.add(["x", "y", "x"], rows)
    assert len(index) == 2
    stored = dict(index.search(rows[0], 2)[0])  # the score of "x" shows which row it holds
    assert stored["x"] == pytest.approx(float(rows[0] @ rows[2]), abs=1e-5) and stored["x"] < 0.999
    assert index.search(rows[2], 1)[0][0] == ("x", pytest.approx(1.0, abs=1e-5))


def test_remove(flat: VectorIndex) -> None:
    assert flat.remove(["e1", "e2", "unknown"]) == 2
    assert len(flat) == 198 and "e1" not in flat
    found = {i for i, _ in flat.search(clustered(200)[:3], 200)[0]}
    assert "e1" not in found and "e2" not in found and len(found) == 198
    flat.add(["e1"], clustered(200)[1])  # an id can come back after removal
    assert flat.search(clustered(200)[1], 1)[0][0][0] == "e1"


def test_l2_metric_scores_are_negated_squared_distances() -> None:
    index = VectorIndex.create(2, metric="l2", device="cpu")
    index.add(["origin", "far", "near"], np.array([[0, 0], [3, 4], [1, 0]], dtype=np.float32))
    assert index.search(np.zeros(2, np.float32), 3)[0] == [("origin", 0.0), ("near", -1.0), ("far", -25.0)]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="valid metrics: ip, l2"):
        VectorIndex.create(DIM, metric="cosine")
    with pytest.raises(ConfigError, match="invalid FAISS factory string 'Bogus12'"):
        VectorIndex.create(DIM, factory="Bogus12")
    with pytest.raises(ConfigError, match="dim"):
        VectorIndex.create(0)
    with pytest.raises(ConfigError, match="valid devices"):
        VectorIndex.create(DIM, device="tpu")
    index = VectorIndex.create(DIM, device="cpu")
    with pytest.raises(IndexMismatch, match=r"\(n, 16\)"):
        index.add(["a"], np.ones((1, 8), np.float32))
    with pytest.raises(ValueError, match="2 ids but 1 vectors"):
        index.add(["a", "b"], clustered(1))
    with pytest.raises(ValueError, match="NaN"):
        index.add(["a"], np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(ValueError, match="ids must be str"):
        index.add([1], clustered(1))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="k must be"):
        index.search(clustered(1), 0)


# --------------------------------------------------------------------------- factories
def test_hnsw_recall_and_removal_by_tombstones() -> None:
    vecs = clustered(2000, seed=1)
    hnsw = VectorIndex.create(DIM, factory="HNSW32", device="cpu")
    exact = VectorIndex.create(DIM, device="cpu")
    for index in (hnsw, exact):
        index.add(ids_of(2000), vecs)
    queries = clustered(50, seed=2)
    assert recall_at(hnsw, exact, queries, 10) >= 0.9
    # FAISS cannot delete from HNSW: removed ids must still never come back.
    removed = [i for i, _ in exact.search(queries[0], 5)[0]]
    hnsw.remove(removed)
    assert len(hnsw) == 1995
    assert not {i for i, _ in hnsw.search(queries[0], 10)[0]} & set(removed)
    assert len(hnsw.search(queries[0], 10)[0]) == 10


def test_hnsw_compacts_when_tombstones_outnumber_live_vectors() -> None:
    vecs = clustered(3000, seed=3)
    index = VectorIndex.create(DIM, factory="HNSW16", device="cpu")
    index.add(ids_of(3000), vecs)
    index.remove(ids_of(2000))
    assert len(index) == 1000
    assert index._index.ntotal == 1000  # rebuilt without the removed vectors
    assert index.search(vecs[2500], 1)[0][0][0] == "e2500"


def test_ivf_pq_buffers_until_trained_then_keeps_recall() -> None:
    vecs = clustered(2000, seed=5)
    index = VectorIndex.create(DIM, factory="IVF16,PQ8x4", device="cpu", train_size=1200)
    exact = VectorIndex.create(DIM, device="cpu")
    exact.add(ids_of(2000), vecs)
    index.add(ids_of(600), vecs[:600])
    assert not index.is_trained and len(index) == 600
    assert index.search(vecs[7], 1)[0][0] == ("e7", pytest.approx(1.0, abs=1e-5))  # exact while buffering
    index.add(ids_of(2000)[600:], vecs[600:])
    assert index.is_trained and len(index) == 2000
    queries = clustered(50, seed=6)
    assert recall_at(index, exact, queries, 10) >= 0.5  # 4 bytes per vector: approximate, not random
    index.remove(["e7"])
    assert len(index) == 1999 and "e7" not in {i for i, _ in index.search(vecs[7], 20)[0]}


def test_ivf_under_a_refinement_stage(tmp_path: Path) -> None:
    # "IVF..,RFlat" was accepted, then every add failed with FAISS's "add_with_ids not implemented"
    vecs = clustered(800, seed=5)
    index = VectorIndex.create(DIM, factory="IVF8,Flat,RFlat", device="cpu")
    index.add(ids_of(800), vecs)
    assert index.is_trained and index.search(vecs[:3], 1) == [[(f"e{i}", pytest.approx(1.0, abs=1e-5))]
                                                               for i in range(3)]
    assert index.remove(["e0"]) == 1 and "e0" not in {i for i, _ in index.search(vecs[0], 5)[0]}
    index.save(tmp_path / "refined")
    assert VectorIndex.load(tmp_path / "refined", device="cpu").search(vecs[:5], 3) == index.search(vecs[:5], 3)
    with pytest.raises(ConfigError, match="'IVF0,Flat'.*at least one list"):  # used to fail at the first search
        VectorIndex.create(DIM, factory="IVF0,Flat")


def test_default_train_size_follows_faiss_guideline() -> None:
    assert VectorIndex.create(DIM, factory="IVF16,Flat").train_size == 16 * 39
    assert VectorIndex.create(DIM, factory="IVF4,PQ4x4").train_size == 16 * 39
    assert VectorIndex.create(DIM, factory="IVF4,PQ4").train_size == 256 * 39
    assert VectorIndex.create(DIM, factory="HNSW32").train_size == 39


def test_explicit_training_moves_buffered_vectors_in() -> None:
    vecs = clustered(1200, seed=7)
    index = VectorIndex.create(DIM, factory="IVF8,Flat", device="cpu")
    index.add(ids_of(50), vecs[:50])
    index.train(vecs[50:])
    assert index.is_trained and len(index) == 50
    assert index.search(vecs[:3], 1) == [[("e0", pytest.approx(1.0, abs=1e-5))],
                                         [("e1", pytest.approx(1.0, abs=1e-5))],
                                         [("e2", pytest.approx(1.0, abs=1e-5))]]


# --------------------------------------------------------------------------- persistence
def test_save_load_round_trip(flat: VectorIndex, tmp_path: Path) -> None:
    flat.remove(["e0"])
    flat.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.json", "index.faiss", "manifest.json"]
    manifest = IndexManifest.model_validate_json((tmp_path / "manifest.json").read_text())
    assert (manifest.model, manifest.dim, manifest.count, manifest.factory, manifest.metric) == (
        "test-model", DIM, 199, "Flat", "ip")
    assert manifest.checksum == sha256_file(tmp_path / "index.faiss") and manifest.kgllm_version
    loaded = VectorIndex.load(tmp_path, model="test-model", dim=DIM, device="cpu")
    queries = clustered(200)[:20]
    assert loaded.search(queries, 5) == flat.search(queries, 5)
    assert len(loaded) == 199 and loaded.ids() == flat.ids()
    loaded.add(["new"], clustered(1, seed=42))  # labels continue, no clash with the stored ones
    assert len(loaded) == 200 and loaded.search(clustered(1, seed=42), 1)[0][0][0] == "new"


@pytest.mark.parametrize("factory", ["HNSW32", "IVF8,PQ4x4"])
def test_save_load_other_factories(factory: str, tmp_path: Path) -> None:
    vecs = clustered(700, seed=8)
    index = VectorIndex.create(DIM, factory=factory, device="cpu", train_size=600)
    index.add(ids_of(500), vecs[:500])
    index.remove(["e3"])
    index.save(tmp_path / "a")  # IVF: still buffering, saved with its pending vectors
    index.add(ids_of(700)[500:], vecs[500:])
    index.save(tmp_path / "b")
    for name, count in (("a", 499), ("b", 699)):
        loaded = VectorIndex.load(tmp_path / name, device="cpu")
        assert len(loaded) == count and "e3" not in loaded and loaded.factory == factory
        assert "e3" not in {i for i, _ in loaded.search(vecs[3], 10)[0]}
    assert VectorIndex.load(tmp_path / "b", device="cpu").search(vecs[:5], 3) == index.search(vecs[:5], 3)


def test_search_knobs_are_saved_with_the_index(tmp_path: Path) -> None:
    # nprobe / ef_search were lost on save: a loaded index searched with the defaults again
    index = VectorIndex.create(DIM, factory="HNSW32", device="cpu")
    index.add(ids_of(50), clustered(50, seed=2))
    index.ef_search, index.nprobe = 200, 7
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path, device="cpu")
    assert (loaded.ef_search, loaded.nprobe) == (200, 7)
    assert VectorIndex.load(tmp_path, device="cpu").search(clustered(3, seed=2), 2) == index.search(clustered(3, seed=2), 2)


def test_model_or_dim_mismatch_names_the_manifest(flat: VectorIndex, tmp_path: Path) -> None:
    flat.save(tmp_path)
    with pytest.raises(IndexMismatch, match=r"manifest.json.*'test-model'.*expected 'other-model'"):
        VectorIndex.load(tmp_path, model="other-model")
    with pytest.raises(IndexMismatch, match=r"manifest.json.*dimension is 16, expected 384"):
        VectorIndex.load(tmp_path, dim=384)


def test_corrupt_index_file_fails_the_checksum(flat: VectorIndex, tmp_path: Path) -> None:
    flat.save(tmp_path)
    data = bytearray((tmp_path / "index.faiss").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(LoadError, match=r"index.faiss: checksum mismatch: expected sha256 [0-9a-f]{64}, found"):
        VectorIndex.load(tmp_path)


def test_unreadable_index_with_matching_checksum(flat: VectorIndex, tmp_path: Path) -> None:
    flat.save(tmp_path)
    (tmp_path / "index.faiss").write_bytes(b"not a faiss index")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["checksum"] = sha256_file(tmp_path / "index.faiss")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LoadError, match="index.faiss: unreadable FAISS index"):
        VectorIndex.load(tmp_path)


def test_bad_manifest_and_missing_files(flat: VectorIndex, tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="does not exist"):
        VectorIndex.load(tmp_path / "nothing")
    flat.save(tmp_path)
    (tmp_path / "ids.json").write_text(json.dumps({"labels": [1], "ids": ["a"], "dead": [], "next": 2}))
    with pytest.raises(LoadError, match="ids.json: checksum mismatch"):
        VectorIndex.load(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["ids_checksum"] = sha256_file(tmp_path / "ids.json")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LoadError, match=r"ids.json: id map holds 1 ids .*200 vectors"):
        VectorIndex.load(tmp_path)
    manifest["dim"] = "wide"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LoadError, match=r"manifest.json: invalid manifest: dim.*'wide'"):
        VectorIndex.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(LoadError, match="manifest.json: invalid manifest"):
        VectorIndex.load(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(LoadError, match="no manifest.json"):
        VectorIndex.load(tmp_path)


# --------------------------------------------------------------------------- real embeddings
def test_fact_sentences_with_the_real_minilm(fixtures_dir: Path, tmp_path: Path) -> None:
    from kgllm.embed import Embedder

    lines = (fixtures_dir / "index" / "metaqa_kb_sample.txt").read_text(encoding="utf-8").splitlines()
    facts = {f"f{n}": line.replace("|", " ").replace("_", " ") for n, line in enumerate(lines)}
    emb = Embedder(device="cpu")
    index = VectorIndex.create(emb.dim, model=emb.model_name, device="cpu")
    index.add(list(facts), emb.encode(list(facts.values())))
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path, model=emb.model_name, dim=emb.dim, device="cpu")
    queries = {"who directed the movie Kismet": "Kismet|directed_by|William Dieterle",
               "which films did Tom Hanks write": "That Thing You Do!|written_by|Tom Hanks",
               "what language is In Darkness in": "In Darkness|in_language|Polish"}
    for hits, gold in zip(loaded.search(emb.encode(list(queries)), 3), queries.values(), strict=True):
        assert lines[int(hits[0][0][1:])] == gold


# --------------------------------------------------------------------------- devices
@pytest.mark.skipif(HAS_GPU, reason="this FAISS build has GPU support and sees a GPU")
def test_cuda_without_faiss_gpu_says_how_to_install() -> None:
    with pytest.raises(ConfigError, match=r'pip install "kgllm\[gpu\]"'):
        VectorIndex.create(DIM, device="cuda")
    assert VectorIndex.create(DIM).device == "cpu"  # the default falls back quietly


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs faiss with GPU support and a visible GPU (faiss.get_num_gpus() > 0)")
@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_gpu_search_matches_cpu_and_saves(factory: str, tmp_path: Path) -> None:
    vecs = clustered(2000, seed=9)
    cpu = VectorIndex.create(DIM, factory=factory, device="cpu", train_size=1000)
    gpu = VectorIndex.create(DIM, factory=factory, device="cuda", train_size=1000)
    for index in (cpu, gpu):
        index.add(ids_of(2000), vecs)
    assert gpu.device == "cuda"
    queries = clustered(30, seed=10)
    assert recall_at(gpu, cpu, queries, 10) >= 0.95
    gpu.remove(["e0"])
    assert "e0" not in {i for i, _ in gpu.search(vecs[0], 5)[0]}
    gpu.save(tmp_path)
    assert len(VectorIndex.load(tmp_path, device="cpu")) == 1999


def test_factories_faiss_crashes_on_are_refused_and_numpy_k_is_taken() -> None:
    # FAISS parses these but killed the process on the first add (segfault or abort), and a factory that is
    # no string raised AttributeError; a numpy integer k (a computed top_k) raised a SWIG TypeError
    for factory in ("HNSW0", "HNSW1", "IVF2_HNSW1,Flat", "IVF2,PQ2x0", "RR0,Flat"):
        with pytest.raises(ConfigError, match=f"invalid FAISS factory string '{factory}'"):
            VectorIndex.create(DIM, factory=factory, device="cpu")
    with pytest.raises(ConfigError, match="factory must be a FAISS factory string .* got 32"):
        VectorIndex.create(DIM, factory=32)  # type: ignore[arg-type]
    assert VectorIndex.create(DIM, factory="HNSW2", device="cpu").factory == "HNSW2"
    index = VectorIndex.create(DIM, device="cpu")
    index.add(ids_of(5), clustered(5))
    assert [len(row) for row in index.search(clustered(2), np.int64(3))] == [3, 3]
    with pytest.raises(ValueError, match="k must be an integer >= 1, got True"):
        index.search(clustered(1), True)


def test_a_search_knob_beyond_a_c_int_still_searches() -> None:
    # ef_search above 2**31-1 (from a manifest) failed every search with FAISS's OverflowError
    index = VectorIndex.create(DIM, factory="HNSW32", device="cpu")
    index.add(ids_of(50), clustered(50))
    query = clustered(1, seed=3)
    best = index.search(query, 3)[0]
    index.ef_search = 10**12
    assert index.search(query, 3)[0] == best


def test_hnsw_over_trained_storage_compacts() -> None:
    # compaction rebuilt the index from the factory: untrained for SQ/PQ storage, so the removal that made
    # tombstones outnumber live vectors raised "'is_trained' failed" (a KB re-embedding many renamed entities)
    vecs = clustered(1500, seed=4)
    index = VectorIndex.create(DIM, factory="HNSW32,SQ8", device="cpu")
    index.add(ids_of(1500), vecs)
    assert index.is_trained
    index.remove(ids_of(1400))
    assert len(index) == 100 and index._index.ntotal == 100 and not index._dead
    assert index.search(vecs[1450], 1)[0][0][0] == "e1450"
    index.add(["e0"], vecs[:1])  # still trained: takes new vectors
    assert index.search(vecs[0], 1)[0][0][0] == "e0"
