"""Domain packs: a directory with ``manifest.yaml`` describing one expert's graph and documents.

.. code-block:: yaml

    name: movies
    description: Films, their directors, writers, actors, genres, languages, release years and tags.
    license: CC BY 3.0
    attribution: MetaQA (Zhang et al. 2018), WikiMovies KB
    triples:
      - {path: kb.txt, format: pipe}          # tsv | csv | jsonl | pipe | nt | ttl; order: rht ...
    names: []                                # optional id<TAB>name files (display names)
    documents:
      - {path: openbook.txt, chunking: line} # paragraph (default) | line
    relation_text: {directed_by: "directed by"}
    relation_aliases: {has_genre: [kind, type]}  # optional: other words questions use for a relation
    same_as:                                 # optional links to entities of other packs
      - {entity: france, same_as_domain: commonsense, same_as_entity: france}
    reasoning: {hops: 2}                     # optional: hops / max_hops (1-4), beam (1-256), retrievers
    scorer: scorer                           # optional trained path scorer (a directory of the pack)
    examples: ["Who directed [Kismet]?"]     # questions the pack answers (demo, docs)

The manifest is validated strictly: an unknown key, a missing required key, a bad value or a
listed file that does not exist raises :class:`~kgllm.exceptions.LoadError` naming the manifest,
the line of the offending key and the value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from kgllm.exceptions import LoadError
from kgllm.loaders._io import iter_lines
from kgllm.loaders.documents import DocChunk, read_documents
from kgllm.loaders.triples import TripleFormat, TripleReader, read_names
from kgllm.retrieval.evidence import check_retrievers
from kgllm.stores.base import RawTriple

__all__ = ["MANIFEST", "SCORER_MANIFEST", "Pack", "TripleFileSpec", "DocumentFileSpec", "SameAs", "load_pack"]

MANIFEST = "manifest.yaml"
SCORER_MANIFEST = "manifest.json"
"""The file every trained path-scorer directory holds (written by ``LearnedScorer.save``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TripleFileSpec(_Strict):
    """One triple file of a pack: its path (relative to the pack), format and column order."""

    path: str
    format: TripleFormat | None = None
    order: str | None = Field(default=None, pattern=r"^(hrt|htr|rht|rth|thr|trh)$")
    header: bool | None = None


class DocumentFileSpec(_Strict):
    """One document of a pack and how to chunk it."""

    path: str
    chunking: Literal["paragraph", "line"] = "paragraph"
    chunk_size: int = Field(default=800, ge=50)
    overlap: int = Field(default=100, ge=0)

    @model_validator(mode="after")
    def _overlap_below_chunk_size(self) -> DocumentFileSpec:
        if self.overlap >= self.chunk_size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than chunk_size ({self.chunk_size})")
        return self


class SameAs(_Strict):
    """``entity`` of this pack (or of ``domain``) is the same thing as ``same_as_entity`` of ``same_as_domain``."""

    entity: str
    same_as_domain: str
    same_as_entity: str
    domain: str | None = None


_REASONING_SETTINGS: dict[str, tuple[int, int]] = {"hops": (1, 4), "max_hops": (1, 4), "beam": (1, 256)}
"""The integer settings a manifest's ``reasoning`` may give, with their ranges (and ``retrievers``, a list)."""


class Pack(_Strict):
    """A validated ``manifest.yaml``; ``Pack.load(dir)`` reads one (see the module docstring)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)
    description: str = Field(min_length=1)
    license: str = Field(min_length=1)
    attribution: str | None = None
    source: str | None = None
    triples: list[TripleFileSpec] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    documents: list[DocumentFileSpec] = Field(default_factory=list)
    relation_text: dict[str, str] = Field(default_factory=dict)
    relation_aliases: dict[str, list[str]] = Field(default_factory=dict)
    same_as: list[SameAs] = Field(default_factory=list)
    reasoning: dict[str, Any] = Field(default_factory=dict)
    scorer: str | None = Field(default=None, min_length=1)
    examples: list[str] = Field(default_factory=list)

    _dir: Path = PrivateAttr(default=Path("."))

    @field_validator("relation_text")
    @classmethod
    def _texts_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        empty = [rel for rel, text in value.items() if not text.strip()]
        if empty:
            raise ValueError(f"empty text for relation(s) {', '.join(map(repr, empty))}")
        return value

    @field_validator("reasoning")
    @classmethod
    def _reasoning_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, setting in value.items():
            if key == "retrievers":
                if not isinstance(setting, list) or not all(isinstance(name, str) for name in setting):
                    raise ValueError(f"'retrievers' must be a list of names, got {setting!r}")
                check_retrievers(setting)  # its ConfigError is a ValueError: pydantic reports it for the field
            elif key in _REASONING_SETTINGS:
                low, high = _REASONING_SETTINGS[key]
                if isinstance(setting, bool) or not isinstance(setting, int) or not low <= setting <= high:
                    raise ValueError(f"{key!r} must be an integer from {low} to {high}, got {setting!r}")
            else:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join([*_REASONING_SETTINGS, 'retrievers'])}")
        return value

    @property
    def dir(self) -> Path:
        """The pack directory; file paths in the manifest are relative to it."""
        return self._dir

    @property
    def manifest_path(self) -> Path:
        return self._dir / MANIFEST

    def file(self, relative: str) -> Path:
        """The path of a file listed in the manifest."""
        return self._dir / relative

    @property
    def scorer_dir(self) -> Path | None:
        """The pack's trained path-scorer directory, or ``None`` when the pack has none."""
        return self.file(self.scorer) if self.scorer else None

    @classmethod
    def load(cls, directory: str | Path) -> Pack:
        """Read and validate ``<directory>/manifest.yaml`` (a manifest file path is accepted too).

        Raises:
            LoadError: no manifest, YAML syntax error, invalid manifest, or a listed file missing.
        """
        path = Path(directory)
        manifest = path if path.is_file() else path / MANIFEST
        if path.is_file() and path.suffix.lower() not in (".yaml", ".yml"):
            raise LoadError(f"not a pack: a pack is a directory with {MANIFEST} (or that manifest itself); "
                            "load a triples file into a domain with load_triples (kgllm load --domain D "
                            "--triples FILE), documents with load_documents (--documents FILE)", path=path)
        if not manifest.is_file():
            raise LoadError(f"not a pack: no {MANIFEST} found", path=path)
        try:
            text = manifest.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            for _ in iter_lines(manifest):  # raises, naming the line and showing it
                pass
            raise
        try:
            data = yaml.safe_load(text)
            root = yaml.compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise LoadError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", path=manifest,
                            line=mark.line + 1 if mark is not None else None) from None
        if not isinstance(data, dict):
            raise LoadError(f"a manifest must be a mapping of keys, got {type(data).__name__}", path=manifest)
        _check_duplicate_keys(root, manifest)
        try:
            pack = cls.model_validate(data)
        except ValidationError as exc:
            raise _manifest_error(exc, manifest, root) from None
        pack._dir = manifest.parent
        pack._check_files(root)
        return pack

    def _check_files(self, root_node: yaml.Node | None = None) -> None:
        if not self.triples and not self.documents:
            raise LoadError("a pack needs at least one entry under 'triples' or 'documents'",
                            path=self.manifest_path)
        listed: list[tuple[list[Any], str]] = [(["triples", i, "path"], s.path) for i, s in enumerate(self.triples)]
        listed += [(["names", i], p) for i, p in enumerate(self.names)]
        listed += [(["documents", i, "path"], s.path) for i, s in enumerate(self.documents)]
        root = self._dir.resolve()
        for loc, relative in listed:
            key, line = loc[0], _line_of(root_node, loc)
            # A pack is self-contained: no absolute paths, no way out of its directory.
            if not self.file(relative).resolve().is_relative_to(root):
                raise LoadError(f"file listed under {key!r} is outside the pack directory: {relative!r}",
                                path=self.manifest_path, line=line)
            if self.file(relative).is_dir():
                raise LoadError(f"file listed under {key!r} is a directory, not a file: {relative!r}",
                                path=self.manifest_path, line=line)
            if not self.file(relative).is_file():
                raise LoadError(f"file listed under {key!r} does not exist: {relative!r} "
                                f"(paths are relative to {self._dir})", path=self.manifest_path, line=line)
        if self.scorer is not None:
            scorer = self.file(self.scorer)
            line = _key_line(self.manifest_path, "scorer")
            if not scorer.resolve().is_relative_to(root):
                raise LoadError("'scorer' is outside the pack directory", path=self.manifest_path, line=line,
                                value=self.scorer)
            if not (scorer / SCORER_MANIFEST).is_file():
                raise LoadError(f"'scorer' must be a directory of the pack holding a trained path scorer "
                                f"(with {SCORER_MANIFEST}; paths are relative to {self._dir})",
                                path=self.manifest_path, line=line, value=self.scorer)

    # -- reading the pack's data -----------------------------------------------------------------

    def triple_readers(self) -> list[TripleReader]:
        """One lazy reader per triple file (each exposes ``.names`` once read, for RDF labels)."""
        return [TripleReader(self.file(s.path), s.format, order=s.order, header=s.header, source=s.path)
                for s in self.triples]

    def read_triples(self) -> Iterator[RawTriple]:
        """All triples of the pack, file after file, streamed."""
        for reader in self.triple_readers():
            yield from reader

    def read_names(self) -> dict[str, str]:
        """Display names from the pack's ``names`` files (``id<TAB>name``); RDF labels come from
        the triple readers' ``.names`` as they are read."""
        names: dict[str, str] = {}
        for relative in self.names:
            names.update(read_names(self.file(relative)))
        return names

    def read_documents(self, domain: str | None = None) -> Iterator[DocChunk]:
        """The chunks of the pack's documents, ``domain`` defaulting to the pack name."""
        for spec in self.documents:
            for chunk in read_documents(self.file(spec.path), domain=domain or self.name,
                                        chunking=spec.chunking, chunk_size=spec.chunk_size,
                                        overlap=spec.overlap):
                # Provenance relative to the pack, whatever directory it was installed in.
                chunk.source = spec.path
                chunk.id = f"{spec.path}#{chunk.chunk}"
                yield chunk


