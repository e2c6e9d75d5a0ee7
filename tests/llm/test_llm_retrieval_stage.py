"""The retrieve stage of ``ask``: document chunks for every answer, graph facts for an LLM's context.

Real KBs (the tiny movies pack, real MiniLM and FAISS) and a local chat-completions server that
records the prompts it is sent.
"""

from __future__ import annotations

import re

import pytest

import kgllm
from kgllm.exceptions import ConfigError, LoadError
from kgllm.retrieval import evidence
from kgllm.retrieval.evidence import RETRIEVERS

NOTES = [
    "Kismet was filmed in Technicolor at the MGM studios in Culver City.",
    "Catch Me If You Can follows the con artist Frank Abagnale through the 1960s.",
    "The Terminal tells of a traveller stranded in a New York airport.",
]
QUESTION = "Who directed [Kismet]?"


@pytest.fixture()
def movies_with_notes(tiny_movies_kb, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(NOTES) + "\n", encoding="utf-8")
    tiny_movies_kb.load_documents("tiny_movies", [notes], chunking="line")
    return tiny_movies_kb


def prompt_facts(prompt: str) -> list[str]:
    return re.findall(r"^\[\d+\] (.+)$", prompt, flags=re.MULTILINE)


def test_llm_context_has_the_path_facts_first_then_retrieved_facts_and_documents(movies_with_notes, chat_server):
    kb = movies_with_notes
    extractive = kb.ask(QUESTION)
    answer = kb.ask(QUESTION, llm=f"openai:m@{chat_server.url}", llm_cache=False)
    assert answer.answers[0].name == "William Dieterle" and "retrieve" in answer.timings
    shown = prompt_facts(answer.prompt)
    # the walked edge is fact [1]; the rest of Kismet's neighbourhood follows, retrieved by PPR / vectors
    assert shown[0] == "Kismet directed by William Dieterle"
    assert "Kismet written by Edward Knoblock" in shown and len(shown) > len(extractive.facts)
    assert [f.text(kb.relation_text("tiny_movies").get(f.relation)) for f in answer.facts[:len(shown)]] == shown
    # the nearest document line is in the prompt and in the answer's provenance
    assert "[D1] " + NOTES[0] in answer.prompt and answer.chunks[0].text.strip() == NOTES[0]
    # the extractive answer keeps to the path facts, and lists the documents it found too
    assert [f.relation for f in extractive.facts] == ["directed_by"]
    assert extractive.chunks[0].text.strip() == NOTES[0]


@pytest.mark.parametrize("retrievers", [["paths"], []])  # an empty list runs no retriever: not the default ones
def test_retrievers_setting_chooses_what_is_retrieved(movies_with_notes, chat_server, tmp_path, retrievers):
    kb = movies_with_notes
    kb.set_domain_info("tiny_movies", reasoning={"retrievers": retrievers})
    with kgllm.open(kb.path, create=False) as reopened:
        answer = reopened.ask(QUESTION, llm=f"openai:m@{chat_server.url}", llm_cache=False)
    assert prompt_facts(answer.prompt) == ["Kismet directed by William Dieterle"]
    assert answer.chunks == [] and "Documents:" not in answer.prompt


def test_unknown_retrievers_are_refused(tiny_movies_kb, tmp_path, fixtures_dir):
    with pytest.raises(ConfigError, match="unknown retriever.*'pagerank'.*known: " + ", ".join(RETRIEVERS)):
        tiny_movies_kb.add_expert("films", description="Films.", reasoning={"retrievers": ["pagerank"]})
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "kb.txt").write_text("A|r|B\n", encoding="utf-8")
    (pack / "manifest.yaml").write_text("name: p\ndescription: d\nlicense: CC0\ntriples:\n  - {path: kb.txt, format: pipe}\n"
                                        "reasoning: {retrievers: [ppr, vectors]}\n", encoding="utf-8")
    with pytest.raises(LoadError, match="unknown retriever.*'vectors'"):
        tiny_movies_kb.load(pack)
    assert "p" not in tiny_movies_kb.domains


