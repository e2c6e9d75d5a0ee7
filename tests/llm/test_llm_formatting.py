"""format_answer: what `kgllm ask` prints, for answers with no paths, inferred hops and chains across experts."""

from __future__ import annotations

from kgllm.formatting import format_answer
from kgllm.types import Answer, Hop, ReasoningPath


def test_no_paths_and_no_text():
    assert format_answer(Answer(question="Who is [Nobody]?")) == "Q: Who is [Nobody]?\nA: (no answer)"


def test_cited_facts_are_listed_with_their_provenance(movie_answer):
    # An LLM's text cites numbers only: the reader must be able to look up [2] and [1] without --json.
    printed = format_answer(movie_answer.model_copy(update={"text": "Robert Zemeckis [2], see also [1, 9]."}))
    assert "   fact [2]: Forrest Gump directed by Robert Zemeckis  (movies, kb.txt:11)" in printed
    assert "   fact [1]: Forrest Gump starred actors Tom Hanks  (movies, kb.txt:10)" in printed
    assert "fact [9]" not in printed and "fact [3]" not in printed


def test_inferred_and_cross_expert_hops_are_marked(movie_answer):
    born = Hop(head="Robert Zemeckis", relation="born_in", tail="chicago", head_name="Robert Zemeckis",
               tail_name="Chicago", domain="geo", rule="born_in(X, Z) <- lives_in(X, Z)")
    path = ReasoningPath(hops=[*movie_answer.paths[0].hops, born], score=0.5)
    printed = format_answer(movie_answer.model_copy(update={"paths": [path]}))
    assert ("   path: Tom Hanks -[inverse of starred actors]-> Forrest Gump -[directed by]-> Robert Zemeckis "
            "-[born in]-> Chicago (inferred by rule born_in(X, Z) <- lives_in(X, Z)) "
            "(across experts movies → geo)  [0.50]") in printed
