"""Moving a knowledge base between graph backends, losslessly: ``export_kb`` / ``import_kb``.

An export is a directory of plain files any backend can read back::

    manifest.json                 format, version, source backend, embedding model, and per domain:
                                  its metadata (description, relation_text, ...), counts, relation
                                  names, index manifests (as information) and each file's sha256
    domains/<n>/triples.jsonl     {"head", "relation", "tail", "source", "line"} per stored triple
    domains/<n>/entities.jsonl    {"id", "name"} per entity (display names)
    domains/<n>/chunks.jsonl      document chunks (Chunk JSON), when the domain has documents

Domain folders are numbered (``<n>``) so any domain spelling is safe on disk. Vector indexes are not
copied: the target rebuilds them from the imported data on first use (their manifests are kept in
``manifest.json`` for reference). ``export_store`` / ``import_store`` do the same for a bare
:class:`~kgllm.stores.base.GraphStore` (no documents or metadata).

What a KB must offer (``kgllm.kb.KnowledgeBase`` does): ``store``, ``domains``, ``domain_info(d)``,
``set_domain_info(d, **info)``, ``chunks(d)``, ``add_chunks(d, chunks)``, and optionally ``path``
(for index manifests under ``index/<domain>/<kind>/manifest.json``) and ``delete_domain(d)``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kgllm.exceptions import ConfigError, LoadError
from kgllm.index.manifest import sha256_file
from kgllm.loaders import iter_json_objects
from kgllm.stores.base import GraphStore, RawTriple
from kgllm.types import Chunk

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "export_kb", "import_kb", "export_store", "import_store",
           "read_export_manifest"]

EXPORT_FORMAT = "kgllm-export"
EXPORT_VERSION = 1
MANIFEST = "manifest.json"
_BATCH = 50_000
_Report = TypeVar("_Report")


class _KB(Protocol):
    """The part of a knowledge base that export and import use."""

    store: GraphStore

    @property
    def domains(self) -> list[str]: ...

    def domain_info(self, domain: str) -> dict[str, Any]: ...

    def set_domain_info(self, domain: str, **info: Any) -> None: ...

    def chunks(self, domain: str) -> list[Chunk]: ...

    def add_chunks(self, domain: str, chunks: Sequence[Chunk]) -> int: ...


def _write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


# -- export --------------------------------------------------------------------------------------
def _export_domain(store: GraphStore, domain: str, folder: Path, chunks: Sequence[Chunk] = ()) -> dict[str, Any]:
    """Write one domain's triples, entity names and chunks into ``folder``; returns its manifest entry."""
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}

    def triples() -> Iterator[dict[str, Any]]:
        for fact in store.iter_triples(domain):
            # ``is None``, not ``or``: an empty display name is a name, kept as it is
            names.setdefault(fact.head, fact.head if fact.head_name is None else fact.head_name)
            names.setdefault(fact.tail, fact.tail if fact.tail_name is None else fact.tail_name)
            yield {"head": fact.head, "relation": fact.relation, "tail": fact.tail, "source": fact.source,
                   "line": fact.line}

    files = {"triples": "triples.jsonl", "entities": "entities.jsonl"}
    n_triples = _write_jsonl(folder / files["triples"], triples())
    n_entities = _write_jsonl(folder / files["entities"], ({"id": i, "name": n} for i, n in sorted(names.items())))
    if chunks:
        files["chunks"] = "chunks.jsonl"
        _write_jsonl(folder / files["chunks"], (json.loads(chunk.to_json()) for chunk in chunks))
    return {"triples": n_triples, "entities": n_entities, "chunks": len(chunks),
            "relations": store.relations(domain), "relation_order": list(store.snapshot(domain).relations),
            "files": files,
            "sha256": {kind: sha256_file(folder / name) for kind, name in files.items()}}


def _write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = out_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, out_dir / MANIFEST)


