"""Build the bundled domain packs (``graphs/<pack>/``) from the shared benchmark data folder.

Usage::

    python graphs/build_packs.py --data DATA_DIR [--out graphs] [--only movies,geography]

``DATA_DIR`` holds ``metaqa/``, ``countries/``, ``umls/``, ``conceptnet_100k/``, ``commonsenseqa/`` and
``openbookqa/`` (see the data README). The output is deterministic: running it twice gives the
same bytes. Every pack written is then loaded back with :func:`kgllm.loaders.load_pack`, all of
its files are parsed, and its ``relation_text`` and ``examples`` are checked against its graph.

Only training/dev material is used: the MetaQA subset is chosen from dev questions (so that
demo questions have complete answers), the ConceptNet subset from CommonsenseQA *training*
concepts, the Countries graph is the S1 training split.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import pairwise
from pathlib import Path

import yaml

from kgllm.eval.metaqa import RELATION_ALIASES as MOVIES_RELATION_ALIASES
from kgllm.eval.metaqa import RELATION_TEXT as MOVIES_RELATION_TEXT
from kgllm.exceptions import LoadError
from kgllm.loaders import load_pack, read_triples

HERE = Path(__file__).resolve().parent

# ------------------------------------------------------------------------------------------------
# movies: a MetaQA subset in which many dev questions keep exactly their full-KB answers


METAQA_RELATIONS = {  # entity type in a MetaQA question type -> relation linking films to it
    "actor": "starred_actors", "director": "directed_by", "writer": "written_by", "genre": "has_genre",
    "language": "in_language", "year": "release_year", "tag": "has_tags", "tags": "has_tags",
    "imdbrating": "has_imdb_rating", "imdbvotes": "has_imdb_votes",
}
# Demo questions (question, topic, MetaQA question type); the pack keeps their full-KB answers.
MOVIES_EXAMPLES = [
    ("Who directed [Kismet]?", "Kismet", "movie_to_director"),
    ("Which films did [Marlene Dietrich] act in?", "Marlene Dietrich", "actor_to_movie"),
    ("Who directed the films that [Marlene Dietrich] acted in?", "Marlene Dietrich", "actor_to_movie_to_director"),
    ("When were the films written by [Edward Knoblock] released?", "Edward Knoblock", "writer_to_movie_to_year"),
    ("Which genres are the films directed by [William Dieterle]?", "William Dieterle", "director_to_movie_to_genre"),
]


class _Graph:
    """Films -> relation -> objects and back, over a list of (film, relation, object) triples."""

    def __init__(self, triples: Iterable[tuple[str, str, str]]) -> None:
        self.out: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.inv: dict[tuple[str, str], set[str]] = defaultdict(set)
        for h, r, t in triples:
            self.out[(h, r)].add(t)
            self.inv[(t, r)].add(h)

    def walk(self, topic: str, qtype: str) -> tuple[set[str], set[str]]:
        """(answers, films visited) of a MetaQA question type from ``topic``.

        The topic entity is excluded at every hop, as in MetaQA's gold answers.
        """
        types = qtype.split("_to_")
        frontier = {topic}
        films: set[str] = set()
        for src, dst in pairwise(types):
            if src == "movie":
                films |= frontier
                step = {t for e in frontier for t in self.out.get((e, METAQA_RELATIONS[dst]), ())}
            else:
                step = {h for e in frontier for h in self.inv.get((e, METAQA_RELATIONS[src]), ())}
            frontier = step - {topic}
        if types[-1] == "movie":
            films |= frontier
        return frontier, films


def _metaqa_questions(metaqa: Path) -> list[tuple[int, str, str, set[str]]]:
    """Dev questions of all hops interleaved: (hops, question, qtype, gold answers)."""
    per_hop = []
    for hops in (1, 2, 3):
        rows = []
        qa = (metaqa / f"{hops}-hop" / "qa_dev.txt").read_text(encoding="utf-8").splitlines()
        qtypes = (metaqa / f"{hops}-hop" / "qa_dev_qtype.txt").read_text(encoding="utf-8").splitlines()
        for line, qtype in zip(qa, qtypes, strict=True):
            question, answers = line.split("\t")
            rows.append((hops, question, qtype.strip(), set(answers.split("|"))))
        per_hop.append(rows)
    interleaved = []
    for i in range(max(len(r) for r in per_hop)):
        interleaved += [rows[i] for rows in per_hop if i < len(rows)]
    return interleaved


def _topic(question: str) -> str:
    return question[question.index("[") + 1: question.index("]")]


def build_movies(data: Path, out: Path, *, films: int = 1500, per_question: int = 8,
                 scorer: bool = True) -> dict[str, object]:
    """About ``films`` films with all their triples: the demo questions' films, then those of dev
    questions (1-, 2- and 3-hop interleaved) needing at most ``per_question`` more films each.

    With ``scorer`` the pack's path scorer (``scorer/``) is trained on the dev questions whose
    answers are complete in the pack; without it an existing ``scorer/`` is kept as it is.
    """
    metaqa = data / "metaqa"
    kb = [(t.head, t.relation, t.tail) for t in read_triples(metaqa / "kb.txt", "pipe")]
    full = _Graph(kb)
    chosen: dict[str, None] = {}  # an ordered set
    for _, topic, qtype in MOVIES_EXAMPLES:  # the demo questions first: their answers must be complete
        chosen.update(dict.fromkeys(sorted(full.walk(topic, qtype)[1])))
    questions = _metaqa_questions(metaqa)
    for _, question, qtype, _ in questions:
        if len(chosen) >= films:
            break
        answers, visited = full.walk(_topic(question), qtype)
        new = visited - chosen.keys()
        if answers and len(new) <= per_question and len(chosen) + len(new) <= films:
            chosen.update(dict.fromkeys(sorted(new)))
    subset = [t for t in kb if t[0] in chosen]
    pack = _Graph(subset)
    answerable: dict[int, list[int]] = {1: [0, 0], 2: [0, 0], 3: [0, 0]}
    complete: list[tuple[int, str, list[str]]] = []  # (hops, question, answers) answered fully by the pack
    for hops, question, qtype, _ in questions:
        answers, _ = full.walk(_topic(question), qtype)
        answerable[hops][1] += 1
        if answers and pack.walk(_topic(question), qtype)[0] == answers:
            answerable[hops][0] += 1
            complete.append((hops, question, sorted(answers)))
    _write_lines(out / "kb.txt", ("|".join(t) for t in subset))
    notes: dict[str, object] = {}
    if scorer:
        notes["scorer"] = train_movies_scorer(out, complete)
    elif not (out / MOVIES_SCORER / "manifest.json").is_file():
        raise SystemExit(f"--no-scorer needs an existing {out / MOVIES_SCORER}; build once without it")
    _write_manifest(out, {
        "name": "movies",
        "description": "Films and who made them: directors, screenwriters, actors, release years, genres, "
                       "languages, IMDb ratings and descriptive tags. Answers questions such as who directed "
                       "or starred in a film, which films an actor appeared in, and when or in which language "
                       "a film was released.",
        "license": "CC BY 3.0",
        "attribution": "MetaQA (Zhang et al., AAAI 2018) knowledge base, derived from WikiMovies (Miller et "
                       "al., 2016); a subset of its films with all of their triples.",
        "source": "https://github.com/yuyuz/MetaQA",
        "triples": [{"path": "kb.txt", "format": "pipe"}],
        "relation_text": MOVIES_RELATION_TEXT,
        "relation_aliases": MOVIES_RELATION_ALIASES,
        "reasoning": {"hops": 3},
        "scorer": MOVIES_SCORER,
        "examples": [question for question, _, _ in MOVIES_EXAMPLES],
    })
    for _, topic, qtype in MOVIES_EXAMPLES:
        assert pack.walk(topic, qtype)[0] == full.walk(topic, qtype)[0], (topic, qtype)
    return {"films": len(chosen), "answerable": {f"{h}-hop": f"{a}/{n}" for h, (a, n) in answerable.items()},
            **notes}


MOVIES_SCORER = "scorer"
"""The movies pack's trained path scorer, relative to the pack."""