def load_pack(directory: str | Path) -> Pack:
    """Read and validate a pack directory (see :meth:`Pack.load`)."""
    return Pack.load(directory)


def _manifest_error(exc: ValidationError, manifest: Path, root: yaml.Node | None) -> LoadError:
    """A LoadError for the first validation problem, with the YAML line of the key at fault."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = _loc_text(loc)
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = ", ".join(model.model_fields) if model is not None else ""
        message = f"unknown key {loc[-1]!r}{' in ' + _loc_text(loc[:-1]) if loc[:-1] else ''}; allowed keys: {allowed}"
        value = None
    elif error["type"] == "missing":
        message = f"missing required key {where!r}"
        value = None
    else:
        message = f"invalid value for {where!r}: {error['msg']}"
        value = error.get("input")
    return LoadError(message, path=manifest, line=_line_of(root, loc), value=value)


def _check_duplicate_keys(node: yaml.Node | None, manifest: Path) -> None:
    """A LoadError for a key given twice in one mapping (YAML would keep the last one without a word)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise LoadError(f"key {key.value!r} is given twice", path=manifest,
                                    line=key.start_mark.line + 1)
                seen.add(key.value)
            _check_duplicate_keys(value, manifest)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, manifest)


def _key_line(manifest: Path, key: str) -> int | None:
    """1-based line of a top-level ``key:`` in the manifest (for errors found after validation)."""
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith(f"{key}:"):
            return number
    return None


def _loc_text(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _model_at(loc: list[Any]) -> type[BaseModel] | None:
    """The pydantic model describing the mapping at ``loc`` (for listing its allowed keys)."""
    model: type[BaseModel] = Pack
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the key itself for mapping entries)."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
