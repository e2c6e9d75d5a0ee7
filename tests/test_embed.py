"""Embedder: the real offline MiniLM, its cache, other models and model errors."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from kgllm.embed import DEFAULT_MODEL_NAME, Embedder, default_model_path
from kgllm.exceptions import ConfigError

SENTENCES = [
    "Kismet was directed by William Dieterle.",
    "Forrest Gump stars Tom Hanks.",
    "The film Kismet was made by the director William Dieterle.",
    "Paris is the capital of France.",
]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    emb = Embedder(cache_dir=tmp_path_factory.mktemp("embcache"), device="cpu")
    yield emb
    emb.close()


def tiny_model(directory: Path) -> Path:
    """A 1-layer BERT with random weights and a WordPiece tokenizer made here, saved as a sentence-transformers model."""
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = "the a film movie was directed by stars paris is capital of france kismet tom hanks".split()
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                            special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()
    hf_dir = directory / "hf"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    fast.save_pretrained(hf_dir)
    config = BertConfig(vocab_size=len(vocab), hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=64)
    st = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean")],
                             device="cpu")
    st_dir = directory / "tiny-st"
    st.save(str(st_dir))
    return st_dir


def test_default_model_is_the_offline_minilm(embedder: Embedder) -> None:
    assert embedder.model_name == DEFAULT_MODEL_NAME
    assert embedder.dim == 384
    assert (Path(default_model_path()) / "modules.json").is_file()
    assert embedder.device == "cpu"


def test_vectors_are_float32_unit_length_and_deterministic(embedder: Embedder) -> None:
    vecs = embedder.encode(SENTENCES)
    assert vecs.shape == (len(SENTENCES), 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    embedder.clear_memory()
    again = Embedder(device="cpu").encode(SENTENCES)  # no cache at all: a fresh forward pass
    np.testing.assert_allclose(vecs, again, atol=1e-5)


def test_same_vectors_as_sentence_transformers_directly(embedder: Embedder) -> None:
    from sentence_transformers import SentenceTransformer

    direct = SentenceTransformer(default_model_path(), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    np.testing.assert_allclose(embedder.encode(SENTENCES), direct, atol=1e-5)


def test_similar_sentences_are_closer(embedder: Embedder) -> None:
    kismet, gump, kismet2, paris = embedder.encode(SENTENCES)
    assert kismet @ kismet2 > 0.7
    assert kismet @ kismet2 > kismet @ gump + 0.2
    assert kismet @ kismet2 > kismet @ paris + 0.2


def test_cache_hits_do_not_call_the_model(tmp_path: Path) -> None:
    emb = Embedder(cache_dir=tmp_path, device="cpu")
    first = emb.encode(["alpha beta", "gamma delta", "alpha beta"])
    assert (emb.stats.model_calls, emb.stats.encoded) == (1, 2)  # the duplicate is embedded once
    second = emb.encode(["gamma delta", "alpha beta"])
    assert (emb.stats.model_calls, emb.stats.encoded, emb.stats.memory_hits) == (1, 2, 2)
    np.testing.assert_array_equal(second, first[[1, 0]])
    emb.encode(["alpha beta", "epsilon"])  # only the new text goes to the model
    assert (emb.stats.model_calls, emb.stats.encoded) == (2, 3)
    emb.close()


def test_cache_persists_across_instances(tmp_path: Path) -> None:
    with Embedder(cache_dir=tmp_path, device="cpu") as emb:
        vecs = emb.encode(SENTENCES)
    assert (tmp_path / "embeddings.sqlite").is_file()
    with Embedder(cache_dir=tmp_path, device="cpu") as again:
        assert again.model is emb.model  # one loaded model per (model, device) in the process
        np.testing.assert_array_equal(again.encode(SENTENCES), vecs)
        assert again.stats.model_calls == 0 and again.stats.disk_hits == len(SENTENCES)


def test_unnormalised_vectors_are_cached_apart(tmp_path: Path) -> None:
    Embedder(cache_dir=tmp_path, device="cpu").encode(SENTENCES[:2])
    raw = Embedder(cache_dir=tmp_path, device="cpu", normalize=False)
    raw.encode(SENTENCES[:2])
    assert raw.stats.model_calls == 1 and raw.stats.disk_hits == 0


def test_cache_row_of_another_width_is_a_miss(tmp_path: Path) -> None:
    emb = Embedder(cache_dir=tmp_path, device="cpu", memory_cache_size=0)
    emb.encode(["width check"])
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as db:  # as if another model once used this name
        db.execute("UPDATE embeddings SET dim = 3, vec = ?", (np.zeros(3, np.float32).tobytes(),))
    vec = emb.encode(["width check"])
    assert emb.stats.model_calls == 2 and vec.shape == (1, 384)
    emb.close()


def test_empty_and_bad_inputs(embedder: Embedder) -> None:
    assert embedder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="wrap it in a list"):
        embedder.encode("one string")
    with pytest.raises(TypeError, match="item 1 is int"):
        embedder.encode(["ok", 3])  # type: ignore[list-item]


def test_concurrent_encodes_agree(tmp_path: Path) -> None:
    emb = Embedder(cache_dir=tmp_path, device="cpu")
    texts = [f"movie number {i} was released in {1950 + i}" for i in range(24)]
    expected = emb.encode(texts)
    emb.clear_memory()
    results: list[np.ndarray] = [np.empty(0)] * 4
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, emb.encode(texts[i::2] + texts)))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _i, got in enumerate(results):
        np.testing.assert_array_equal(got[-len(texts):], expected)
    emb.close()


def test_another_model_directory(tmp_path: Path) -> None:
    path = tiny_model(tmp_path)
    emb = Embedder(path, cache_dir=tmp_path / "cache", device="cpu")
    assert emb.dim == 24 and emb.model_name == str(path.resolve())
    vecs = emb.encode(["the film kismet", "paris is the capital of france"])
    assert vecs.shape == (2, 24)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    raw = Embedder(path, device="cpu", normalize=False).encode(["the film kismet"])
    assert abs(float(np.linalg.norm(raw)) - 1.0) > 1e-3  # this model has no Normalize layer of its own
    # The same text under the default model is a different cache entry.
    minilm = Embedder(cache_dir=tmp_path / "cache", device="cpu")
    assert minilm.encode(["the film kismet"]).shape == (1, 384) and minilm.stats.model_calls == 1


def test_model_retrained_in_place_is_not_served_old_vectors(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    path = tiny_model(tmp_path)
    before = Embedder(path, cache_dir=tmp_path / "cache", device="cpu")
    old = before.encode(["the film kismet"])
    retrained = SentenceTransformer(str(path), device="cpu")
    with torch.no_grad():
        for param in retrained.parameters():
            param.add_(0.5)
    retrained.save(str(path))
    after = Embedder(path, cache_dir=tmp_path / "cache", device="cpu")
    assert after.model_name == before.model_name and after.cache_identity != before.cache_identity
    new = after.encode(["the film kismet"])
    assert after.stats.model_calls == 1  # a cache miss: the old vectors belong to the old weights
    assert not np.allclose(old, new)
    assert Embedder(device="cpu").cache_identity == "sentence-transformers/all-MiniLM-L6-v2"


def test_missing_model_directory_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"
    with pytest.raises(ConfigError, match="no-model-here.*does not exist"):
        Embedder(missing, device="cpu")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match="model.safetensors' is a file, not a model directory"):
        Embedder(weights, device="cpu")


def test_unloadable_model_directory_names_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken.*local directory"):
        Embedder(broken, device="cpu")


def test_unknown_hub_name_is_not_downloaded() -> None:
    with pytest.raises(ConfigError, match=r"'kgllm-test/no-such-model'.*local cache only"):
        Embedder("kgllm-test/no-such-model", device="cpu")


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        Embedder(batch_size=0)


def test_cache_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="embedding cache"):
        Embedder(cache_dir=blocker, device="cpu")


def test_chunked_encoding_caches_every_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import kgllm.embed

    texts = [f"short {i}" if i % 2 else f"a somewhat longer sentence about film number {i}" for i in range(7)]
    whole = Embedder(device="cpu").encode(texts)
    monkeypatch.setattr(kgllm.embed, "_ENCODE_CHUNK", 3)
    emb = Embedder(cache_dir=tmp_path, device="cpu")
    np.testing.assert_allclose(emb.encode(texts, progress=True), whole, atol=1e-5)
    assert "embedding" in capsys.readouterr().err  # the progress bar, shown only when asked for
    assert (emb.stats.model_calls, emb.stats.encoded) == (1, 7)
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone() == (7,)
    emb.encode(texts)
    assert "embedding" not in capsys.readouterr().err
    emb.close()


@pytest.mark.slow
def test_hub_name_found_in_the_local_hf_cache(tmp_path: Path) -> None:
    """A model name resolves offline from the Hugging Face cache (run in a child: HF reads its cache path at import)."""
    model_dir = tiny_model(tmp_path)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-cache" / "models--kgllm-test--tiny-st"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    code = ("from kgllm.embed import Embedder\n"
            "e = Embedder('kgllm-test/tiny-st', device='cpu')\n"
            "v = e.encode(['the film kismet'])\n"
            "print(e.model_name, e.dim, v.shape)\n")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-4:] == ["kgllm-test/tiny-st", "24", "(1,", "24)"]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda(), reason="a CUDA GPU is visible")
def test_cuda_without_a_gpu_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"all-MiniLM-L6-v2.*device 'cuda'"):
        Embedder(device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU visible to torch")
def test_gpu_is_the_default_and_agrees_with_cpu() -> None:
    gpu = Embedder()
    assert gpu.device == "cuda"
    np.testing.assert_allclose(gpu.encode(SENTENCES), Embedder(device="cpu").encode(SENTENCES), atol=1e-3)


def test_cache_that_cannot_be_written_or_is_damaged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # a read-only cache file opened fine, then every encode of a new text raised sqlite3.OperationalError
    emb = Embedder(cache_dir=tmp_path, device="cpu")
    assert emb._db is not None
    emb._db.execute("PRAGMA query_only = ON")  # what a read-only file (or a full disk) does to writes
    with caplog.at_level("WARNING", logger="kgllm.embed"):
        first = emb.encode(["a text never cached"])
        emb.encode(["another text never cached"])
    np.testing.assert_allclose(first, Embedder(device="cpu").encode(["a text never cached"]), atol=1e-5)
    assert sum("cannot write to the embedding cache" in r.getMessage() for r in caplog.records) == 1  # once
    emb.close()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "embeddings.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match=r"file is not a database; delete .*embeddings.sqlite to start an empty"):
        Embedder(cache_dir=damaged, device="cpu")


def test_text_with_a_lone_surrogate(embedder: Embedder) -> None:
    # a badly decoded question ("\ud800") failed ask with UnicodeEncodeError (and the tokenizer refuses it)
    vectors = embedder.encode(["Kismet \ud800 film", "Kismet \ufffd\ufffd\ufffd film"])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_cache_damaged_in_its_pages_is_dropped_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # the header was intact, so the cache opened; then every encode failed with "database disk image is malformed"
    texts = [f"text number {i}" for i in range(600)]
    with Embedder(cache_dir=tmp_path, device="cpu") as first:
        expected = first.encode(texts)
    db = sqlite3.connect(tmp_path / "embeddings.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    path = tmp_path / "embeddings.sqlite"
    with open(path, "r+b") as handle:
        for offset in range(8192, path.stat().st_size - 4096, 8192):
            handle.seek(offset)
            handle.write(np.random.default_rng(offset).bytes(4096))
    emb = Embedder(cache_dir=tmp_path, device="cpu")
    with caplog.at_level("WARNING", logger="kgllm.embed"):
        np.testing.assert_allclose(emb.encode(texts), expected, atol=1e-5)
        emb.encode(["one more"])
    assert [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()] == [
        f"the embedding cache {path} is damaged (database disk image is malformed) and is no longer used; "
        "delete it to start an empty one"]


def test_the_bundled_model_given_by_its_directory_is_the_default(tmp_path: Path) -> None:
    # it was recorded as its path: a KB whose indexes the default built refused it as "another model",
    # and its vectors were cached apart from the default's
    import kgllm
    from kgllm.embed import model_name

    assert model_name(default_model_path()) == model_name(Path(default_model_path())) == DEFAULT_MODEL_NAME
    assert Embedder(default_model_path(), device="cpu").cache_identity == DEFAULT_MODEL_NAME
    data = tmp_path / "one.txt"
    data.write_text("kismet|directed_by|tom hanks\n", encoding="utf-8")
    with kgllm.open(tmp_path / "kb") as kb:
        kb.load_triples("films", data, format="pipe")
        kb.index("films", "entities")
    with kgllm.open(tmp_path / "kb", embedder=default_model_path(), create=False) as reopened:
        assert len(reopened.index("films", "entities")) == 2
