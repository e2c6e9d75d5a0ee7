"""Documents (.txt / .md) cut into retrieval chunks that keep their provenance.

Two ways to chunk:

* ``"paragraph"`` (default): paragraphs (blank-line separated; in Markdown also every heading,
  list item and fenced code block) are packed into chunks of at most ``chunk_size`` characters.
  A paragraph that is too long is split at sentence ends, a sentence that is too long at spaces.
  Consecutive chunks share up to ``overlap`` characters of whole sentences/paragraphs, so a fact
  cut by a boundary is still whole in one chunk. In Markdown a heading always starts a new chunk.
* ``"line"``: one chunk per non-blank line, for fact lists such as OpenBookQA's ``openbook.txt``
  (one quoted fact per line; the surrounding quotes are removed).

Files are read line by line; only the paragraph being chunked is held in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Literal

from kgllm.exceptions import LoadError
from kgllm.loaders._io import check_file, iter_lines, source_name, suffixes
from kgllm.types import Chunk

__all__ = ["DocChunk", "Chunking", "CHUNKINGS", "DOCUMENT_SUFFIXES", "read_documents"]

Chunking = Literal["paragraph", "line"]
CHUNKINGS: tuple[str, ...] = ("paragraph", "line")
DOCUMENT_SUFFIXES: tuple[str, ...] = (".txt", ".md", ".markdown")

# A sentence ends at . ! ? (optionally followed by a closing quote/bracket) before whitespace and
# an upper-case letter, digit or opening quote; good enough for prose without an NLP model.
_SENTENCE_END = re.compile(r"(?<=[.!?])([\"')\]]?)\s+(?=[\"'(\[]?[A-Z0-9])")
# Chinese/Japanese full stops end a sentence with or without a space after them (the text has no spaces).
_CJK_SENTENCE_END = re.compile(r"[。！？][」』）\"']?")
# Words ending in a period that rarely end a sentence ("et al. 2018", "e.g. Paris").
_ABBREVIATIONS = ("al.", "e.g.", "i.e.", "etc.", "vs.", "cf.", "fig.", "dr.", "mr.", "mrs.", "ms.", "st.",
                  "no.", "approx.", "ca.", "inc.", "ltd.", "jr.", "sr.")
_HEADING = re.compile(r"^#{1,6}\s")
_FENCE = re.compile(r"^(```|~~~)")
_LIST_ITEM = re.compile(r"^ {0,3}([*+-]|\d{1,9}[.)])\s")  # a Markdown list item


DocChunk = Chunk  # what read_documents yields: a Chunk with source, chunk number and start line


@dataclass
class _Unit:
    """An unbreakable piece of text (paragraph, sentence or word run) and where it starts."""

    text: str
    line: int
    section: bool = False  # a Markdown heading: must start a new chunk
    para: int = 0  # which paragraph it came from: pieces of one paragraph are joined by a space


def read_documents(paths: str | Path | Iterable[str | Path], *, domain: str = "",
                   chunking: Chunking = "paragraph", chunk_size: int = 800, overlap: int = 100,
                   encoding: str = "utf-8") -> Iterator[DocChunk]:
    """Chunk text/Markdown documents for retrieval.

    Chunk ids are ``"<source>#<n>"`` with ``source`` the file name (the path as given when two
    files share a name; bytes that are not UTF-8 replaced by U+FFFD) and ``n`` the 0-based chunk
    number in that file, so ids are stable as long as the file is.

    Args:
        paths: one file or several (``.txt``, ``.md``, ``.markdown``; ``.gz`` allowed).
        domain: the domain each chunk belongs to (the knowledge base fills in its own).
        chunking: ``"paragraph"`` or ``"line"`` (see the module docstring).
        chunk_size: the most characters in a chunk (``"paragraph"`` only).
        overlap: characters of whole sentences repeated at the start of the next chunk.
        encoding: text encoding.

    Yields:
        :class:`DocChunk` objects with ``source``, ``chunk`` (number) and ``line``.

    Raises:
        LoadError: at once for bad arguments and missing, empty or unsupported files; while
            iterating for bad encoding (with the line) or a document with no text at all.
    """
    if chunking not in CHUNKINGS:
        raise LoadError(f"unknown chunking {chunking!r}; choose one of {', '.join(CHUNKINGS)}")
    if chunk_size < 1 or overlap < 0 or overlap >= chunk_size:
        raise LoadError(f"need chunk_size >= 1 and 0 <= overlap < chunk_size, got chunk_size={chunk_size}, "
                        f"overlap={overlap}")
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    for path in files:
        check_file(path)
        if suffixes(path) not in DOCUMENT_SUFFIXES:
            raise LoadError(f"unsupported document type {suffixes(path) or '(none)'!r}; "
                            f"supported: {', '.join(DOCUMENT_SUFFIXES)}", path=path)
    return _chunks(files, domain, chunking, chunk_size, overlap, encoding)


def _chunks(files: list[Path], domain: str, chunking: str, chunk_size: int, overlap: int,
            encoding: str) -> Iterator[DocChunk]:
    names = [p.name for p in files]
    for path in files:
        source = source_name(path.name if names.count(path.name) == 1 else path)
        if chunking == "line":
            pieces: Iterator[tuple[str, int]] = _line_chunks(path, encoding)
        else:
            markdown = suffixes(path) in (".md", ".markdown")
            pieces = _pack(_units(_paragraphs(path, encoding, markdown), chunk_size), chunk_size, overlap)
        n = -1
        for n, (text, line) in enumerate(pieces):
            yield DocChunk(id=f"{source}#{n}", domain=domain, text=text, source=source, chunk=n, line=line)
        if n < 0:
            raise LoadError("document has no text (only blank lines)", path=path)


def _line_chunks(path: Path, encoding: str) -> Iterator[tuple[str, int]]:
    for number, text in iter_lines(path, encoding=encoding):
        text = text.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1].strip()
        if text:
            yield text, number


def _paragraphs(path: Path, encoding: str, markdown: bool) -> Iterator[_Unit]:
    """Blank-line separated paragraphs; in Markdown headings and code fences stand alone."""
    lines: list[str] = []
    start = 0
    fenced = False
    for number, text in iter_lines(path, encoding=encoding):
        if markdown and _FENCE.match(text.lstrip()):
            if not fenced and lines:
                yield _Unit("\n".join(lines), start)
                lines = []
            if not lines:
                start = number
            lines.append(text)
            fenced = not fenced
            if not fenced:
                yield _Unit("\n".join(lines), start)
                lines = []
            continue
        if fenced:
            lines.append(text)
            continue
        if markdown and _HEADING.match(text):
            if lines:
                yield _Unit("\n".join(lines), start)
                lines = []
            yield _Unit(text.strip(), number, section=True)
            continue
        if markdown and lines and _LIST_ITEM.match(text):  # each list item is a paragraph of its own
            yield _Unit("\n".join(lines), start)
            lines = []
        if not text.strip():
            if lines:
                yield _Unit("\n".join(lines), start)
                lines = []
            continue
        if not lines:
            start = number
        lines.append(text.rstrip())
    if lines:
        yield _Unit("\n".join(lines), start)


def _sentence_ends(text: str) -> list[int]:
    ends = []
    for match in _SENTENCE_END.finditer(text):
        words = text[: match.start(1)].rsplit(None, 1)
        if not (words and words[-1].lower() in _ABBREVIATIONS):
            ends.append(match.end(1))
    ends += [match.end() for match in _CJK_SENTENCE_END.finditer(text)]
    return sorted(set(ends) | {len(text)})


def _units(paragraphs: Iterable[_Unit], chunk_size: int) -> Iterator[_Unit]:
    """Paragraphs, with those longer than ``chunk_size`` split into sentences, then word runs."""
    for number, para in enumerate(paragraphs):
        para.para = number
        if len(para.text) <= chunk_size:
            yield para
            continue
        begin = 0
        for end in _sentence_ends(para.text):
            sentence = para.text[begin:end].strip()
            line = para.line + para.text.count("\n", 0, begin)
            begin = end
            if not sentence:
                continue
            if len(sentence) <= chunk_size:
                yield _Unit(sentence, line, para=number)
                continue
            run: list[str] = []
            size = 0
            for word in sentence.split():
                if run and size + 1 + len(word) > chunk_size:
                    yield _Unit(" ".join(run), line, para=number)
                    run, size = [], 0
                # A single word longer than a chunk is cut hard (rare: URLs, base64 blobs).
                while len(word) > chunk_size:
                    yield _Unit(word[:chunk_size], line, para=number)
                    word = word[chunk_size:]
                run.append(word)
                size += len(word) + (1 if size else 0)
            if run:
                yield _Unit(" ".join(run), line, para=number)


def _pack(units: Iterable[_Unit], chunk_size: int, overlap: int) -> Iterator[tuple[str, int]]:
    """Greedy packing of units into chunks, carrying whole trailing units as overlap."""
    current: list[_Unit] = []
    fresh = 0  # units of ``current`` that are not overlap carried from the previous chunk

    def size(units: list[_Unit]) -> int:
        return sum(len(u.text) for u in units) + 2 * max(len(units) - 1, 0)

    def emit() -> tuple[str, int]:
        text = current[0].text
        for prev, unit in pairwise(current):
            same = unit.para == prev.para  # a CJK sentence is followed by the next without a space
            text += ("" if _CJK_SENTENCE_END.search(prev.text[-2:]) else " ") if same else "\n\n"
            text += unit.text
        return text, current[0].line

    for unit in units:
        if current and fresh and (unit.section or size(current + [unit]) > chunk_size):
            yield emit()
            carried: list[_Unit] = []
            if not unit.section:  # no overlap across Markdown sections
                for prev in reversed(current):
                    if size([prev] + carried) > overlap or size([prev] + carried + [unit]) > chunk_size:
                        break
                    carried.insert(0, prev)
            current, fresh = carried, 0
        current.append(unit)
        fresh += 1
    if current and fresh:
        yield emit()
