"""WordNet 3.0 as concept triples, a second graph beside CN-100K for multiple-choice grounding.

CN-100K names about two thirds of CommonsenseQA's answer choices; WordNet names nearly all of them. The
database is read with NLTK's WordNet reader from any WordNet 3.0 folder: Debian's ``wordnet-base``
with ``wordnet-sense-index``, in ``/usr/share/wordnet``) or NLTK's own download (``nltk_data/corpora/wordnet``).
NLTK reads only files inside its data path, and Debian's folder lacks the ``lexnames`` file it needs, so
the database is copied once (36 MB) into a private NLTK data folder, with the file added when missing.

Triples are lemma-level, in CN-100K's ``relation<TAB>head<TAB>tail`` layout with lower-cased names
(``hot dog``, not ``hot_dog``), so both graphs share nodes wherever they name the same concept:

* ``wn_synonym``: consecutive lemmas of a synset (a chain joins them all);
* ``wn_isa``, ``wn_instance_of``, ``wn_part_of``, ``wn_made_of``, ``wn_member_of``, ``wn_entails``,
  ``wn_causes``, ``wn_similar_to``, ``wn_attribute``: between the first :data:`LEMMAS_PER_SYNSET`
  lemmas of the two synsets (the rarer lemmas would multiply edges without adding concepts);
* ``wn_antonym`` and ``wn_derived``: WordNet's lemma-to-lemma links.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kgllm.exceptions import ConfigError

__all__ = ["find_wordnet", "open_wordnet", "synset_triples", "wordnet_triples", "write_concept_graph", "with_wordnet",
           "SYNSET_RELATIONS",
           "LEXNAMES"]

#: Where WordNet is looked for when neither a folder nor ``$KGLLM_WORDNET`` is given.
DEFAULT_FOLDERS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/share/nltk_data/corpora/wordnet")
#: The database files NLTK's reader opens.
_DATABASE = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb", "index.adj",
             "index.adv", "index.sense", "noun.exc", "verb.exc", "adj.exc", "adv.exc")
#: WordNet 3.0's lexicographer files, numbered as in lexnames(5WN); NLTK needs them as a ``lexnames`` file.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
#: Synset-to-synset links written, as NLTK method -> relation name.
SYNSET_RELATIONS = {
    "hypernyms": "wn_isa", "instance_hypernyms": "wn_instance_of", "part_holonyms": "wn_part_of",
    "substance_holonyms": "wn_made_of", "member_holonyms": "wn_member_of", "entailments": "wn_entails",
    "causes": "wn_causes", "similar_tos": "wn_similar_to", "attributes": "wn_attribute",
}
LEMMAS_PER_SYNSET = 2
_FORMAT = 1  # bump when the triples written change: cached joined graphs are keyed by it


def find_wordnet(folder: str | Path | None = None) -> Path:
    """The WordNet database folder: ``folder``, else ``$KGLLM_WORDNET``, else a usual install place.

    A folder named by ``folder`` or ``$KGLLM_WORDNET`` is the only one looked at: when it lacks the
    database, another WordNet found elsewhere is not used in its place.

    Raises:
        ConfigError: no folder holding the WordNet database files, with what was looked at.
    """
    named = folder or os.environ.get("KGLLM_WORDNET")
    candidates = [Path(named)] if named else [Path(p) for p in DEFAULT_FOLDERS]
    for path in candidates:
        if all((path / name).is_file() for name in _DATABASE):
            return path
    looked = ", ".join(str(p) for p in candidates) + ("" if folder or not named else " ($KGLLM_WORDNET)")
    raise ConfigError(f"no WordNet 3.0 database (data.noun, index.noun, ...) in {looked}; install it with "
                      "`apt-get install wordnet-base wordnet-sense-index` or pass its folder")


def _readable_copy(folder: Path, cache_dir: Path | None) -> Path:
    """A private NLTK data folder holding ``corpora/wordnet``: the database with ``lexnames`` added."""
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    base = (cache_dir if cache_dir is not None else Path(tempfile.gettempdir())) / f"kgllm-wordnet-{key}"
    if base.is_dir():
        return base
    # Built beside and renamed into place: a process reading the copy never sees it half-written.
    base.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{base.name}.", dir=base.parent))
    try:
        target = staging / "corpora" / "wordnet"
        target.mkdir(parents=True)
        for name in _DATABASE:
            shutil.copyfile(folder / name, target / name)
        if (folder / "lexnames").is_file():
            shutil.copyfile(folder / "lexnames", target / "lexnames")
        else:
            lines = [f"{i:02d}\t{name}\t{_syntactic_category(name)}" for i, name in enumerate(LEXNAMES)]
            (target / "lexnames").write_text("\n".join(lines) + "\n", encoding="ascii")
        try:
            staging.rename(base)
        except OSError:
            if not base.is_dir():
                raise  # else another process got there first: its copy is used
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when renamed
    return base


def _syntactic_category(lexname: str) -> int:
    return {"noun": 1, "verb": 2, "adj": 3, "adv": 4}[lexname.split(".")[0]]


def open_wordnet(folder: str | Path | None = None, *, cache_dir: Path | None = None) -> Any:
    """An NLTK ``WordNetCorpusReader`` over the database found by :func:`find_wordnet`."""
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    data = _readable_copy(find_wordnet(folder), cache_dir)
    # NLTK reads files only inside its data path, and its reader opens ``corpora/wordnet/index.sense``
    # through that path on creation (a version map), so the copy has that layout.
    if str(data) not in nltk.data.path:
        nltk.data.path.append(str(data))
    with warnings.catch_warnings():  # "multilingual functions are not available": not used here
        warnings.simplefilter("ignore", UserWarning)
        return WordNetCorpusReader(str(data / "corpora" / "wordnet"), None)


def _name(lemma: Any) -> str:
    return str(lemma.name()).replace("_", " ").lower()


def synset_triples(synset: Any) -> Iterator[tuple[str, str, str]]:
    """``(relation, head, tail)`` lemma triples of one synset's links (may repeat; links between two synsets
    or two lemmas never join a name to itself)."""
    lemmas = synset.lemmas()
    names = [_name(lemma) for lemma in lemmas]
    # kept as measured: a synset spelling a lemma in two cases ("Baroque", "baroque") gives a self-loop
    yield from (("wn_synonym", head, tail) for head, tail in zip(names, names[1:]))
    for method, relation in SYNSET_RELATIONS.items():
        for other in getattr(synset, method)():
            tails = [_name(lemma) for lemma in other.lemmas()[:LEMMAS_PER_SYNSET]]
            yield from ((relation, head, tail) for head in names[:LEMMAS_PER_SYNSET] for tail in tails
                        if head != tail)
    for lemma, name in zip(lemmas, names):
        for relation, others in (("wn_antonym", lemma.antonyms()),
                                 ("wn_derived", lemma.derivationally_related_forms())):
            yield from ((relation, name, _name(other)) for other in others if _name(other) != name)


def wordnet_triples(reader: Any) -> Iterator[tuple[str, str, str]]:
    """The triples of every synset of the database, each once."""
    seen: set[tuple[str, str, str]] = set()
    for synset in reader.all_synsets():
        for triple in synset_triples(synset):
            if triple not in seen:
                seen.add(triple)
                yield triple


def write_concept_graph(out: Path, graphs: Iterable[Path] = (), *, wordnet: Any = None) -> Path:
    """Write one ``relation<TAB>head<TAB>tail`` file: the given triple files, then WordNet's triples.

    Written beside ``out`` and renamed into place, so a failed run leaves no partial graph.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # runs writing the same cached graph do not collide
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for path in graphs:
                with Path(path).open(encoding="utf-8") as source:
                    for line in source:
                        handle.write(line if line.endswith("\n") else line + "\n")
            if wordnet is not None:
                for relation, head, tail in wordnet_triples(wordnet):
                    handle.write(f"{relation}\t{head}\t{tail}\n")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def with_wordnet(graph_path: str | Path, folder: str | Path | None = None, *, cache_dir: Path) -> Path:
    """The triples of ``graph_path`` followed by WordNet's, written once into ``cache_dir`` and reused.

    The file is keyed by the graph's content and the WordNet folder, so a changed graph gets a new one.
    """
    wordnet_folder = find_wordnet(folder)
    digest = hashlib.sha256(Path(graph_path).read_bytes())
    digest.update(f"\0{wordnet_folder.resolve()}\0{_FORMAT}".encode())
    out = Path(cache_dir) / f"graph-wordnet-{digest.hexdigest()[:16]}.tsv"
    if not out.is_file():
        try:
            write_concept_graph(out, [Path(graph_path)], wordnet=open_wordnet(wordnet_folder, cache_dir=cache_dir))
        except OSError as exc:  # a read-only or full cache_dir
            raise ConfigError(f"cannot build the WordNet graph in cache_dir {str(cache_dir)!r}: {exc}") from exc
    return out
