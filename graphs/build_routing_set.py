"""Build the routing question sets (``graphs/routing/{dev,train}.jsonl``) for the bundled packs.

Usage::

    python graphs/build_routing_set.py --data DATA_DIR [--graphs graphs] [--per-domain 120] [--train-per-domain 600]

Each line is ``{"question": ..., "domain": ...}``. Questions come from each pack's own data:

* movies: real MetaQA dev questions (1/2/3-hop) whose topic entity is in the movies pack, half of
  them with the ``[brackets]`` removed;
* commonsense: real CommonsenseQA questions; science: real OpenBookQA questions;
* geography and medicine: templates over the pack's own entities and relations.

``dev`` and ``train`` never share a question: dev draws from MetaQA/CSQA/OBQA *dev* files, train from
other MetaQA dev questions and the CSQA/OBQA *train* files, and the templates split entities by hash.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

GEOGRAPHY_TEMPLATES = {
    "locatedin": ["Which region is {h} located in?", "Where is {h}?", "On which continent is {h}?",
                  "What subregion does {h} belong to?", "{h} is part of which region of the world?"],
    "neighbor": ["Which countries border {h}?", "What are the neighbouring countries of {h}?",
                 "Which country shares a border with {h}?", "What countries are next to {h}?"],
}
MEDICINE_TEMPLATES = ["What does {h} {r}?", "Which concepts does {h} {r}?", "{h} {r} what?",
                      "In biomedicine, what does a {h} {r}?"]


def _split(key: str) -> str:
    """Stable 50/50 assignment of a template entity to dev or train."""
    return "dev" if int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2 == 0 else "train"


def _read_tsv(path: Path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line]


def _names(pack: Path) -> dict[str, str]:
    path = pack / "names.tsv"
    return {row[0]: row[1] for row in _read_tsv(path)} if path.exists() else {}


def _movies(data: Path, graphs: Path, rng: random.Random) -> dict[str, list[str]]:
    entities = set()
    for line in (graphs / "movies" / "kb.txt").read_text(encoding="utf-8").splitlines():
        head, _, tail = line.split("|")
        entities.update((head, tail))
    questions = []
    for hops in ("1-hop", "2-hop", "3-hop"):
        for line in (data / "metaqa" / hops / "qa_dev.txt").read_text(encoding="utf-8").splitlines():
            question = line.split("\t")[0]
            topic = question[question.index("[") + 1:question.index("]")]
            if topic in entities:
                questions.append(question)
    rng.shuffle(questions)
    unbracketed = [q.replace("[", "").replace("]", "") if i % 2 else q for i, q in enumerate(questions)]
    half = len(unbracketed) // 2
    return {"dev": unbracketed[:half], "train": unbracketed[half:]}


def _multiple_choice(path: Path) -> list[str]:
    return [json.loads(line)["question"]["stem"] for line in path.read_text(encoding="utf-8").splitlines() if line]


def _templates(graphs: Path, pack: str, triples_file: str, make) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    names = _names(graphs / pack)
    relation_text = _relation_text(graphs / pack)
    out: dict[str, list[str]] = {"dev": [], "train": []}
    seen = set()
    for head, relation, _tail in _read_tsv(graphs / pack / triples_file):
        for question in make(names.get(head, head), relation, relation_text.get(relation, relation)):
            if question not in seen:
                seen.add(question)
                out[_split(head)].append(question)
    return out


def _relation_text(pack: Path) -> dict[str, str]:
    import yaml

    return dict(yaml.safe_load((pack / "manifest.yaml").read_text(encoding="utf-8")).get("relation_text") or {})


def build(data: Path, graphs: Path, per_domain: int, train_per_domain: int, seed: int = 13) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    pools: dict[str, dict[str, list[str]]] = {
        "movies": _movies(data, graphs, rng),
        "commonsense": {"dev": _multiple_choice(data / "commonsenseqa" / "dev.jsonl"),
                        "train": _multiple_choice(data / "commonsenseqa" / "train_inhouse.jsonl")},
        "science": {"dev": _multiple_choice(data / "openbookqa" / "dev.jsonl"),
                    "train": _multiple_choice(data / "openbookqa" / "train.jsonl")},
        "geography": _templates(graphs, "geography", "countries.tsv", lambda h, r, _t: [
            template.format(h=h) for template in GEOGRAPHY_TEMPLATES.get(r, [])]),
        "medicine": _templates(graphs, "medicine", "umls.tsv", lambda h, _r, t: [
            template.format(h=h, r=t.removeprefix("is ")) for template in MEDICINE_TEMPLATES]),
    }
    sets: dict[str, list[dict[str, str]]] = {"dev": [], "train": []}
    for domain, pool in sorted(pools.items()):
        for split in ("dev", "train"):
            questions = sorted(set(pool[split]))
            rng.shuffle(questions)
            size = per_domain if split == "dev" else train_per_domain
            sets[split].extend({"question": q, "domain": domain} for q in questions[:size])
    for split in sets:
        rng.shuffle(sets[split])
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared benchmark data folder")
    parser.add_argument("--graphs", type=Path, default=HERE)
    parser.add_argument("--per-domain", type=int, default=120, help="dev questions per domain")
    parser.add_argument("--train-per-domain", type=int, default=600, help="training questions per domain")
    args = parser.parse_args()
    sets = build(args.data, args.graphs, args.per_domain, args.train_per_domain)
    out = args.graphs / "routing"
    out.mkdir(exist_ok=True)
    for split, rows in sets.items():
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{out / f'{split}.jsonl'}: {len(rows)} questions")


if __name__ == "__main__":
    main()