def train_movies_scorer(out: Path, questions: list[tuple[int, str, list[str]]], *, seed: int = 0) -> dict[str, object]:
    """Train the movies pack's path scorer on ``questions`` over the pack's own ``kb.txt``.

    The graph is loaded exactly as ``kb.load(pack)`` loads it, so the scorer's KB fingerprint
    (relation list + entity count) matches the installed pack. The weights go to ``out/scorer``.
    """
    import tempfile

    import torch

    from kgllm.kb import open_kb
    from kgllm.reasoning.reasoner import PathReasoner
    from kgllm.reasoning.training import TrainingExample, train_path_scorer

    torch.set_num_threads(2)  # a fixed thread count keeps the float sums (and so the weights) reproducible
    with tempfile.TemporaryDirectory() as tmp:
        kb = open_kb(Path(tmp) / "kb")
        try:
            kb.load_triples("movies", out / "kb.txt", format="pipe")
            ctx = kb.pipeline.context("movies")
            index = ctx.snapshot.index
            examples = []
            for hops, question, answers in questions:
                start = question.index("[") + 1
                text = PathReasoner.mask(question, start, question.index("]"))
                examples.append(TrainingExample(text, [index[_topic(question)]], [index[a] for a in answers], hops))
            model, stats = train_path_scorer(ctx.graph, kb.embedder, examples, max_hops=3, hidden=256,
                                             epochs=8, seed=seed)
            model.manifest["training"] = {"data": "MetaQA dev questions (1/2/3-hop) answered completely by the pack",
                                          "seed": seed}
            target = out / MOVIES_SCORER
            for stale in target.glob("*") if target.is_dir() else ():
                stale.unlink()
            model.save(target)
        finally:
            kb.close()
    return {"examples": stats["examples"], "supervised": stats["supervised"], "final_loss": stats["final_loss"]}


