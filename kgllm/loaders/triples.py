"""Streaming triple readers: tsv, csv, jsonl, MetaQA pipes, and (through :mod:`kgllm.loaders.rdf`) nt/ttl.

Every reader yields :class:`~kgllm.stores.base.RawTriple` rows carrying the source file name and the
1-based line, one line at a time, so a file of any size streams in constant memory (Turtle is the
one exception: rdflib parses it whole). Bad input raises :class:`~kgllm.exceptions.LoadError`
naming the file, the line and the offending text::

    LoadError: kb.txt line 1042: expected 3 fields separated by '|', got 2: 'Kismet|directed_by'

Delimited fields are stripped of surrounding whitespace; ids otherwise keep their spelling.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from kgllm.exceptions import LoadError
from kgllm.loaders._io import check_file, iter_json_objects, iter_lines, shorten, source_name, suffixes
from kgllm.stores.base import RawTriple

__all__ = ["FORMATS", "TripleFormat", "TripleReader", "read_triples", "infer_format", "read_names"]

TripleFormat = Literal["tsv", "csv", "jsonl", "pipe", "nt", "ttl"]
FORMATS: tuple[str, ...] = ("tsv", "csv", "jsonl", "pipe", "nt", "ttl")

_SUFFIXES = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".nt": "nt", ".ttl": "ttl", ".turtle": "ttl"}
_SEPARATORS = {"tsv": "\t", "pipe": "|", "csv": ","}
# Header rows recognised (case-insensitively) in delimited files; they also give the column order.
_HEADER_WORDS = {"head": "h", "relation": "r", "tail": "t", "subject": "h", "predicate": "r",
                 "object": "t", "h": "h", "r": "r", "t": "t", "rel": "r", "source": "h", "target": "t"}
_JSON_KEYS = (("head", "relation", "tail"), ("h", "r", "t"), ("subject", "predicate", "object"))
_ROLE = {"h": "head", "r": "relation", "t": "tail"}


def infer_format(path: str | Path) -> str:
    """The triple format of ``path`` from its suffix (``.gz`` is looked through).

    ``.txt`` files are sniffed: a tab in the first non-blank line means tsv, a ``|`` means pipe
    (MetaQA's ``kb.txt``).

    Raises:
        LoadError: the suffix is unknown or a ``.txt`` file is neither (lists the formats).
    """
    p = Path(path)
    suffix = suffixes(p)
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if suffix == ".txt":
        for _, text in iter_lines(check_file(p)):
            if text.strip():
                if "\t" in text:
                    return "tsv"
                if "|" in text:
                    return "pipe"
                break
        raise LoadError(f"cannot tell the triple format of a .txt file without tabs or '|'; "
                        f"pass format= one of {', '.join(FORMATS)}", path=p)
    raise LoadError(f"cannot infer the triple format from suffix {suffix or '(none)'!r}; "
                    f"known suffixes: {', '.join(sorted(_SUFFIXES))}, .txt; "
                    f"or pass format= one of {', '.join(FORMATS)}", path=p)


def _check_order(order: str) -> str:
    if sorted(order) != ["h", "r", "t"]:
        raise LoadError(f"column order must be a permutation of 'hrt' (e.g. 'hrt', 'rht'), got {order!r}")
    return order


class TripleReader(Iterator[RawTriple]):
    """An iterator over the triples of one file, with the display names it found (RDF labels).

    The file is checked when the reader is made (missing or empty file, unknown format) and read
    lazily, line by line, as it is iterated; it can be iterated once.

    Args:
        path: the file (``.gz`` allowed).
        format: one of :data:`FORMATS`; inferred from the suffix when ``None``.
        order: column order of delimited formats, a permutation of ``"hrt"`` (ConceptNet CN-100K is
            ``"rht"``). ``None`` means the order a recognised header row gives, else ``"hrt"``.
        source: the name recorded in each triple's provenance (default: the file name, bytes that are
            not UTF-8 replaced by U+FFFD).
        header: delimited formats only: ``True`` skips the first row, ``False`` never skips,
            ``None`` skips it when it names the columns (``head,relation,tail`` and the like).
        encoding: text encoding of the file.
        local_names: RDF only: name IRIs without a label by their local part (``.../Paris`` -> ``Paris``).

    Attributes:
        names: ``{entity id: display name}`` from ``rdfs:label``/``schema:name``/``skos:prefLabel``
            literals (RDF formats); complete once iteration has finished. It grows with the number
            of named entities (all IRIs with ``local_names``): the triples stream, the names do not.
        count: triples yielded so far.
    """

    def __init__(self, path: str | Path, format: str | None = None, *, order: str | None = None,
                 source: str | None = None, header: bool | None = None, encoding: str = "utf-8",
                 local_names: bool = True) -> None:
        self.path = check_file(path)
        if format is None:
            format = infer_format(self.path)
        if format not in FORMATS:
            raise LoadError(f"unknown triple format {format!r}; choose one of {', '.join(FORMATS)}",
                            path=self.path)
        if order is not None:
            _check_order(order)
            if format not in _SEPARATORS:
                raise LoadError(f"order= applies to delimited formats (tsv, csv, pipe), not {format!r}",
                                path=self.path)
        self.format = format
        self.order = order
        self.header = header
        self.encoding = encoding
        self.local_names = local_names
        self.source = source if source is not None else source_name(self.path.name)
        self.names: dict[str, str] = {}
        self.count = 0
        self._rows: Iterator[RawTriple] | None = None

    def __iter__(self) -> TripleReader:
        return self

    def __next__(self) -> RawTriple:
        if self._rows is None:
            self._rows = self._open()
        row = next(self._rows)
        self.count += 1
        return row

    def __repr__(self) -> str:
        return f"TripleReader({str(self.path)!r}, format={self.format!r}, read={self.count})"

    def _open(self) -> Iterator[RawTriple]:
        if self.format in ("nt", "ttl"):
            from kgllm.loaders import rdf  # rdflib is imported only when RDF is read

            reader = rdf.iter_ntriples if self.format == "nt" else rdf.iter_turtle
            return reader(self.path, source=self.source, names=self.names, encoding=self.encoding,
                          local_names=self.local_names)
        if self.format == "jsonl":
            return self._jsonl()
        return self._delimited()

    # -- delimited: tsv, pipe, csv -------------------------------------------------------------

    def _rows_of(self) -> Iterator[tuple[int, list[str], str]]:
        """(line, fields, raw text) per non-blank row."""
        lines = iter_lines(self.path, encoding=self.encoding)
        if self.format == "csv":
            # The csv module handles quoting (commas and newlines inside quoted fields); ``pending``
            # keeps the raw lines of the record being read, to quote them in errors.
            pending: list[str] = []

            def feed() -> Iterator[str]:
                for _, text in lines:
                    pending.append(text)
                    yield text + "\n"

            # skipinitialspace: `a, "b, c", d` quotes its second field (fields are stripped anyway)
            reader = csv.reader(feed(), strict=True, skipinitialspace=True)
            start = 1
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    # A quote left open runs to the end of the file, or until the field outgrows the csv
                    # module's limit: name the line it opened on, not the line where reading gave up.
                    if str(exc) == "unexpected end of data":
                        raise LoadError(f"malformed CSV (a quoted field opened on line {start} is never closed)",
                                        path=self.path, line=start, value=shorten(pending[0])) from None
                    if str(exc).startswith("field larger than field limit") and reader.line_num > start:
                        raise LoadError(f"malformed CSV (a quoted field opened on line {start} is not closed by "
                                        f"line {reader.line_num}; {exc})", path=self.path, line=start,
                                        value=shorten(pending[0])) from None
                    raise LoadError(f"malformed CSV ({exc})", path=self.path, line=reader.line_num,
                                    value=shorten("\n".join(pending))) from None
                if fields:
                    yield start, fields, "\n".join(pending)
                pending.clear()
                start = reader.line_num + 1
        else:
            sep = _SEPARATORS[self.format]
            for number, text in lines:
                if text.strip():
                    yield number, text.split(sep), text

    def _delimited(self) -> Iterator[RawTriple]:
        sep = _SEPARATORS[self.format]
        path, source = self.path, self.source
        rows = self._rows_of()
        order = self.order
        first: RawTriple | None = None
        for number, fields, text in rows:  # the first row: data, or a header naming the columns
            self._check_count(fields, number, text, sep)
            fields = [f.strip() for f in fields]
            from_header = self._header_order(fields)
            order = order or from_header or "hrt"
            if from_header is None and not self.header:
                first = self._row(order.index("h"), order.index("r"), order.index("t"), fields, number, text)
            break
        if first is not None:
            yield first
        if order is None:
            raise LoadError("no triples found (only blank lines)", path=path)
        ih, ir, it = order.index("h"), order.index("r"), order.index("t")
        make = tuple.__new__  # RawTriple(...) without the NamedTuple keyword handling: ~2x faster
        empty = first is None
        # The hot loop: one split, three strips and a tuple per line.
        for number, fields, text in rows:
            if len(fields) != 3:
                self._check_count(fields, number, text, sep)
            head, relation, tail = fields[ih].strip(), fields[ir].strip(), fields[it].strip()
            if not (head and relation and tail):
                self._row(ih, ir, it, [f.strip() for f in fields], number, text)  # raises, naming the field
            empty = False
            yield make(RawTriple, (head, relation, tail, source, number))
        if empty:
            raise LoadError("no triples found (only blank lines or a header)", path=path)

    def _check_count(self, fields: list[str], number: int, text: str, sep: str) -> None:
        if len(fields) != 3:
            raise LoadError(f"expected 3 fields separated by {sep!r}, got {len(fields)}",
                            path=self.path, line=number, value=shorten(text))

    def _row(self, ih: int, ir: int, it: int, fields: list[str], number: int, text: str) -> RawTriple:
        """A checked row from stripped ``fields`` in file order; LoadError naming an empty field."""
        for role, index in (("h", ih), ("r", ir), ("t", it)):
            if not fields[index]:
                raise LoadError(f"empty {_ROLE[role]} field", path=self.path, line=number, value=shorten(text))
        return RawTriple(fields[ih], fields[ir], fields[it], self.source, number)

    def _header_order(self, fields: list[str]) -> str | None:
        """The column order a header row names, or ``None`` when the row is data."""
        if self.header is False:
            return None
        roles = [_HEADER_WORDS.get(f.lower()) for f in fields]
        if None not in roles and sorted(roles) == ["h", "r", "t"]:  # type: ignore[type-var]
            return "".join(roles)  # type: ignore[arg-type]
        return None

    # -- jsonl ----------------------------------------------------------------------------------

    def _jsonl(self) -> Iterator[RawTriple]:
        path, source = self.path, self.source
        empty = True
        for number, text, obj in iter_json_objects(path, encoding=self.encoding):
            keys = next((k for k in _JSON_KEYS if all(key in obj for key in k)), None)
            if keys is None:
                expected = " or ".join("/".join(k) for k in _JSON_KEYS)
                raise LoadError(f"expected keys {expected}", path=path, line=number, value=shorten(text))
            values = []
            for key in keys:
                value = obj[key]
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = str(value)  # e.g. a release year given as a number
                if not isinstance(value, str):
                    raise LoadError(f"field {key!r} must be a string, got {type(value).__name__}",
                                    path=path, line=number, value=shorten(text))
                value = value.strip()
                if not value:
                    raise LoadError(f"empty {key!r} field", path=path, line=number, value=shorten(text))
                values.append(value)
            empty = False
            yield RawTriple(values[0], values[1], values[2], source, number)
        if empty:
            raise LoadError("no triples found (only blank lines)", path=path)


def read_triples(path: str | Path, format: str | None = None, *, order: str | None = None,
                 source: str | None = None, header: bool | None = None, encoding: str = "utf-8",
                 local_names: bool = True) -> TripleReader:
    """Stream the triples of one file as :class:`RawTriple` rows (see :class:`TripleReader`).

    Example::

        reader = read_triples("kb.txt")                      # MetaQA pipes, inferred from content
        for head, relation, tail, source, line in reader: ...
        read_triples("train.txt", "tsv", order="rht")        # CN-100K: relation first
        reader = read_triples("films.nt"); triples = list(reader); reader.names  # RDF labels

    Args:
        path: the file.
        format: ``tsv``, ``csv``, ``jsonl``, ``pipe``, ``nt`` or ``ttl``; inferred when ``None``.
        order: column order for delimited formats (``"hrt"``, ``"rht"``, ...).
        source: provenance name for the rows (default: the file name).
        header: skip a header row (``None``: when it names the columns).
        encoding: text encoding.
        local_names: RDF only: also name unlabelled IRIs by their local part.

    Returns:
        A lazy iterator of triples that also exposes ``.names`` (RDF display names).

    Raises:
        LoadError: missing/empty file or unknown format at once; bad lines while iterating.
    """
    return TripleReader(path, format, order=order, source=source, header=header, encoding=encoding,
                        local_names=local_names)


def read_names(path: str | Path, *, encoding: str = "utf-8") -> dict[str, str]:
    """Display names from a two-column ``id<TAB>name`` file (a pack's ``names`` files).

    Raises:
        LoadError: a line without exactly two tab-separated, non-empty fields.
    """
    p = check_file(path)
    names: dict[str, str] = {}
    for number, text in iter_lines(p, encoding=encoding):
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split("\t")]
        if len(fields) != 2 or not all(fields):
            raise LoadError(f"expected 'id<TAB>name', got {len(fields)} field(s)", path=p, line=number,
                            value=shorten(text))
        names[fields[0]] = fields[1]
    return names