def _prepare_out(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export directory {str(out)!r} is a file, not a directory; choose a new directory")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"export directory {str(out)!r} exists and is not empty; choose a new one")
    (out / "domains").mkdir(parents=True, exist_ok=True)
    return out


def _selected(available: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    if wanted is None:
        return sorted(available)
    unknown = [d for d in wanted if d not in available]
    if unknown:
        raise ConfigError(f"unknown domain(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(available))}")
    return list(dict.fromkeys(wanted))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kgllm")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def export_store(store: GraphStore, out_dir: str | Path, *, domains: Sequence[str] | None = None) -> dict[str, Any]:
    """Export a graph store's domains (triples with provenance, entity names) to ``out_dir``.

    Raises:
        ConfigError: ``out_dir`` is not empty, or an unknown domain is named.
    """
    out = _prepare_out(out_dir)
    manifest: dict[str, Any] = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "kgllm_version": _version(),
                                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                "backend": store.backend, "domains": {}}
    for n, domain in enumerate(_selected(store.domains(), domains)):
        folder = f"domains/{n:04d}"
        entry = _export_domain(store, domain, out / folder)
        manifest["domains"][domain] = {"folder": folder, **entry}
    _write_manifest(out, manifest)
    return manifest


def export_kb(kb: _KB, out_dir: str | Path, *, domains: Sequence[str] | None = None) -> dict[str, Any]:
    """Export a knowledge base: per domain its triples, entity names, chunks and metadata.

    Args:
        kb: the knowledge base (any graph backend).
        out_dir: a new or empty directory.
        domains: only these domains (default: all of the KB's).

    Returns:
        The export manifest (also written to ``out_dir/manifest.json``).

    Raises:
        ConfigError: ``out_dir`` is not empty, or an unknown domain is named.
    """
    out = _prepare_out(out_dir)
    stored = set(kb.store.domains())
    manifest: dict[str, Any] = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "kgllm_version": _version(),
                                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                "backend": kb.store.backend, "embedder": _kb_embedder(kb), "domains": {}}
    for n, domain in enumerate(_selected(kb.domains, domains)):
        folder = f"domains/{n:04d}"
        chunks = kb.chunks(domain)
        if domain in stored:
            entry = _export_domain(kb.store, domain, out / folder, chunks)
        else:  # a domain with documents only
            (out / folder).mkdir(parents=True)
            entry = {"triples": 0, "entities": 0, "chunks": len(chunks), "relations": [], "files": {}, "sha256": {}}
            if chunks:
                entry["files"]["chunks"] = "chunks.jsonl"
                _write_jsonl(out / folder / "chunks.jsonl", (json.loads(c.to_json()) for c in chunks))
                entry["sha256"]["chunks"] = sha256_file(out / folder / "chunks.jsonl")
        manifest["domains"][domain] = {"folder": folder, "info": kb.domain_info(domain),
                                       "indexes": _index_manifests(kb, domain), **entry}
    _write_manifest(out, manifest)
    return manifest


def _kb_embedder(kb: Any) -> str | None:
    manifest = getattr(kb, "_manifest", None)
    return manifest.get("embedder") if isinstance(manifest, dict) else None


def _index_manifests(kb: Any, domain: str) -> dict[str, Any]:
    """Manifests of the domain's vector indexes (information only; the target rebuilds them)."""
    path = getattr(kb, "path", None)
    if path is None:
        return {}
    found = {}
    for manifest in sorted((Path(path) / "index" / domain).glob("*/manifest.json")):
        try:
            found[manifest.parent.name] = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return found


# -- import --------------------------------------------------------------------------------------
def read_export_manifest(in_dir: str | Path) -> dict[str, Any]:
    """The manifest of an export directory, checked for format and version.

    Raises:
        LoadError: missing or unreadable manifest, another format, or a newer version.
    """
    path = Path(in_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoadError("not a kgllm export: no manifest", path=path) from None
    except (OSError, ValueError) as exc:
        raise LoadError(f"unreadable export manifest ({exc})", path=path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise LoadError(f"not a kgllm export (format should be {EXPORT_FORMAT!r})", path=path,
                        value=manifest.get("format") if isinstance(manifest, dict) else manifest)
    if int(manifest.get("version", 0)) > EXPORT_VERSION:
        raise LoadError(f"export format version is newer than this kgllm reads ({EXPORT_VERSION})", path=path,
                        value=manifest.get("version"))
    _check_entries(manifest, path)
    return manifest


def _check_entries(manifest: dict[str, Any], path: Path) -> None:
    """A LoadError naming the manifest unless its ``domains`` map names to entries that import can read
    (a folder, and files and checksums as name maps), rather than a KeyError or TypeError mid-import."""
    domains = manifest.get("domains")
    if not isinstance(domains, dict):
        raise LoadError("export manifest has no 'domains' map", path=path, value=domains)
    for domain, entry in domains.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("folder"), str)
                and all(isinstance(entry.get(key, {}), dict) for key in ("files", "sha256"))
                and all(isinstance(name, str) for name in entry.get("files", {}).values())):
            raise LoadError(f"export manifest entry for domain {domain!r} is malformed (needs 'folder', and "
                            "'files' and 'sha256' as maps of names)", path=path, value=entry)