# Demo questions of the other packs: (question, entity, relation, inverse) -- the build checks that
# the entity has at least one such edge, so every example has an answer in the pack's graph.
EXAMPLES: dict[str, list[tuple[str, str, str, bool]]] = {
    "geography": [
        ("Which region is [France] located in?", "france", "locatedin", False),
        ("Which countries border [Germany]?", "germany", "neighbor", False),
        ("Where is [Western Africa] located?", "western_africa", "locatedin", False),
        ("Which countries neighbour [Brazil]?", "brazil", "neighbor", False),
    ],
    "medicine": [
        ("What does a [virus] cause?", "virus", "causes", False),
        ("What does a [pharmacologic substance] treat?", "pharmacologic_substance", "treats", False),
        ("Where does a [neoplastic process] occur?", "neoplastic_process", "occurs_in", False),
        ("What is a [bacterium]?", "bacterium", "isa", False),
    ],
    "commonsense": [
        ("Where is a [fox] usually found?", "fox", "AtLocation", False),
        ("What is a [pen] used for?", "pen", "UsedFor", False),
        ("What is [bread] made of?", "bread", "MadeOf", False),
        ("What does [exercise] cause?", "exercise", "Causes", False),
    ],
    "science": [
        ("What does a [berry] contain?", "berry", "contains", False),
        ("What is a [battery] a source of?", "battery", "is_a_source_of", False),
        ("What is [a canyon] made of?", "canyon", "is_made_of", False),
        ("Which things are a source of [heat]?", "heat", "is_a_source_of", True),
    ],
}

# ------------------------------------------------------------------------------------------------
# geography: Countries S1


def _title(entity: str) -> str:
    return " ".join(w if w in ("and", "of", "the") else w.capitalize() for w in entity.split("_"))


def build_geography(data: Path, out: Path) -> dict[str, object]:
    src = data / "countries" / "countries_S1"
    triples = [(t.head, t.relation, t.tail) for t in read_triples(src / "train.txt", "tsv")]
    _write_lines(out / "countries.tsv", ("\t".join(t) for t in triples))
    entities = sorted({e for h, _, t in triples for e in (h, t)})
    _write_lines(out / "names.tsv", (f"{e}\t{_title(e)}" for e in entities))
    regions = (src / "regions.list").read_text(encoding="utf-8").split()
    _write_manifest(out, {
        "name": "geography",
        "description": "World geography: the countries of the world, which subregion and region (continent) "
                       f"each lies in ({', '.join(sorted(regions))}), and which countries border each other. "
                       "Answers questions such as where a country is located and what its neighbours are.",
        "license": "MIT",
        "attribution": "Countries dataset (Bouchard, Singh and Trouillon, 2015), S1 training split of the "
                       "Neural Theorem Prover splits, via DeepGraphLearning/KnowledgeGraphEmbedding.",
        "source": "https://github.com/DeepGraphLearning/KnowledgeGraphEmbedding",
        "triples": [{"path": "countries.tsv", "format": "tsv"}],
        "names": ["names.tsv"],
        "relation_text": {"locatedin": "is located in", "neighbor": "borders"},
        "same_as": _same_as_commonsense(data, entities),
        "reasoning": {"hops": 2},
        "examples": [question for question, *_ in EXAMPLES["geography"]],
    })
    return {}


