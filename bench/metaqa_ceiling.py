"""Upper bounds of MetaQA 1-hop Hits@1 on the MetaQA KB, for any system, from the data alone.

The KB names entities by their text, so films that share a title share one node: "King Kong" holds the
facts of the 1933, 1976 and 2005 films. A question asks about one of them ("who starred in [King
Kong]" has the 2005 cast as its answers, "who acted in [King Kong]" the 1933 cast), and nothing in
the question says which. For each dev question the relation its type asks (``qa_dev_qtype.txt``:
``movie_to_director`` is ``directed_by``) is walked from the topic node; this gives

* ``oracle``: a gold answer is among the candidates (an oracle choosing among them scores this);
* ``ambiguous``: the candidates hold more than the gold answers (a name shared by several films);
* ``expected_random``: the expected Hits@1 of a system that finds the asked relation every time and
  picks one of its answers at random: what no system can beat on average without knowing the film;
* ``expected_popular``: the same, picking among the answers the asked relation reaches from the most
  nodes (a popularity prior): no better than random, so priors do not lift the bound either.

Reported for the whole dev file and for each half of :func:`kgllm.eval.metaqa.in_training_half`.
Writes ``bench/results/metaqa_ceiling.json``.

    python bench/metaqa_ceiling.py --data DIR/metaqa
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchjson import machine_info, write_result  # noqa: E402

# question type word -> the relation it asks (MetaQA's qtype names: "movie_to_director", "tag_to_movie")
RELATION = {"director": "directed_by", "writer": "written_by", "actor": "starred_actors", "year": "release_year",
            "genre": "has_genre", "language": "in_language", "tags": "has_tags", "tag": "has_tags",
            "imdbvotes": "has_imdb_votes", "imdbrating": "has_imdb_rating"}


def ceiling(data: Path, kb_dir: Path | None = None) -> dict[str, Any]:
    """The bounds of the module docstring for ``1-hop/qa_dev.txt``."""
    from kgllm.eval.metaqa import in_training_half, metaqa_kb, read_questions
    from kgllm.exceptions import BenchmarkError
    from kgllm.reasoning.paths import RelationGraph, step_code

    questions = read_questions(data / "1-hop" / "qa_dev.txt", data / "1-hop" / "qa_dev_qtype.txt")
    snapshot = metaqa_kb(data, kb_dir).store.snapshot("movies")
    graph = RelationGraph(snapshot)
    rows: dict[str, list[tuple[bool, bool, float, float]]] = {"all": [], "training": [], "held_out": []}
    for q in questions:
        if q.qtype is None or "_to_" not in q.qtype:
            raise BenchmarkError(f"{data / '1-hop' / 'qa_dev_qtype.txt'}: line {q.line}: no question type")
        source, target = q.qtype.split("_to_")
        inverse = source != "movie"
        relation = snapshot.relation_index(RELATION[source if inverse else target])
        topic = snapshot.node(q.topic)
        if relation is None or topic is None:
            row = (False, False, 0.0, 0.0)
        else:
            reached = [i for i in graph.expand(np.array([topic]), step_code(relation, inverse)).tolist() if i != topic]
            candidates = {snapshot.names[i] for i in reached}
            hits = len(candidates & set(q.answers))
            # A popularity prior: of the candidates, those the asked relation reaches from the most nodes.
            degree = {i: len(graph.expand(np.array([i]), step_code(relation, not inverse))) for i in reached}
            popular = {snapshot.names[i] for i in reached if degree[i] == max(degree.values())}
            row = (hits > 0, hits > 0 and not candidates <= set(q.answers), hits / len(candidates) if candidates else 0.0,
                   len(popular & set(q.answers)) / len(popular) if popular else 0.0)
        rows["all"].append(row)
        rows["training" if in_training_half(1, q.line) else "held_out"].append(row)
    out: dict[str, Any] = {}
    for part, values in rows.items():
        n = len(values)
        out[part] = {"n": n, "oracle": round(100 * sum(r[0] for r in values) / n, 2),
                     "ambiguous": sum(r[1] for r in values),
                     "ambiguous_pct": round(100 * sum(r[1] for r in values) / n, 2),
                     "expected_random": round(100 * sum(r[2] for r in values) / n, 2),
                     "expected_popular": round(100 * sum(r[3] for r in values) / n, 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the MetaQA folder (kb.txt, 1-hop/qa_dev*.txt)")
    parser.add_argument("--kb", type=Path, default=None, help="knowledge base directory to reuse")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "metaqa_ceiling.json")
    args = parser.parse_args()
    write_result(args.out, {"benchmark": "metaqa_ceiling", "file": "1-hop/qa_dev.txt", "hits@1_bounds": ceiling(args.data, args.kb),
                            "machine": machine_info()})


if __name__ == "__main__":
    main()