def _checked(in_dir: Path, entry: dict[str, Any], kind: str) -> Path | None:
    name = entry.get("files", {}).get(kind)
    if name is None:
        return None
    path = in_dir / entry["folder"] / name
    if not path.is_file():
        raise LoadError(f"export file for {kind} is missing", path=path)
    expected = entry.get("sha256", {}).get(kind)
    if expected and sha256_file(path) != expected:
        raise LoadError("export file does not match its sha256 in the manifest (corrupt or edited)", path=path,
                        value=expected)
    return path


def _triples(path: Path) -> Iterator[RawTriple]:
    for number, _, row in iter_json_objects(path):
        try:
            head, relation, tail = row["head"], row["relation"], row["tail"]
        except KeyError as exc:
            raise LoadError(f"triple without {exc.args[0]!r}", path=path, line=number, value=row) from None
        line = row.get("line")
        if line is not None and not isinstance(line, int):
            raise LoadError("a triple's line must be an integer", path=path, line=number, value=line)
        yield RawTriple(head, relation, tail, row.get("source"), line)


def _ordered(path: Path, order: Sequence[str]) -> Iterator[RawTriple]:
    """The export's triples, led by the first triple of each relation in ``order`` (the source's numbering)
    when the file would number them otherwise.

    Stores number relations in first-seen order and a trained path scorer checks that numbering, but
    an export lists triples in its source's reading order (Neo4j: by node key); leading with one
    triple per relation, in the source's order, gives the target the same numbering (the repeat is
    a duplicate, stored once). An export whose file already numbers them so (the local store's, in
    load order) is read as it is, so the target keeps its load order too.
    """
    if order:
        first: dict[str, RawTriple] = {}
        for triple in _triples(path):
            first.setdefault(triple.relation, triple)
            if len(first) == len(order):
                break
        if list(first) != [r for r in order if r in first]:
            yield from (first[r] for r in order if r in first)
    yield from _triples(path)


def _names(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    names = {}
    for number, _, row in iter_json_objects(path):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("name"), str):
            raise LoadError("an entity needs string 'id' and 'name'", path=path, line=number, value=row)
        if row["name"] != row["id"]:
            names[row["id"]] = row["name"]
    return names


def _import_domain(store: GraphStore, domain: str, in_dir: Path, entry: dict[str, Any]) -> int:
    """Load one exported domain into ``store`` atomically; returns the number of triples added."""
    triples = _checked(in_dir, entry, "triples")
    names = _names(_checked(in_dir, entry, "entities"))
    if triples is None:
        return 0
    with store.writer(domain) as writer:
        writer.add(_ordered(triples, entry.get("relation_order") or []))
        if names:
            writer.set_names(names)
        return writer.commit()


def _plan(manifest: dict[str, Any], existing: Sequence[str], domains: Sequence[str] | None,
          replace: bool) -> list[str]:
    chosen = _selected(list(manifest["domains"]), domains)
    clash = [d for d in chosen if d in existing]
    if clash and not replace:
        raise ConfigError(f"domain(s) {', '.join(map(repr, clash))} exist in the target already; "
                          "delete them first or import with replace=True (kgllm import --replace)")
    return chosen


def import_store(store: GraphStore, in_dir: str | Path, *, domains: Sequence[str] | None = None,
                 replace: bool = False) -> dict[str, int]:
    """Load an export's graphs into ``store``; returns triples added per domain.

    Like :func:`import_kb`, a failure leaves the store as it was: the domains this call had imported
    already are removed, and those ``replace`` had deleted come back.

    Raises:
        LoadError: the export is malformed (names the file, line and value) or fails its checksums.
        ConfigError: a domain exists in ``store`` already (unless ``replace``), or an unknown one is named.
    """
    source = Path(in_dir)
    manifest = read_export_manifest(source)
    chosen = _plan(manifest, store.domains(), domains, replace)
    return _import_all(_BareStore(store), manifest, chosen, replace,
                       lambda domain, entry: _import_domain(store, domain, source, entry))