# ------------------------------------------------------------------------------------------------
# medicine: UMLS semantic network

UMLS_RELATION_TEXT = {
    "adjacent_to": "is adjacent to", "affects": "affects", "analyzes": "analyzes",
    "assesses_effect_of": "assesses the effect of", "associated_with": "is associated with",
    "carries_out": "carries out", "causes": "causes", "co-occurs_with": "co-occurs with",
    "complicates": "complicates", "conceptual_part_of": "is a conceptual part of",
    "conceptually_related_to": "is conceptually related to", "connected_to": "is connected to",
    "consists_of": "consists of", "contains": "contains", "degree_of": "is a degree of",
    "derivative_of": "is a derivative of", "developmental_form_of": "is a developmental form of",
    "diagnoses": "diagnoses", "disrupts": "disrupts", "evaluation_of": "is an evaluation of",
    "exhibits": "exhibits", "indicates": "indicates", "ingredient_of": "is an ingredient of",
    "interacts_with": "interacts with", "interconnects": "interconnects", "isa": "is a",
    "issue_in": "is an issue in", "location_of": "is the location of", "manages": "manages",
    "manifestation_of": "is a manifestation of", "measurement_of": "is a measurement of",
    "measures": "measures", "method_of": "is a method of", "occurs_in": "occurs in", "part_of": "is part of",
    "performs": "performs", "practices": "practices", "precedes": "precedes", "prevents": "prevents",
    "process_of": "is a process of", "produces": "produces", "property_of": "is a property of",
    "result_of": "is a result of", "surrounds": "surrounds", "treats": "treats", "uses": "uses",
}


def build_medicine(data: Path, out: Path) -> dict[str, object]:
    triples = [(t.head, t.relation, t.tail) for t in read_triples(data / "umls" / "train.txt", "tsv")]
    _write_lines(out / "umls.tsv", ("\t".join(t) for t in triples))
    entities = sorted({e for h, _, t in triples for e in (h, t)})
    _write_lines(out / "names.tsv", (f"{e}\t{e.replace('_', ' ')}" for e in entities))
    _write_manifest(out, {
        "name": "medicine",
        "description": "Biomedical concept types of the UMLS semantic network: diseases, organisms, "
                       "anatomy, chemicals, drugs, procedures and findings, and how they relate (what "
                       "causes, treats, prevents, diagnoses or is located in what). Answers questions about "
                       "biomedical and clinical concepts.",
        "license": "No explicit license (research dataset); UMLS semantic network content from the US "
                   "National Library of Medicine.",
        "attribution": "UMLS knowledge graph of Kok and Domingos (ICML 2007), training split as distributed "
                       "with PyKEEN.",
        "source": "https://github.com/pykeen/pykeen",
        "triples": [{"path": "umls.tsv", "format": "tsv"}],
        "names": ["names.tsv"],
        "relation_text": UMLS_RELATION_TEXT,
        "reasoning": {"hops": 2},
        "examples": [question for question, *_ in EXAMPLES["medicine"]],
    })
    return {}


# ------------------------------------------------------------------------------------------------
# commonsense: a dense ConceptNet (CN-100K) subset around CommonsenseQA training concepts

CONCEPTNET_RELATION_TEXT = {
    "AtLocation": "is found at", "UsedFor": "is used for", "IsA": "is a", "CapableOf": "is capable of",
    "HasPrerequisite": "requires", "HasProperty": "has the property", "Causes": "causes", "HasA": "has",
    "MotivatedByGoal": "is motivated by", "Desires": "desires", "CausesDesire": "makes one want to",
    "PartOf": "is part of", "ReceivesAction": "can be", "NotDesires": "does not desire",
    "MadeOf": "is made of", "NotCapableOf": "is not capable of", "DefinedAs": "is defined as",
    "HasFirstSubevent": "begins with", "HasLastSubevent": "ends with", "NotHasProperty": "does not have the property",
    "NotIsA": "is not a", "RelatedTo": "is related to", "CreatedBy": "is created by", "NotHasA": "does not have",
    "SymbolOf": "is a symbol of", "NotMadeOf": "is not made of", "InstanceOf": "is an instance of",
    "HasSubevent": "involves", "InheritsFrom": "inherits from", "LocatedNear": "is located near",
    "HasPainIntensity": "has pain intensity", "HasPainCharacter": "has pain character",
    "DesireOf": "is desired by", "LocationOfAction": "is where one can",
}


