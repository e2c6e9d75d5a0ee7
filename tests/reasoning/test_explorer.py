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


class NamingLLM(ScriptedLLM):
    """Answers each pruning prompt with the next scripted reply, naming relations instead of numbering them."""

    name = "naming"

    def __init__(self, replies: list[str]) -> None:
        super().__init__([])
        self.replies = list(replies)

    def generate(self, prompt, *, max_tokens=256, temperature=0.0, stop=None) -> Generation:
        return Generation(self.replies.pop(0) if self.replies else "That is all.", 10, 3)


def test_explorer_understands_relations_named_instead_of_numbered():
    movies = make_snapshot(MOVIE_TRIPLES)
    graph = RelationGraph(movies)
    llm = NamingLLM(["Inverse of Starred_Actors", "The relation directed_by leads there, then release year."])
    explorer = LLMExplorer(graph, llm, width=1)
    scorer = TableScorer(graph, {})
    results = explorer.explore("who directed the films of Tom Hanks", np.array([movies.node("Tom Hanks")]),
                               scorer, scorer.prepare(["q"])[0])
    assert [graph.code_name(c) for c in results[0].chain] == ["~starred_actors", "directed_by"]
    assert {movies.ids[i] for i in results[0].answers} == {"Robert Zemeckis", "Penny Marshall"}


def test_a_named_relation_inside_a_longer_named_one_is_not_taken():
    people = make_snapshot([("Ann", "knows", "Bob"), ("Bob", "knows", "Cid")])
    graph = RelationGraph(people)
    scorer = TableScorer(graph, {})
    for reply, expected in (("inverse of knows", ["~knows"]), ("knows", ["knows"]),
                            ("knows, or inverse of knows", ["knows", "~knows"]),
                            ("inverse of knows, or knows", ["knows", "~knows"]), ("likes", [])):
        explorer = LLMExplorer(graph, NamingLLM([reply]), width=2, max_hops=1)
        results = explorer.explore("q", np.array([people.node("Bob")]), scorer, scorer.prepare(["q"])[0])
        assert sorted(graph.code_name(r.chain[0]) for r in results) == sorted(expected), reply