def import_kb(kb: _KB, in_dir: str | Path, *, domains: Sequence[str] | None = None,
              replace: bool = False) -> dict[str, dict[str, int]]:
    """Load an export into a knowledge base (any backend): graphs, names, chunks and metadata.

    Each domain's graph is loaded atomically, and a failure leaves the KB as it was: the domains this
    call had imported already are removed, and those ``replace`` had deleted come back (from a copy
    made first, in a temporary folder); indexes are rebuilt on first use.

    Args:
        kb: the target knowledge base.
        in_dir: a directory written by :func:`export_kb` (or :func:`export_store`).
        domains: only these domains (default: all in the export).
        replace: delete target domains of the same name first (default: refuse).

    Returns:
        Per domain: ``triples_added`` and ``chunks_added``.

    Raises:
        LoadError: the export is malformed (names the file, line and value) or fails its checksums.
        ConfigError: a domain exists in the KB already (unless ``replace``), or an unknown one is named.
    """
    source = Path(in_dir)
    manifest = read_export_manifest(source)
    chosen = _plan(manifest, sorted(set(kb.domains) | set(kb.store.domains())), domains, replace)
    chunks = {domain: _chunks(source, manifest["domains"][domain]) for domain in chosen}  # bad files fail early

    def load(domain: str, entry: dict[str, Any]) -> dict[str, int]:
        added = _import_domain(kb.store, domain, source, entry)
        info = {k: v for k, v in (entry.get("info") or {}).items() if v is not None}
        kb.set_domain_info(domain, **info)
        return {"triples_added": added,
                "chunks_added": kb.add_chunks(domain, chunks[domain]) if chunks[domain] else 0}

    return _import_all(kb, manifest, chosen, replace, load)


def _import_all(kb: _KB, manifest: dict[str, Any], chosen: Sequence[str], replace: bool,
                load: Callable[[str, dict[str, Any]], _Report]) -> dict[str, _Report]:
    """Import the ``chosen`` domains one by one with ``load``, all or nothing: when one fails, the
    domains imported so far are removed and those ``replace`` had deleted come back (from a copy made
    first, in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="kgllm-replaced-") as backup:
        replaced = _back_up(kb, [d for d in chosen if replace], Path(backup))
        report: dict[str, _Report] = {}
        started: list[str] = []  # domains this call creates: removed again when a later one fails
        deleted: dict[str, str] = {}  # replaced domains deleted so far: restored when one fails
        try:
            for domain in chosen:
                if domain in replaced:
                    deleted[domain] = replaced[domain]
                    _remove_domains(kb, [domain])
                started.append(domain)
                report[domain] = load(domain, manifest["domains"][domain])
        except BaseException:
            _remove_domains(kb, started)
            _restore(kb, Path(backup), deleted)
            raise
    return report


class _BareStore:
    """A bare graph store seen as a knowledge base without domains of its own (no metadata, no
    chunks), so that :func:`import_store` backs up, undoes and restores like :func:`import_kb`."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store

    @property
    def domains(self) -> list[str]:
        return []

    def domain_info(self, domain: str) -> dict[str, Any]:
        return {}

    def set_domain_info(self, domain: str, **info: Any) -> None:
        pass

    def chunks(self, domain: str) -> list[Chunk]:
        return []

    def add_chunks(self, domain: str, chunks: Sequence[Chunk]) -> int:
        return 0


def _chunks(source: Path, entry: dict[str, Any]) -> list[Chunk]:
    """An exported domain's document chunks (checked against the manifest)."""
    chunks_path = _checked(source, entry, "chunks")
    chunks = []
    if chunks_path is not None:
        for number, _, row in iter_json_objects(chunks_path):
            try:
                chunks.append(Chunk.model_validate(row))
            except ValueError as exc:
                raise LoadError(f"not a chunk ({exc})", path=chunks_path, line=number, value=row) from None
    return chunks


def _back_up(kb: _KB, domains: Sequence[str], folder: Path) -> dict[str, str]:
    """Export the KB's ``domains`` that an import replaces into ``folder`` (``kb/``: domains of the KB,
    ``store/``: graphs the store holds for no KB domain); returns which of the two each one went to."""
    in_kb = [d for d in domains if d in kb.domains]
    in_store = [d for d in domains if d not in in_kb and d in kb.store.domains()]
    if in_kb:
        export_kb(kb, folder / "kb", domains=in_kb)
    if in_store:
        export_store(kb.store, folder / "store", domains=in_store)
    return {**dict.fromkeys(in_kb, "kb"), **dict.fromkeys(in_store, "store")}


def _restore(kb: _KB, folder: Path, replaced: dict[str, str]) -> None:
    """Bring back the domains a failed import had deleted to replace them (after its own were removed)."""
    in_kb = [d for d, where in replaced.items() if where == "kb"]
    in_store = [d for d, where in replaced.items() if where == "store"]
    _remove_domains(kb, [d for d in replaced if d in kb.domains or d in kb.store.domains()])
    if in_kb:
        import_kb(kb, folder / "kb", domains=in_kb)
    if in_store:
        import_store(kb.store, folder / "store", domains=in_store)


def _remove_domains(kb: _KB, domains: Sequence[str]) -> None:
    """Undo a failed import: the domains it created go again (the KB is left as it was)."""
    for domain in domains:
        if domain in kb.domains and hasattr(kb, "delete_domain"):
            kb.delete_domain(domain)
        elif domain in kb.store.domains():
            kb.store.delete_domain(domain)