def _commonsense_triples(data: Path) -> list[tuple[str, str, str]]:
    """CN-100K training triples joining a CommonsenseQA training question concept to another
    training concept (question concept or answer choice): dense and on-topic. (relation, head, tail)."""
    question_concepts: set[str] = set()
    concepts: set[str] = set()
    with (data / "commonsenseqa" / "train_inhouse.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)["question"]
            question_concepts.add(item["question_concept"].lower())
            concepts.update(c["text"].lower() for c in item["choices"])
    concepts |= question_concepts
    rows = []
    for t in read_triples(data / "conceptnet_100k" / "train.txt", "tsv", order="rht"):
        if ((t.head in question_concepts and t.tail in concepts)
                or (t.tail in question_concepts and t.head in concepts)):
            rows.append((t.relation, t.head, t.tail))
    return rows


def _same_as_commonsense(data: Path, entities: Iterable[str]) -> list[dict[str, str]]:
    """``same_as`` links from a pack's entities to identical commonsense concepts (``_`` read as a space)."""
    concepts = {e for _, h, t in _commonsense_triples(data) for e in (h, t)}
    links = []
    for entity in sorted(set(entities)):
        concept = entity.replace("_", " ")
        if concept in concepts:
            links.append({"entity": entity, "same_as_domain": "commonsense", "same_as_entity": concept})
    return links


def build_commonsense(data: Path, out: Path) -> dict[str, object]:
    _write_lines(out / "conceptnet.tsv", ("\t".join(row) for row in _commonsense_triples(data)))
    _write_manifest(out, {
        "name": "commonsense",
        "description": "Everyday commonsense knowledge about objects, places, people and actions: where "
                       "things are found, what they are used for, what they are made of, what causes what, "
                       "what people want and do. Answers commonsense questions about ordinary concepts.",
        "license": "CC BY-SA 4.0",
        "attribution": "ConceptNet 5 (Speer et al.), CN-100K split (Li et al., ACL 2016); subset of the "
                       "training triples linking CommonsenseQA (Talmor et al., 2019) training concepts.",
        "source": "https://conceptnet.io",
        "triples": [{"path": "conceptnet.tsv", "format": "tsv", "order": "rht"}],
        "relation_text": CONCEPTNET_RELATION_TEXT,
        "reasoning": {"hops": 2},
        "examples": [question for question, *_ in EXAMPLES["commonsense"]],
    })
    return {}


# ------------------------------------------------------------------------------------------------
# science: the OpenBookQA open book, plus triples from its simplest facts

_FACT = re.compile(
    r"^(?:an? |the )?(?P<head>[a-z][a-z -]{1,40}?) (?P<rel>is a kind of|is a type of|is a source of|is made of|"
    r"is part of|causes|requires|produces|contains) (?:an? |the )?(?P<tail>[a-z][a-z -]{1,40})$")
_CLAUSE = re.compile(r"\b(when|if|by|because|that|which|than|to|for|used|can|may|are|is)\b")
SCIENCE_RELATION_TEXT = {
    "is_a_kind_of": "is a kind of", "is_a_source_of": "is a source of", "is_made_of": "is made of",
    "is_part_of": "is part of", "causes": "causes", "requires": "requires", "produces": "produces",
    "contains": "contains",
}


def build_science(data: Path, out: Path) -> dict[str, object]:
    book = data / "openbookqa" / "openbook.txt"
    facts = []
    for line in book.read_text(encoding="utf-8").splitlines():
        match = _FACT.match(line.strip().strip('"').strip())
        # Keep only plain "X rel Y" facts: no clause hidden in the head or the tail.
        if match and not _CLAUSE.search(match["head"]) and not _CLAUSE.search(match["tail"]):
            rel = match["rel"].replace("is a type of", "is a kind of").replace(" ", "_")
            facts.append((match["head"], rel, match["tail"]))
    facts = sorted(set(facts))
    (out / "openbook.txt").write_bytes(book.read_bytes())
    _write_lines(out / "facts.tsv", ("\t".join(f) for f in facts))
    _write_manifest(out, {
        "name": "science",
        "description": "Elementary science facts (grades 3-9): physics, chemistry, biology, earth and space "
                       "science; energy, electricity, heat, light, matter, organisms, ecosystems, weather, "
                       "the solar system. Answers science questions and explains them with supporting facts.",
        "license": "Apache-2.0 (AI2 OpenBookQA release)",
        "attribution": "OpenBookQA open book of 1,326 science facts (Mihaylov et al., EMNLP 2018), Allen "
                       "Institute for AI; triples extracted by pattern from its simplest facts.",
        "source": "https://allenai.org/data/open-book-qa",
        "triples": [{"path": "facts.tsv", "format": "tsv"}],
        "documents": [{"path": "openbook.txt", "chunking": "line"}],
        "relation_text": SCIENCE_RELATION_TEXT,
        "same_as": _same_as_commonsense(data, (e for h, _, t in facts for e in (h, t))),
        "reasoning": {"hops": 1},
        "examples": [question for question, *_ in EXAMPLES["science"]],
    })
    return {"facts": len(facts)}


# ------------------------------------------------------------------------------------------------


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line + "\n")


