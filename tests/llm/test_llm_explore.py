"""``ask(explore=True)``: Think-on-Graph relation pruning by a language model, on a real KB, with its cost."""

from __future__ import annotations

import logging

import pytest

import kgllm
from kgllm.llm import BaseLLM, ExtractiveLLM, Generation
from kgllm.pipeline import EXPLORE_NEEDS_LLM

QUESTION = "Who directed [Kismet]?"


class Picks(BaseLLM):
    """A real backend for the pruning prompts: always answers ``reply`` (``"1"``: follow relation 1). Counts calls."""

    backend = "picks"

    def __init__(self, reply: str = "1") -> None:
        super().__init__(f"picks-{reply}")
        self.reply = reply
        self.calls = 0
        self.prompts: list[str] = []

    def _generate(self, messages, *, max_tokens, temperature, stop):
        self.calls += 1
        self.prompts.append(messages[-1]["content"])
        return Generation(text=self.reply, prompt_tokens=len(messages[-1]["content"]), completion_tokens=1)


@pytest.fixture()
def kb(tiny_movies_kb):
    return tiny_movies_kb


def test_explored_questions_served_from_the_cache_cost_no_call(kb):
    backend = Picks("1")
    first = kb.ask(QUESTION, llm=backend, explore=True)
    assert [a.name for a in first.answers] == ["William Dieterle"]
    assert first.llm_calls == backend.calls == 3  # two relation choices, then the answer text
    again = kb.ask(QUESTION, llm=backend, explore=True)
    assert backend.calls == 3  # every request was served from the KB's cache
    assert again.llm_calls == 0 and [a.name for a in again.answers] == ["William Dieterle"]


def test_a_chosen_chain_whose_next_steps_lead_nowhere_still_answers(tmp_path):
    # Hop 1: the model follows "directed by" and "written by". Hop 2: from William Dieterle the only step
    # leads back to Kismet (nowhere), while "written by" continues to another film. The directed_by chain
    # ends at hop 1 with the answer; it must not vanish because a sibling chain went on.
    triples = tmp_path / "films.txt"
    triples.write_text("Kismet|directed_by|William Dieterle\nKismet|written_by|Edward Knoblock\n"
                       "Chu Chin Chow|written_by|Edward Knoblock\n")
    backend = Picks("1, 2")
    with kgllm.open(tmp_path / "kb") as kb:
        kb.load_triples("films", triples, format="pipe")
        answer = kb.ask(QUESTION, llm=backend, explore=True, llm_cache=False)
    assert "1. directed by\n2. written by" in backend.prompts[0]
    assert [h.relation for h in answer.paths[0].hops] == ["directed_by"]
    assert answer.answers[0].name == "William Dieterle"


def test_explored_answers_count_the_tokens_of_every_call(kb):
    backend = Picks("1")
    answer = kb.ask(QUESTION, llm=backend, explore=True, llm_cache=False)
    # Picks reports a prompt's length in characters as its prompt tokens and one completion token per call
    assert answer.llm_calls == backend.calls == 3
    assert answer.tokens == {"prompt": sum(len(p) for p in backend.prompts), "completion": 3}


def test_a_model_that_follows_nothing_says_so(kb):
    answer = kb.ask(QUESTION, llm=Picks("0"), explore=True, llm_cache=False)
    assert answer.answers == []
    assert any(w.startswith("explore: the language model chose no relation") for w in answer.warnings)
    assert not [w for w in kb.ask(QUESTION).warnings if w.startswith("explore:")]


def test_explore_without_a_generative_llm_says_so_and_answers_by_the_beam_search(kb, caplog):
    with caplog.at_level(logging.WARNING, logger="kgllm.pipeline"):
        answers = kb.ask_many([QUESTION, "who directed Kismet"], explore=True)
    assert [r.message for r in caplog.records].count(EXPLORE_NEEDS_LLM) == 1  # logged once per call
    assert [[a.name for a in answer.answers] for answer in answers] == [["William Dieterle"]] * 2
    assert all(EXPLORE_NEEDS_LLM in answer.warnings for answer in answers)
    for llm in ("extractive", ExtractiveLLM()):  # the extractive answerer cannot choose relations either
        answer = kb.ask(QUESTION, llm=llm, explore=True)
        assert answer.answers[0].name == "William Dieterle" and EXPLORE_NEEDS_LLM in answer.warnings
    assert EXPLORE_NEEDS_LLM not in kb.ask(QUESTION).warnings