def test_a_question_without_an_entity_is_answered_from_the_documents(movies_with_notes, chat_server):
    kb = movies_with_notes
    question = "Which studio filmed in Technicolor in Culver City?"
    answer = kb.ask(question, domain="tiny_movies")
    assert answer.answers == [] and "no linkable entity" in answer.warnings
    assert answer.text.startswith("No entity") and f'"{NOTES[0]}" [D1]' in answer.text
    assert answer.chunks[0].text.strip() == NOTES[0]
    with_llm = kb.ask(question, domain="tiny_movies", llm=f"openai:m@{chat_server.url}", llm_cache=False)
    assert with_llm.llm_calls == 1 and "[D1] " + NOTES[0] in with_llm.prompt
    assert with_llm.text.startswith("echo:")
    assert kb.ask_many([question], domain="tiny_movies")[0].text == answer.text


def test_documents_added_later_are_retrieved(tiny_movies_kb, tmp_path):
    kb = tiny_movies_kb
    assert kb.ask(QUESTION).chunks == []  # builds the domain's context before the documents come
    notes = tmp_path / "later.txt"
    notes.write_text(NOTES[0] + "\n", encoding="utf-8")
    kb.load_documents("tiny_movies", [notes], chunking="line")
    assert [c.text.strip() for c in kb.ask(QUESTION).chunks] == [NOTES[0]]


def test_a_fact_index_built_after_questions_is_used(tiny_movies_kb, chat_server, monkeypatch):
    kb = tiny_movies_kb
    monkeypatch.setattr(evidence, "FACT_INDEX_MAX", 10)  # the tiny graph (50 facts) counts as a large one
    llm = f"openai:m@{chat_server.url}"
    before = prompt_facts(kb.ask(QUESTION, llm=llm, llm_cache=False).prompt)
    assert not kb.has_index("tiny_movies", "facts")  # a large graph's index is not built by a question
    kb.index("tiny_movies", "facts")
    after = prompt_facts(kb.ask(QUESTION, llm=llm, llm_cache=False).prompt)  # the same pipeline uses it now
    assert after[0] == before[0] == "Kismet directed by William Dieterle"
    assert set(after) - set(before)


def test_a_chain_bridged_into_a_second_expert(movies_with_notes, chat_server, tmp_path):
    kb = movies_with_notes
    people = tmp_path / "people.txt"
    people.write_text("Steven Spielberg|born_in|Cincinnati\n", encoding="utf-8")
    kb.load_triples("film_people", people, format="pipe",
                    description="Films with their directors, writers, actors, genres, release years and languages; "
                                "where the directors were born.")
    question = "Where was the director of [The Terminal] born?"
    answer = kb.ask(question)
    assert [e.name for e in answer.experts] == ["tiny_movies", "film_people"] and answer.answers[0].name == "Cincinnati"
    # the documents of the expert the chain started in are retrieved, though the chain ends in the other one
    assert answer.chunks and answer.chunks[0].text.strip() == NOTES[2] and answer.chunks[0].domain == "tiny_movies"
    with_llm = kb.ask(question, llm=f"openai:m@{chat_server.url}", llm_cache=False)
    # the retrieved facts are seeded by the linked entity in its own graph (not by its node number in the other)
    assert "The Terminal starring Tom Hanks" in prompt_facts(with_llm.prompt)
    assert [c.id for c in kb.ask_many([question])[0].chunks] == [c.id for c in answer.chunks]


def test_cli_lists_the_documents_found(movies_with_notes, capsys):
    from kgllm.cli import main

    assert main(["--kb", str(movies_with_notes.path), "ask", QUESTION]) == 0
    out = capsys.readouterr().out
    assert "A: William Dieterle" in out and f"document [D1]: {NOTES[0]}" in out
