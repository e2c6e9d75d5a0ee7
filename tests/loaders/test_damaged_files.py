"""Files that are damaged or written unusually: corrupt or truncated gzip (a LoadError naming the file and
line), a Turtle byte-order mark, Turtle syntax errors after non-ASCII text, CSV quotes after ", "."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from kgllm.exceptions import LoadError
from kgllm.loaders import read_documents, read_triples
from kgllm.stores.base import RawTriple


def _truncated_gzip(path: Path, lines: int = 20000) -> Path:
    """A .gz cut short: the first lines decompress, then the stream ends before its end marker."""
    text = "".join(f"e{i}\tr{i * 7919 % 10007}\tf{i}\n" for i in range(lines))
    data = gzip.compress(text.encode("utf-8"))
    path.write_bytes(data[: len(data) // 4])
    return path


def test_truncated_gzip_is_a_load_error_naming_the_file_and_line(tmp_path: Path) -> None:
    # used to raise a bare EOFError, which the command line turned into "Aborted." with no file named
    path = _truncated_gzip(tmp_path / "big.tsv.gz")
    with pytest.raises(LoadError, match=r"big\.tsv\.gz line \d+: damaged or truncated gzip file \(EOFError") as info:
        list(read_triples(path))
    assert info.value.path == str(path) and info.value.line is not None and info.value.line > 1


@pytest.mark.parametrize("name", ["kb.tsv.gz", "kb.ttl.gz", "kb.txt.gz"])
def test_a_plain_file_named_gz_is_a_load_error_naming_it(tmp_path: Path, name: str) -> None:
    # used to raise gzip.BadGzipFile: "Not a gzipped file (b'a\t')", without the file's name
    path = tmp_path / name
    path.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(LoadError, match=rf"{name.replace('.', '[.]')}: damaged or truncated gzip file "
                                        r"\(BadGzipFile"):
        list(read_triples(path, "ttl" if name == "kb.ttl.gz" else None))


def test_a_document_named_gz_that_is_not_gzip_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.md.gz"
    path.write_text("# Notes\n\nSome text.\n", encoding="utf-8")
    with pytest.raises(LoadError, match=r"notes\.md\.gz: damaged or truncated gzip file"):
        list(read_documents(path))


def test_turtle_with_a_byte_order_mark_and_crlf_loads(tmp_path: Path) -> None:
    # the line-based readers dropped a BOM, the Turtle reader failed on it ("expected directive or statement")
    path = tmp_path / "bom.ttl"
    path.write_bytes(b"\xef\xbb\xbf@prefix ex: <http://ex.org/> .\r\nex:a ex:rel ex:b .\r\n")
    assert list(read_triples(path)) == [RawTriple("http://ex.org/a", "http://ex.org/rel", "http://ex.org/b",
                                                  "bom.ttl", 2)]


def test_turtle_syntax_error_after_non_ascii_text_names_its_line(tmp_path: Path) -> None:
    # the error's character offset was counted in UTF-8 bytes, naming an earlier line (12 instead of 22)
    lines = ["@prefix ex: <http://ex.org/> ."]
    lines += [f'ex:e{i} ex:name "日本語のなまえ日本語のなまえ日本語のなまえ{i}" .' for i in range(20)]
    lines += ["ex:bad ex:rel ex:x ex:y .", "ex:ok ex:rel ex:z ."]
    path = tmp_path / "u.ttl"
    path.write_bytes("\r\n".join(lines).encode("utf-8") + b"\r\n")
    with pytest.raises(LoadError, match=r"invalid Turtle") as info:
        list(read_triples(path))
    assert info.value.line == 22 and info.value.value == "ex:bad ex:rel ex:x ex:y ."


def test_csv_quoted_fields_after_a_comma_and_space(tmp_path: Path) -> None:
    # `a, "b, c"`: the space before the quote made the csv module read the quote as text and split
    # the field at its comma ("expected 3 fields separated by ',', got 4")
    path = tmp_path / "places.csv"
    path.write_text('head, relation, tail\n"Paris, TX", located_in, "Texas, USA"\nAustin,  capital_of,   Texas\n',
                    encoding="utf-8")
    assert list(read_triples(path)) == [RawTriple("Paris, TX", "located_in", "Texas, USA", "places.csv", 2),
                                        RawTriple("Austin", "capital_of", "Texas", "places.csv", 3)]


def test_a_file_name_that_is_not_utf8_is_recorded_with_replacement_characters(tmp_path: Path) -> None:
    # a Latin-1 file name (bytes Python keeps as surrogates) went into the provenance as is, and the
    # store failed writing it: "UnicodeEncodeError: 'utf-8' codec can't encode character '\udce9'"
    triples = tmp_path / os.fsdecode(b"caf\xe9.tsv")
    triples.write_text("Paris\tcapital_of\tFrance\n", encoding="utf-8")
    document = tmp_path / os.fsdecode(b"notes \xe9t\xe9.txt")
    document.write_text("Paris is the capital of France.\n", encoding="utf-8")
    assert list(read_triples(triples)) == [RawTriple("Paris", "capital_of", "France", "caf\ufffd.tsv", 1)]
    [chunk] = read_documents(document)
    assert (chunk.source, chunk.id) == ("notes \ufffdt\ufffd.txt", "notes \ufffdt\ufffd.txt#0")