def _write_manifest(out: Path, manifest: dict[str, object]) -> None:
    text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100)
    # One line per cross-pack link keeps long ``same_as`` lists readable.
    links = manifest.get("same_as")
    if isinstance(links, list) and links:
        block = yaml.safe_dump({"same_as": links}, sort_keys=False, allow_unicode=True, width=100)
        flow = "same_as:\n" + "".join(
            "- " + yaml.safe_dump(link, default_flow_style=True, width=1000).strip() + "\n" for link in links)
        text = text.replace(block, flow)
    header = "# Generated by graphs/build_packs.py; edit that script, not this file.\n"
    (out / "manifest.yaml").write_text(header + text, encoding="utf-8")


def verify(directory: Path) -> dict[str, object]:
    """Load a pack back and check it: files parse, relations have text, examples name entities."""
    pack = load_pack(directory)
    relations: set[str] = set()
    entities: set[str] = set()
    edges: set[tuple[str, str, bool]] = set()  # (entity, relation, inverse) that exist
    triples: set[tuple[str, str, str]] = set()  # distinct, as stores keep them: a repeated line is one triple
    for head, relation, tail, _, _ in pack.read_triples():
        relations.add(relation)
        entities.update((head, tail))
        edges.update(((head, relation, False), (tail, relation, True)))
        triples.add((head, relation, tail))
    for link in pack.same_as:
        if link.entity not in entities:
            raise LoadError(f"same_as names {link.entity!r}, not an entity of the pack", path=pack.manifest_path)
    for question, entity, relation, inverse in EXAMPLES.get(pack.name, []):
        if (entity, relation, inverse) not in edges:
            raise LoadError(f"example has no answer: no {relation!r} edge at {entity!r}",
                            path=pack.manifest_path, value=question)
    names = pack.read_names()
    missing = sorted(relations - pack.relation_text.keys())
    if missing:
        raise LoadError(f"relations without relation_text: {missing}", path=pack.manifest_path)
    known = {e.lower() for e in entities} | {n.lower() for n in names.values()}
    for example in pack.examples:
        for mention in re.findall(r"\[([^\]]+)\]", example):
            if mention.lower() not in known and re.sub(r"^(an?|the) ", "", mention.lower()) not in known:
                raise LoadError(f"example mentions {mention!r}, not an entity of the pack",
                                path=pack.manifest_path, value=example)
    chunks = sum(1 for _ in pack.read_documents())
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    return {"triples": len(triples), "entities": len(entities), "relations": len(relations), "chunks": chunks,
            "kib": round(size / 1024)}


BUILDERS: dict[str, Callable[[Path, Path], dict[str, object]]] = {
    "movies": build_movies, "geography": build_geography, "medicine": build_medicine,
    "commonsense": build_commonsense, "science": build_science,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared benchmark data folder")
    parser.add_argument("--out", type=Path, default=HERE, help="where the pack folders go (default: graphs/)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BUILDERS)}")
    parser.add_argument("--no-scorer", action="store_true",
                        help="do not train the movies path scorer; keep the one already in OUT/movies/scorer")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BUILDERS)
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown pack(s) {unknown}; choose from {', '.join(BUILDERS)}")
    print("| pack | triples | entities | relations | chunks | size (KiB) | notes |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        if name == "movies":
            notes = build_movies(args.data, out, scorer=not args.no_scorer)
        else:
            notes = BUILDERS[name](args.data, out)
        stats = verify(out)
        print(f"| {name} | {stats['triples']} | {stats['entities']} | {stats['relations']} | {stats['chunks']} "
              f"| {stats['kib']} | {json.dumps(notes) if notes else ''} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
