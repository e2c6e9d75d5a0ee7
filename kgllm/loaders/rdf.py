"""RDF readers over rdflib: N-Triples streamed line by line, Turtle parsed whole.

Ids are the IRIs (full, as written) or, for literal objects, the literal's lexical form; blank
nodes become ``_:label`` with the label written in the file, and Turtle's anonymous ones (``[ ... ]``,
collections) ``_:[1]``, ``_:[2]``... in the order the file gives them, so ids are stable across loads.
Label literals (``rdfs:label``, ``skos:prefLabel``, ``schema:name``, ``foaf:name``) are not yielded as
edges: they become display names, collected into the ``names`` dict the caller passes (English or
untagged labels win over other languages; among equals the first seen wins). Relations are the
predicate IRIs; a pack's ``relation_text`` gives them readable text.

N-Triples is parsed one line at a time with rdflib's own parser, so memory stays flat for any
file size. Turtle has no line structure to stream on (statements span lines, prefixes apply to
the whole file), so it is parsed whole (rdflib's Turtle parser, into a list of rows rather than a
graph): use N-Triples for large files. A Turtle triple's line is the line its object ends on.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path

from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import FOAF, RDFS, SKOS
from rdflib.plugins.parsers.notation3 import BadSyntax, RDFSink, SinkParser
from rdflib.plugins.parsers.ntriples import ParseError, W3CNTriplesParser
from rdflib.term import Node

from kgllm.exceptions import LoadError
from kgllm.loaders._io import check_file, iter_lines, read_bytes, shorten
from kgllm.loaders.names import local_name
from kgllm.stores.base import RawTriple

__all__ = ["LABEL_PREDICATES", "iter_ntriples", "iter_turtle", "read_rdf_names", "local_name"]

LABEL_PREDICATES: frozenset[str] = frozenset({
    str(RDFS.label), str(SKOS.prefLabel), str(FOAF.name),
    "http://schema.org/name", "https://schema.org/name",
})


def _term_id(term: Node) -> str:
    if isinstance(term, BNode):
        return f"_:{term}"
    return str(term)  # URIRef: the IRI; Literal: its lexical form


class _Labels:
    """Collects display names into ``names`` with the language preference described above."""

    def __init__(self, names: MutableMapping[str, str], local_names: bool) -> None:
        self.names = names
        self.local_names = local_names
        self._rank: dict[str, int] = {}  # 0 English/untagged label, 1 other label, 2 local name

    def label(self, subject: str, literal: Literal) -> None:
        lang = (literal.language or "en").lower()
        rank = 0 if lang == "en" or lang.startswith("en-") else 1
        if rank < self._rank.get(subject, 3):
            self.names[subject] = str(literal)
            self._rank[subject] = rank

    def seen(self, term: Node, ident: str) -> None:
        if self.local_names and isinstance(term, URIRef) and ident not in self._rank:
            self.names[ident] = local_name(ident)
            self._rank[ident] = 2


class _LastTriple:
    """An rdflib sink keeping only the triple just parsed."""

    __slots__ = ("triple_",)

    def __init__(self) -> None:
        self.triple_: tuple[Node, Node, Node] | None = None

    def triple(self, s: Node, p: Node, o: Node) -> None:
        self.triple_ = (s, p, o)


class _StableBNodes(dict):  # type: ignore[type-arg]
    """A bnode context that maps each ``_:label`` to ``BNode(label)`` instead of a random id."""

    def get(self, key, default=None):  # type: ignore[no-untyped-def]
        return key


def iter_ntriples(path: Path, *, source: str, names: MutableMapping[str, str], encoding: str = "utf-8",
                  local_names: bool = True) -> Iterator[RawTriple]:
    """Stream an N-Triples file as :class:`RawTriple` rows, one line at a time.

    Raises:
        LoadError: a line that is not a valid N-Triples statement (file, line, the line's text).
    """
    sink = _LastTriple()
    parser = W3CNTriplesParser(sink=sink)  # type: ignore[arg-type]
    bnodes = _StableBNodes()
    labels = _Labels(names, local_names)
    empty = True
    for number, text in iter_lines(path, encoding=encoding):
        parser.line = text
        try:
            parser.parseline(bnode_context=bnodes)
        except ParseError as exc:
            raise LoadError(f"invalid N-Triples statement {_nt_problem(str(exc), text, parser.line)}", path=path,
                            line=number, value=shorten(text)) from None
        if sink.triple_ is None:  # blank line or comment
            continue
        s, p, o = sink.triple_
        sink.triple_ = None
        empty = False
        row = _row(s, p, o, labels, source, number)
        if row is not None:
            yield row
    if empty:
        raise LoadError("no triples found (only blank lines or comments)", path=path)


def _nt_problem(reason: str, text: str, rest: object) -> str:
    """Where and why rdflib stopped reading an N-Triples line, in words (not its regular expressions)."""
    rest = rest if isinstance(rest, str) else ""
    column = len(text) - len(rest) + 1
    if reason.startswith("Failed to eat"):  # "Failed to eat <regex> at <rest>"
        if not rest.strip():
            return f"(column {column}: the line ends before the statement does; it must end with ' .')"
        if rest.startswith("<") and ":" not in rest.split(">", 1)[0]:
            return f"(column {column}: a relative IRI; N-Triples needs absolute ones such as <http://...>)"
        return f"(column {column}: cannot read {shorten(rest, 40)!r})"
    return f"(column {column}: {reason})"


def _row(s: Node, p: Node, o: Node, labels: _Labels, source: str, line: int | None) -> RawTriple | None:
    head = _term_id(s)
    labels.seen(s, head)
    if str(p) in LABEL_PREDICATES and isinstance(o, Literal):
        labels.label(head, o)
        return None
    tail = _term_id(o)
    labels.seen(o, tail)
    return RawTriple(head, str(p), tail, source, line)


class _TurtleRows(RDFSink):
    """An rdflib Turtle sink keeping each triple with the line the parser is on (its object's last line),
    naming anonymous blank nodes ``[1]``, ``[2]``... in document order instead of by a random id."""

    def __init__(self) -> None:
        super().__init__(Graph())
        self.rows: list[tuple[Node, Node, Node, int]] = []
        self.parser: SinkParser | None = None
        self._anonymous = 0

    def newBlankNode(self, arg=None, uri=None, why=None) -> BNode:  # type: ignore[no-untyped-def]
        self._anonymous += 1
        return BNode(f"[{self._anonymous}]")

    def makeStatement(self, quadruple, why=None) -> None:  # type: ignore[no-untyped-def]
        f, p, s, o = quadruple
        line = self.parser.lines + 1 if self.parser is not None else 0
        self.rows.append((self.normalise(f, s), self.normalise(f, p), self.normalise(f, o), line))


class _TurtleParser(SinkParser):
    """rdflib's Turtle parser, keeping a blank node's label as written (``_:x`` is ``BNode("x")``)."""

    def anonymousNode(self, ln: str) -> BNode:
        return BNode(ln)


def iter_turtle(path: Path, *, source: str, names: MutableMapping[str, str], encoding: str = "utf-8",
                local_names: bool = True) -> Iterator[RawTriple]:
    """The triples of a Turtle file (parsed whole by rdflib), in file order, each with the line its
    object ends on.

    Raises:
        LoadError: a syntax error, naming the 1-based line and the text of that line.
    """
    data = read_bytes(path)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data.split(b"\n")[line - 1].rstrip(b"\r").decode(encoding, errors="replace")
        raise LoadError(f"not valid {encoding} text ({exc.reason})", path=path, line=line,
                        value=shorten(bad)) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark, as the line-based readers drop it
    sink = _TurtleRows()
    sink.parser = _TurtleParser(sink, baseURI=path.resolve().as_uri(), turtle=True)
    try:
        sink.parser.loadBuf(text)
    except BadSyntax as exc:
        # BadSyntax keeps the failing offset, a character index into ``text`` (not a byte offset: counting
        # in the encoded bytes named an earlier line after non-ASCII text); count lines up to it ourselves.
        offset = getattr(exc, "_i", 0)
        line = text[:offset].count("\n") + 1 if offset else getattr(exc, "lines", 0) + 1
        lines = text.split("\n")
        bad = lines[line - 1].rstrip("\r") if line - 1 < len(lines) else ""
        raise LoadError(f"invalid Turtle ({getattr(exc, '_why', exc)})", path=path, line=line,
                        value=shorten(bad)) from None
    if not sink.rows:
        raise LoadError("no triples found", path=path)
    labels = _Labels(names, local_names)
    for s, p, o, line in sink.rows:
        row = _row(s, p, o, labels, source, line)
        if row is not None:
            yield row


def read_rdf_names(path: str | Path, format: str | None = None, *, local_names: bool = False) -> dict[str, str]:
    """Display names from the label literals of an RDF file (``nt`` or ``ttl``; inferred when ``None``).

    Args:
        path: the RDF file.
        format: ``"nt"`` or ``"ttl"``.
        local_names: also name unlabelled IRIs by their local part.

    Returns:
        ``{entity id: name}``.
    """
    from kgllm.loaders.triples import read_triples

    reader = read_triples(check_file(path), format, local_names=local_names)
    if reader.format not in ("nt", "ttl"):
        raise LoadError(f"not an RDF file (format {reader.format!r}); expected nt or ttl", path=path)
    for _ in reader:
        pass
    return reader.names
