"""Readable names from identifiers: an IRI's local name, a relation name as words.

Plain string functions (no rdflib), used by the RDF loader and for default relation texts.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["local_name", "is_iri", "relation_words"]


def local_name(iri: str) -> str:
    """The readable last part of an IRI: after ``#``, else after the last ``/`` (``%``-decoded).

    >>> local_name("http://dbpedia.org/resource/Blade_Runner")
    'Blade Runner'
    """
    tail = iri.rstrip("/#")
    for sep in ("#", "/", ":"):
        if sep in tail:
            tail = tail.rsplit(sep, 1)[1]
            break
    return unquote(tail).replace("_", " ") or iri


_IRI = re.compile(r"[A-Za-z][\w+.-]*:")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def is_iri(name: str) -> bool:
    """Whether ``name`` starts with a scheme or prefix (``http://...``, ``rdf:type``)."""
    return _IRI.match(name) is not None


def relation_words(name: str) -> str:
    """A relation name as words: an IRI's :func:`local_name`, ``_`` and camelCase split, lower-cased except
    all-capital words (``http://ex.org/capitalOf`` -> ``capital of``, ``hasURL`` -> ``has URL``).

    >>> relation_words("AtLocation"), relation_words("directed_by"), relation_words("rdf:type")
    ('at location', 'directed by', 'type')
    """
    text = local_name(name) if is_iri(name) else name.replace("_", " ")
    words = [w if w.isupper() and len(w) > 1 else w.lower() for w in _CAMEL.sub(" ", text).split()]
    return " ".join(words) or name
