"""Line-level file access shared by the loaders: existence checks, gzip, strict UTF-8 per line.

Files are read as bytes and each line is decoded on its own, so a bad byte is reported with the
exact 1-based line it sits on (a text-mode reader decodes 8 KiB blocks and loses that), and
nothing but the current line is ever held in memory.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from kgllm.exceptions import LoadError

__all__ = ["check_file", "iter_json_objects", "iter_lines", "open_binary", "read_bytes", "shorten", "source_name",
           "suffixes"]

_BOM = "\ufeff"
_MAX_VALUE = 200  # characters of an offending line quoted in an error message


def shorten(text: str, limit: int = _MAX_VALUE) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis) for quoting in error messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def source_name(path: Path | str) -> str:
    """``path`` as text for provenance: a file name that is not valid UTF-8 (bytes Python keeps as
    surrogate escapes) gets U+FFFD for each bad byte; the stores cannot write surrogates."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def suffixes(path: Path) -> str:
    """The meaningful suffix of ``path``, lower-cased, looking through a trailing ``.gz``."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def check_file(path: str | Path) -> Path:
    """``path`` as a :class:`Path` after checking that it is an existing, non-empty file.

    Raises:
        LoadError: the file is missing, is a directory, or has no bytes.
    """
    p = Path(path)
    if not p.exists():
        raise LoadError("file not found", path=p)
    if not p.is_file():
        raise LoadError("not a file", path=p)
    if p.stat().st_size == 0:
        raise LoadError("file is empty", path=p)
    return p


def open_binary(path: Path) -> IO[bytes]:
    """The file opened for binary reading, transparently gunzipped when it ends in ``.gz``."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


# What reading a damaged file raises: a corrupt or truncated .gz gives BadGzipFile (an OSError),
# EOFError or zlib.error, none of which names the file.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def _read_error(path: Path, exc: BaseException, line: int | None = None) -> LoadError:
    """A LoadError naming ``path`` (and the line reading stopped at) for an error of the file itself."""
    what = "damaged or truncated gzip file" if path.name.lower().endswith(".gz") else "cannot read the file"
    return LoadError(f"{what} ({type(exc).__name__}: {exc})", path=path, line=line)


def read_bytes(path: Path) -> bytes:
    """The whole file (gunzipped when it ends in ``.gz``).

    Raises:
        LoadError: the file cannot be read (a damaged or truncated ``.gz``, an I/O error).
    """
    try:
        with open_binary(path) as handle:
            return handle.read()
    except _READ_ERRORS as exc:
        raise _read_error(path, exc) from None


def iter_lines(path: Path, *, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line of ``path`` (1-based, line ending removed).

    Lines are decoded one at a time with ``encoding`` in strict mode; a leading byte-order mark
    is dropped. Blank lines are yielded too, so callers keep exact line numbers.

    Raises:
        LoadError: a line is not valid in ``encoding`` (names the line and shows it, bad bytes as U+FFFD),
            or the file cannot be read (a damaged or truncated ``.gz``: names the line reading stopped at).
    """
    for number, raw in _raw_lines(path):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise LoadError(
                f"not valid {encoding} text ({exc.reason} at byte {exc.start})",
                path=path, line=number, value=shorten(raw.rstrip(b"\r\n").decode(encoding, errors="replace")),
            ) from None
        if number == 1 and text.startswith(_BOM):
            text = text[1:]
        yield number, text.rstrip("\r\n")


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line_number, bytes)`` per line; a file that cannot be read is a LoadError naming it."""
    number = 0
    try:
        with open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                yield number, raw
    except _READ_ERRORS as exc:
        raise _read_error(path, exc, number + 1 if number else None) from None


def iter_json_objects(path: Path, *, encoding: str = "utf-8") -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Yield ``(line_number, text, object)`` for every non-blank line of a JSON-lines file.

    Raises:
        LoadError: a line is not valid text, not JSON, or not a JSON object (names the line and shows it).
    """
    for number, text in iter_lines(path, encoding=encoding):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LoadError(f"invalid JSON ({exc.msg} at column {exc.colno})", path=path, line=number,
                            value=shorten(text)) from None
        if not isinstance(obj, dict):
            raise LoadError(f"expected a JSON object, got {type(obj).__name__}", path=path, line=number,
                            value=shorten(text))
        yield number, text, obj
