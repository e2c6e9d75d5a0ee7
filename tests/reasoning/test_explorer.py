"""LLM-guided exploration on the hand-made graph, with a scripted language model standing in for a real one."""

from __future__ import annotations

import re

import numpy as np
from reasoning_graphs import MOVIE_TRIPLES, make_snapshot
from test_paths import TableScorer

from kgllm.llm.base import Generation
from kgllm.reasoning.explorer import LLMExplorer
from kgllm.reasoning.paths import RelationGraph


class ScriptedLLM:
    """Answers each pruning prompt with the option matching the next wanted relation text (or 0)."""

    name = "scripted"

    def __init__(self, wanted: list[str]) -> None:
        self.wanted = wanted
        self.prompts: list[str] = []

    def generate(self, prompt, *, max_tokens=256, temperature=0.0, stop=None) -> Generation:
        self.prompts.append(prompt)
        hop = len(re.findall(r" then ", prompt.split("Walked so far: ")[1].splitlines()[0])) + (
            0 if "(nothing yet)" in prompt else 1)
        if hop >= len(self.wanted):
            return Generation("0", 10, 1)
        for line in prompt.splitlines():
            match = re.match(r"(\d+)\. (.*)$", line)
            if match and match.group(2) == self.wanted[hop]:
                return Generation(match.group(1), 10, 1)
        return Generation("0", 10, 1)

    def stream(self, prompt, **kwargs):
        yield self.generate(prompt).text

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_explorer_follows_the_llm_choices():
    movies = make_snapshot(MOVIE_TRIPLES)
    graph = RelationGraph(movies)
    llm = ScriptedLLM(["inverse of starred actors", "directed by"])
    explorer = LLMExplorer(graph, llm, width=1)
    scorer = TableScorer(graph, {})
    results = explorer.explore("who directed the films of Tom Hanks", np.array([movies.node("Tom Hanks")]),
                               scorer, scorer.prepare(["q"])[0])
    assert [graph.code_name(c) for c in results[0].chain] == ["~starred_actors", "directed_by"]
    assert {movies.ids[i] for i in results[0].answers} == {"Robert Zemeckis", "Penny Marshall"}
    assert explorer.calls == len(llm.prompts) == 3  # two hops chosen, then "0" = stop
    assert "Question: who directed the films of Tom Hanks" in llm.prompts[0]


def test_explorer_stops_when_nothing_is_chosen():
    movies = make_snapshot(MOVIE_TRIPLES)
    graph = RelationGraph(movies)
    explorer = LLMExplorer(graph, ScriptedLLM([]), width=2)
    scorer = TableScorer(graph, {})
    assert explorer.explore("q", np.array([movies.node("Kismet")]), scorer, scorer.prepare(["q"])[0]) == []
