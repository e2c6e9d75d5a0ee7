"""Document chunking on real files: line chunking of the open book, paragraph chunking of Markdown."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest

from kgllm.exceptions import LoadError
from kgllm.loaders import DocChunk, read_documents
from kgllm.types import Chunk


@pytest.fixture
def fx(fixtures_dir: Path) -> Path:
    return fixtures_dir / "loaders"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_line_chunking_openbook(fx: Path) -> None:
    chunks = list(read_documents(fx / "openbook.txt", domain="science", chunking="line"))
    lines = (fx / "openbook.txt").read_text().splitlines()
    assert len(chunks) == len(lines) == 12
    first = chunks[0]
    assert type(first) is Chunk and DocChunk is Chunk
    assert (first.id, first.domain, first.text, first.source, first.chunk, first.line) == (
        "openbook.txt#0", "science", "A bee is a pollinating animal", "openbook.txt", 0, 1)
    assert [c.text for c in chunks] == [line.strip('"') for line in lines]  # quotes removed
    assert [c.line for c in chunks] == list(range(1, 13))
    assert len({c.id for c in chunks}) == 12
    # A chunk round-trips through the public Chunk type's JSON.
    assert Chunk.from_json(first.to_json()).text == first.text


def test_line_chunking_skips_blank_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "facts.txt"
    path.write_text('"a"\n\n  \n"the sun is a star"\nplain line\n')
    chunks = list(read_documents(path, chunking="line"))
    assert [(c.text, c.line, c.chunk) for c in chunks] == [
        ("a", 1, 0), ("the sun is a star", 4, 1), ("plain line", 5, 2)]


def test_paragraph_chunking_markdown(fx: Path) -> None:
    path = fx / "provenance.md"
    source_lines = path.read_text().splitlines()
    chunks = list(read_documents(path, domain="notes", chunk_size=400, overlap=100))
    assert len(chunks) > 3
    assert chunks[0].text.startswith("# MetaQA staging notes") and chunks[0].line == 1
    assert all(len(c.text) <= 400 for c in chunks)
    assert [c.chunk for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:  # each chunk starts on the line it claims
        assert _norm(chunk.text)[:15] in _norm(source_lines[chunk.line - 1]), chunk
    # Nothing is lost: every word of the document is in some chunk.
    words = set(_norm(path.read_text()).split())
    assert words <= set(" ".join(_norm(c.text) for c in chunks).split())


def test_paragraph_overlap_carries_whole_sentences(tmp_path: Path) -> None:
    sentences = [f"Fact number {i} is about photosynthesis in green plants." for i in range(1, 21)]
    path = tmp_path / "bio.txt"
    path.write_text(" ".join(sentences) + "\n")
    chunks = list(read_documents(path, chunk_size=200, overlap=60))
    assert len(chunks) >= 5 and all(len(c.text) <= 200 for c in chunks)
    for prev, nxt in pairwise(chunks):
        last = re.findall(r"Fact number \d+ [^.]*\.", prev.text)[-1]
        assert nxt.text.startswith(last)  # the previous chunk's last sentence opens the next one
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)


def test_paragraphs_are_packed_and_headings_start_chunks(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("# Energy\n\nThe sun is a source of light.\n\nA battery stores energy.\n\n"
                    "## Water\n\nWater boils at 100 degrees.\n")
    chunks = list(read_documents(path, chunk_size=200, overlap=50))
    assert [c.text for c in chunks] == [
        "# Energy\n\nThe sun is a source of light.\n\nA battery stores energy.",
        "## Water\n\nWater boils at 100 degrees.",
    ]
    assert [c.line for c in chunks] == [1, 7]


def test_abbreviations_do_not_end_sentences(tmp_path: Path) -> None:
    path = tmp_path / "cite.txt"
    path.write_text("MetaQA (Zhang et al. 2018) has multi-hop questions. " * 3 + "Done.\n")
    chunks = list(read_documents(path, chunk_size=60, overlap=0))
    assert chunks[0].text == "MetaQA (Zhang et al. 2018) has multi-hop questions."


def test_long_sentence_split_at_spaces(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text(" ".join(f"word{i}" for i in range(200)) + "\n")
    chunks = list(read_documents(path, chunk_size=100, overlap=0))
    assert all(len(c.text) <= 100 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == [f"word{i}" for i in range(200)]


def test_chinese_and_japanese_text_is_split_at_full_stops(tmp_path: Path) -> None:
    # text without spaces used to be cut every chunk_size characters, mid-word, with no overlap
    sentences = [f"光合作用第{i}条在植物中发生。" for i in range(40)] + ["日本語の文です！", "「終わり。」"]
    path = tmp_path / "notes.txt"
    path.write_text("".join(sentences) + "\n", encoding="utf-8")
    chunks = list(read_documents(path, chunk_size=100, overlap=30))
    assert len(chunks) >= 5 and all(len(c.text) <= 100 for c in chunks)
    assert all(c.text.endswith(("。", "！", "」")) and c.text[0] in "光日「" for c in chunks)
    for prev, nxt in pairwise(chunks):
        opening = re.match(r"光合作用第\d+条在植物中发生。", nxt.text)  # whole sentences carried over
        assert opening is not None and opening.group() in prev.text
    assert " " not in "".join(c.text for c in chunks)  # nothing inserted between sentences
    assert all(sentence in "".join(c.text for c in chunks) for sentence in sentences)


def test_same_file_names_get_distinct_sources(fx: Path, tmp_path: Path) -> None:
    (tmp_path / "openbook.txt").write_text('"Copper is a conductor"\n')
    chunks = list(read_documents([fx / "openbook.txt", tmp_path / "openbook.txt"], chunking="line"))
    assert len({c.id for c in chunks}) == len(chunks) == 13
    assert chunks[-1].source == str(tmp_path / "openbook.txt")


def test_document_errors(fx: Path, tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"missing\.txt: file not found"):
        read_documents(tmp_path / "missing.txt")  # checked at once, before iterating
    (tmp_path / "empty.md").write_text("")
    with pytest.raises(LoadError, match=r"empty\.md: file is empty"):
        list(read_documents(tmp_path / "empty.md"))
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(LoadError, match=r"blank\.txt: document has no text"):
        list(read_documents(tmp_path / "blank.txt"))
    with pytest.raises(LoadError, match=r"umls\.jsonl: unsupported document type '\.jsonl'; supported: \.txt, \.md"):
        list(read_documents(fx / "umls.jsonl"))
    with pytest.raises(LoadError, match=r"unknown chunking 'sentences'; choose one of paragraph, line"):
        list(read_documents(fx / "openbook.txt", chunking="sentences"))  # type: ignore[arg-type]
    with pytest.raises(LoadError, match=r"overlap < chunk_size"):
        list(read_documents(fx / "openbook.txt", chunk_size=100, overlap=100))


def test_document_bad_encoding_names_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"first line\nsecond line\nna\xefve third\n")
    reader = read_documents(path, chunking="line")
    assert next(reader).text == "first line"  # streamed: the good lines come before the error
    with pytest.raises(LoadError, match=r"notes\.txt line 3: not valid utf-8 text") as err:
        list(reader)
    assert err.value.line == 3
