"""Loaders: triple files (tsv, csv, jsonl, MetaQA pipes, N-Triples, Turtle), documents, domain packs.

All readers stream and report bad input as :class:`~kgllm.exceptions.LoadError` with the file, the
1-based line and the offending value::

    from kgllm.loaders import read_triples, read_documents, load_pack

    for head, relation, tail, source, line in read_triples("kb.txt"): ...
    chunks = list(read_documents(["openbook.txt"], domain="science", chunking="line"))
    pack = load_pack("graphs/movies"); triples = pack.read_triples()
"""

from kgllm.loaders._io import iter_json_objects
from kgllm.loaders.documents import CHUNKINGS, DOCUMENT_SUFFIXES, DocChunk, read_documents
from kgllm.loaders.packs import MANIFEST, DocumentFileSpec, Pack, SameAs, TripleFileSpec, load_pack
from kgllm.loaders.triples import FORMATS, TripleReader, infer_format, read_names, read_triples


def read_rdf_names(path, format=None, *, local_names=False):  # type: ignore[no-untyped-def]
    """Display names from an RDF file's labels (see :func:`kgllm.loaders.rdf.read_rdf_names`)."""
    from kgllm.loaders.rdf import read_rdf_names as _read  # rdflib only when RDF is used

    return _read(path, format, local_names=local_names)


__all__ = [
    "iter_json_objects",
    "FORMATS",
    "CHUNKINGS",
    "DOCUMENT_SUFFIXES",
    "MANIFEST",
    "TripleReader",
    "read_triples",
    "infer_format",
    "read_names",
    "read_rdf_names",
    "DocChunk",
    "read_documents",
    "Pack",
    "TripleFileSpec",
    "DocumentFileSpec",
    "SameAs",
    "load_pack",
]
