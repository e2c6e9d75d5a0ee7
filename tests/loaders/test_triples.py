"""Triple readers on small real files: every format, format inference, every bad-input case, streaming."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from collections import deque
from pathlib import Path

import pytest

from kgllm.exceptions import LoadError
from kgllm.loaders import FORMATS, TripleReader, infer_format, read_names, read_rdf_names, read_triples
from kgllm.stores.base import RawTriple


@pytest.fixture
def fx(fixtures_dir: Path) -> Path:
    return fixtures_dir / "loaders"


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


# -- formats ----------------------------------------------------------------------------------------


def test_pipe_metaqa_keeps_titles_with_commas(fx: Path) -> None:
    rows = list(read_triples(fx / "metaqa_kb.txt"))
    assert len(rows) == 17
    assert rows[0] == RawTriple("Kismet", "directed_by", "William Dieterle", "metaqa_kb.txt", 1)
    assert rows[12] == RawTriple("Sleep, My Love", "directed_by", "Douglas Sirk", "metaqa_kb.txt", 13)
    assert {r.relation for r in rows} >= {"directed_by", "written_by", "starred_actors", "release_year"}


def test_tsv_countries(fx: Path) -> None:
    rows = list(read_triples(fx / "countries.tsv"))
    assert len(rows) == 15
    assert rows[0][:3] == ("western_africa", "locatedin", "africa")
    assert rows[1][:3] == ("slovakia", "neighbor", "ukraine")
    assert [r.line for r in rows] == list(range(1, 16))


def test_tsv_conceptnet_relation_first(fx: Path) -> None:
    rows = list(read_triples(fx / "cn100k.tsv", order="rht"))
    assert rows[0][:3] == ("hockey", "ReceivesAction", "play on ice")
    assert rows[1][:3] == ("restroom", "AtLocation", "rest area")
    # Without the order the relation would be read as the head.
    assert next(read_triples(fx / "cn100k.tsv"))[:3] == ("ReceivesAction", "hockey", "play on ice")


def test_csv_quoted_fields_and_header(fx: Path) -> None:
    rows = list(read_triples(fx / "metaqa_kb.csv"))
    assert len(rows) == 17  # the header row is recognised and skipped
    assert rows[0] == RawTriple("Kismet", "directed_by", "William Dieterle", "metaqa_kb.csv", 2)
    assert rows[-1][:3] == ("Sleep, My Love", "release_year", "1948")
    assert rows == [r._replace(source="metaqa_kb.csv", line=r.line + 1) for r in read_triples(fx / "metaqa_kb.txt")]


def test_csv_header_gives_column_order(tmp_path: Path) -> None:
    path = _write(tmp_path / "cn.csv", "relation,head,tail\nAtLocation,restroom,rest area\n")
    assert list(read_triples(path)) == [RawTriple("restroom", "AtLocation", "rest area", "cn.csv", 2)]


def test_csv_quoted_newline_in_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "kb.csv", 'a,says,"two\nlines"\nb,r,c\n')
    rows = list(read_triples(path))
    assert rows[0][:3] == ("a", "says", "two\nlines")
    assert rows[1] == RawTriple("b", "r", "c", "kb.csv", 3)


def test_jsonl_all_key_styles(fx: Path) -> None:
    rows = list(read_triples(fx / "umls.jsonl"))
    assert len(rows) == 12
    assert rows[0][:3] == ("acquired_abnormality", "location_of", "experimental_model_of_disease")
    assert rows[1][:3] == ("anatomical_abnormality", "manifestation_of", "physiologic_function")  # h/r/t
    assert rows[2][:3] == ("alga", "isa", "entity")  # subject/predicate/object
    assert rows[2].line == 3


def test_jsonl_numbers_become_strings(tmp_path: Path) -> None:
    path = _write(tmp_path / "y.jsonl", '{"head": "Kismet", "relation": "release_year", "tail": 1944}\n')
    assert next(read_triples(path))[:3] == ("Kismet", "release_year", "1944")


def test_ntriples_labels_literals_and_blank_nodes(fx: Path) -> None:
    reader = read_triples(fx / "films.nt")
    rows = list(reader)
    kismet = "http://example.org/movies/Kismet"
    assert rows[0] == RawTriple(kismet, "http://example.org/movies/rel/directed_by",
                                "http://example.org/movies/William_Dieterle", "films.nt", 2)
    assert (kismet, "http://example.org/movies/rel/release_year", "1944") in {r[:3] for r in rows}
    assert not any(r.relation.endswith("rdf-schema#label") for r in rows)  # labels are names, not edges
    assert reader.names[kismet] == "Kismet"
    assert reader.names["http://example.org/movies/Sleep%2C_My_Love"] == "Sleep, My Love"
    assert rows[-1][:3] == ("_:remake", "http://example.org/movies/rel/remake_of", kismet)
    assert reader.count == len(rows) == 17 + 1


def test_ntriples_stable_blank_node_ids(fx: Path) -> None:
    assert list(read_triples(fx / "films.nt"))[-1].head == list(read_triples(fx / "films.nt"))[-1].head == "_:remake"


def test_turtle_labels_and_language_preference(fx: Path) -> None:
    reader = read_triples(fx / "films.ttl")
    rows = {r[:3] for r in reader}
    m = "http://example.org/movies/"
    assert (m + "Kismet", m + "rel/directed_by", m + "William_Dieterle") in rows
    assert (m + "Kismet", m + "rel/release_year", "1944") in rows
    assert len(rows) == 6
    assert reader.names[m + "Kismet"] == "Kismet"
    assert reader.names[m + "William_Dieterle"] == "William Dieterle"  # schema:name
    assert reader.names[m + "Marlene_Dietrich"] == "Marlene Dietrich"  # English label wins over German
    assert reader.names[m + "Douglas_Sirk"] == "Douglas Sirk"  # unlabelled: local name
    rows = list(read_triples(fx / "films.ttl"))  # each with the line its object ends on
    assert all(r.source == "films.ttl" for r in rows)
    assert [(r.tail.rsplit("/", 1)[-1], r.line) for r in rows] == [
        ("William_Dieterle", 9), ("Edward_Knoblock", 10), ("Marlene_Dietrich", 11), ("Ronald_Colman", 11),
        ("1944", 12), ("Douglas_Sirk", 17)]


def test_turtle_blank_nodes_have_stable_ids(tmp_path: Path) -> None:
    # they used to be rdflib's random ids: every load of the same file added its blank-node triples again
    path = _write(tmp_path / "b.ttl", '@prefix ex: <http://ex.org/> .\n_:x ex:p ex:o .\n'
                                      'ex:a ex:q [ ex:r ex:s ] ;\n   ex:list ( ex:t ) .\n')
    rows = [r[:3] + (r.line,) for r in read_triples(path)]
    assert rows == [r[:3] + (r.line,) for r in read_triples(path)]
    rdf = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
    assert rows == [("_:x", "http://ex.org/p", "http://ex.org/o", 2),
                    ("_:[1]", "http://ex.org/r", "http://ex.org/s", 3),
                    ("http://ex.org/a", "http://ex.org/q", "_:[1]", 3),
                    ("_:[2]", rdf + "first", "http://ex.org/t", 4), ("_:[2]", rdf + "rest", rdf + "nil", 4),
                    ("http://ex.org/a", "http://ex.org/list", "_:[2]", 4)]


def test_read_rdf_names_labels_only(fx: Path) -> None:
    names = read_rdf_names(fx / "films.ttl")
    assert names["http://example.org/movies/Sleep_My_Love"] == "Sleep, My Love"
    assert "http://example.org/movies/Douglas_Sirk" not in names
    assert len(read_rdf_names(fx / "films.nt")) == 18  # one label line per named entity


def test_gzip_and_custom_source(fx: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "kb.txt.gz", gzip.compress((fx / "metaqa_kb.txt").read_bytes()))
    rows = list(read_triples(path, source="metaqa"))
    assert len(rows) == 17 and rows[0].source == "metaqa" and rows[0].head == "Kismet"


def test_infer_format(fx: Path, tmp_path: Path) -> None:
    assert infer_format(fx / "metaqa_kb.txt") == "pipe"
    assert infer_format(fx / "countries.tsv") == "tsv"
    assert infer_format(_write(tmp_path / "train.txt", "\nslovakia\tneighbor\tukraine\n")) == "tsv"
    assert [infer_format(fx / n) for n in ("metaqa_kb.csv", "umls.jsonl", "films.nt", "films.ttl")] == \
        ["csv", "jsonl", "nt", "ttl"]
    with pytest.raises(LoadError, match=r"kb\.xml: cannot infer .*'\.xml'.*tsv, csv, jsonl, pipe, nt, ttl"):
        infer_format(_write(tmp_path / "kb.xml", "<a/>"))
    with pytest.raises(LoadError, match=r"without tabs or '\|'"):
        infer_format(_write(tmp_path / "plain.txt", "just words\n"))


def test_read_names(tmp_path: Path) -> None:
    path = _write(tmp_path / "names.tsv", "western_africa\tWestern Africa\n\nfrance\tFrance\n")
    assert read_names(path) == {"western_africa": "Western Africa", "france": "France"}
    with pytest.raises(LoadError, match=r"names\.tsv line 2: expected 'id<TAB>name', got 1"):
        read_names(_write(tmp_path / "names.tsv", "a\tA\nb\n"))


# -- bad input ----------------------------------------------------------------------------------------


def test_wrong_field_count_message_names_file_line_and_value(tmp_path: Path) -> None:
    path = _write(tmp_path / "kb.txt", "Kismet|written_by|Edward Knoblock\n" * 1041 + "Kismet|directed_by\n")
    with pytest.raises(LoadError) as err:
        list(read_triples(path, "pipe"))
    assert str(err.value) == (f"{path} line 1042: expected 3 fields separated by '|', got 2: "
                              "'Kismet|directed_by'")
    assert (err.value.line, err.value.value, err.value.path) == (1042, "Kismet|directed_by", str(path))


def test_too_many_fields_tsv(fx: Path, tmp_path: Path) -> None:
    # CN-100K's labelled dev files have a 4th column.
    path = _write(tmp_path / "dev1.txt", "IsA\ttool\tobject\t1\n")
    with pytest.raises(LoadError, match=r"dev1\.txt line 1: expected 3 fields separated by '\\t', got 4"):
        list(read_triples(path, order="rht"))


@pytest.mark.parametrize("fmt,text,message", [
    ("tsv", "a\tr\tb\n\t r\tc\n", r"line 2: empty head field: '\\t r\\tc'"),
    ("pipe", "a|r|b\na||c\n", r"line 2: empty relation field: 'a\|\|c'"),
    ("rht", "IsA\ttool\tobject\nIsA\t\tobject\n", r"line 2: empty head field"),
    ("csv", 'a,r,b\na,r," "\n', r"line 2: empty tail field"),
    ("jsonl", '{"head": "a", "relation": "r", "tail": ""}\n', r"line 1: empty 'tail' field"),
])
def test_empty_field(tmp_path: Path, fmt: str, text: str, message: str) -> None:
    order = "rht" if fmt == "rht" else None
    fmt = "tsv" if fmt == "rht" else fmt
    with pytest.raises(LoadError, match=message):
        list(read_triples(_write(tmp_path / f"kb.{fmt}", text), fmt, order=order))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"nope\.tsv: file not found") as err:
        read_triples(tmp_path / "nope.tsv")  # raised at once, not on iteration
    assert isinstance(err.value, ValueError)


def test_empty_file_and_blank_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"empty\.tsv: file is empty"):
        read_triples(_write(tmp_path / "empty.tsv", ""))
    with pytest.raises(LoadError, match=r"blank\.tsv: no triples found"):
        list(read_triples(_write(tmp_path / "blank.tsv", "\n  \n")))
    with pytest.raises(LoadError, match=r"header\.csv: no triples found"):
        list(read_triples(_write(tmp_path / "header.csv", "head,relation,tail\n")))


@pytest.mark.parametrize("fmt", ["pipe", "tsv", "jsonl", "nt", "csv"])
def test_bad_encoding_names_the_line(tmp_path: Path, fmt: str) -> None:
    good = {"pipe": "a|r|b", "tsv": "a\tr\tb", "csv": "a,r,b", "jsonl": '{"h": "a", "r": "r", "t": "b"}',
            "nt": "<http://x/a> <http://x/r> <http://x/b> ."}[fmt]
    data = (good + "\n").encode() * 2 + "Am\u00e9lie|r|b\n".encode("latin-1")
    with pytest.raises(LoadError, match=r"line 3: not valid utf-8 text \(invalid continuation byte at byte 2\)") as err:
        list(read_triples(_write(tmp_path / f"kb.{fmt}", data), fmt))
    assert err.value.line == 3 and err.value.value == "Am\ufffdlie|r|b"


def test_bad_encoding_turtle(tmp_path: Path) -> None:
    data = b"@prefix m: <http://x/> .\nm:a m:r \"caf\xe9\" .\n"
    with pytest.raises(LoadError, match=r"kb\.ttl line 2: not valid utf-8"):
        list(read_triples(_write(tmp_path / "kb.ttl", data)))


def test_ntriples_syntax_error(fx: Path, tmp_path: Path) -> None:
    lines = (fx / "films.nt").read_text().splitlines()
    lines.insert(5, "<http://example.org/movies/Kismet> <http://example.org/movies/rel/directed_by> Dieterle .")
    path = _write(tmp_path / "films.nt", "\n".join(lines) + "\n")
    reader = read_triples(path)
    with pytest.raises(LoadError, match=r"films\.nt line 6: invalid N-Triples statement \(column 80: Unrecognised "
                                        r"object type\): '<http://example.org/movies/Kismet> .*Dieterle \.'"):
        list(reader)
    assert reader.count == 4  # four statements (after the comment) were read before the bad line


@pytest.mark.parametrize("line, problem", [  # they used to quote rdflib's regular expressions
    ('<http://x/a> <http://x/r> "open .', "column 27: cannot read '\"open .'"),
    ("<http://x/a> <http://x/r> <http://x/b>", "column 39: the line ends before the statement does; it must "
                                               "end with ' .'"),
    ("<a> <r> <b> .", "column 1: a relative IRI; N-Triples needs absolute ones such as <http://...>"),
])
def test_ntriples_syntax_error_says_where_and_why(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path / "kb.nt", "<http://x/a> <http://x/r> <http://x/c> .\n" + line + "\n")
    with pytest.raises(LoadError) as err:
        list(read_triples(path))
    assert str(err.value) == f"{path} line 2: invalid N-Triples statement ({problem}): {line!r}"


def test_turtle_syntax_error(fx: Path, tmp_path: Path) -> None:
    text = (fx / "films.ttl").read_text().replace("rel:written_by m:Edward_Knoblock ;",
                                                   "rel:written_by m:Edward Knoblock ;")
    with pytest.raises(LoadError, match=r"films\.ttl line 10: invalid Turtle .*'    rel:written_by m:Edward Knoblock ;'"):
        list(read_triples(_write(tmp_path / "films.ttl", text)))


def test_jsonl_errors(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"kb\.jsonl line 2: invalid JSON \(Expecting"):
        list(read_triples(_write(tmp_path / "kb.jsonl", '{"h": "a", "r": "r", "t": "b"}\n{"h": "a",\n')))
    with pytest.raises(LoadError, match=r"line 1: expected keys head/relation/tail or h/r/t or subject/predicate/object"):
        list(read_triples(_write(tmp_path / "kb.jsonl", '{"head": "a", "rel": "r", "tail": "b"}\n')))
    with pytest.raises(LoadError, match=r"line 1: expected a JSON object, got list"):
        list(read_triples(_write(tmp_path / "kb.jsonl", '["a", "r", "b"]\n')))
    with pytest.raises(LoadError, match=r"field 'tail' must be a string, got dict"):
        list(read_triples(_write(tmp_path / "kb.jsonl", '{"head": "a", "relation": "r", "tail": {}}\n')))


def test_malformed_csv(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"kb\.csv line 2: malformed CSV"):
        list(read_triples(_write(tmp_path / "kb.csv", 'a,r,b\na,"r"x,b\n')))


def test_csv_quote_never_closed_names_the_line_it_opens_on(tmp_path: Path) -> None:
    # it used to name the file's last line ("unexpected end of data") and quote every line after the quote
    text = 'a,r,b\n"c,r,d\n' + "e,r,f\n" * 1000
    with pytest.raises(LoadError) as err:
        list(read_triples(_write(tmp_path / "kb.csv", text)))
    assert str(err.value) == (f"{tmp_path / 'kb.csv'} line 2: malformed CSV (a quoted field opened on line 2 is "
                              "never closed): '\"c,r,d'")
    text = 'a,r,b\n"c,r,d\n' + "e,r,f\n" * 30_000  # long enough to outgrow the csv module's field limit
    with pytest.raises(LoadError, match=r"kb\.csv line 2: malformed CSV \(a quoted field opened on line 2 is not "
                                        r"closed by line 2\d{4}; field larger than field limit .*'\"c,r,d'$"):
        list(read_triples(_write(tmp_path / "kb.csv", text)))


def test_unknown_format_and_bad_order(fx: Path) -> None:
    with pytest.raises(LoadError, match=r"unknown triple format 'xml'; choose one of tsv, csv, jsonl, pipe, nt, ttl"):
        read_triples(fx / "countries.tsv", "xml")
    with pytest.raises(LoadError, match=r"permutation of 'hrt'.*'hrx'"):
        read_triples(fx / "countries.tsv", order="hrx")
    with pytest.raises(LoadError, match=r"order= applies to delimited formats"):
        read_triples(fx / "films.nt", order="rht")
    assert set(FORMATS) == {"tsv", "csv", "jsonl", "pipe", "nt", "ttl"}


# -- streaming -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_pipe_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "kb.txt"
    with path.open("w") as handle:
        for i in range(200_000):
            handle.write(f"Film {i}|directed_by|Director {i % 5000}\n")
    return path


def test_streaming_reads_lazily(big_pipe_file: Path) -> None:
    assert big_pipe_file.stat().st_size > 6_000_000
    tracemalloc.start()
    try:
        start = time.perf_counter()
        reader = read_triples(big_pipe_file)
        first = [next(reader) for _ in range(10)]
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first[9] == RawTriple("Film 9", "directed_by", "Director 9", "kb.txt", 10)
    assert elapsed < 0.5  # reading the whole file first would take far longer on a loaded machine
    assert peak < 1_000_000  # a few buffers, not the 6 MB file or 200k rows
    assert reader.count == 10


def test_streaming_reads_everything(big_pipe_file: Path) -> None:
    reader = read_triples(big_pipe_file)
    (last,) = deque(reader, maxlen=1)  # consumes the stream without keeping it
    assert reader.count == 200_000
    assert last == RawTriple("Film 199999", "directed_by", "Director 4999", "kb.txt", 200_000)


def test_ntriples_streams(tmp_path: Path) -> None:
    path = tmp_path / "big.nt"
    with path.open("w") as handle:
        for i in range(200_000):
            handle.write(f"<http://x/film{i}> <http://x/directed_by> <http://x/person{i % 5000}> .\n")
    tracemalloc.start()
    try:
        reader = read_triples(path)
        rows = [next(reader) for _ in range(100)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows[99] == RawTriple("http://x/film99", "http://x/directed_by", "http://x/person99", "big.nt", 100)
    assert peak < 2_000_000
    assert isinstance(reader, TripleReader)
