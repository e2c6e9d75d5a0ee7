"""ContextFusion: extractive text, cited prompts, budgets, templates, citation checking, cost accounting."""

from __future__ import annotations

import re

import pytest
from llm_testing import Reply, Reverser

from kgllm.exceptions import ConfigError
from kgllm.fusion.context import DEFAULT_SYSTEM, ContextFusion, generate_answer
from kgllm.llm import ExtractiveLLM, LLMCache, resolve_llm
from kgllm.llm.base import messages_to_text
from kgllm.types import Answer, Chunk, ReasoningPath


def completion(text: str, prompt_tokens: int = 120, completion_tokens: int = 9) -> Reply:
    return Reply(body={"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}})


@pytest.fixture()
def server_llm(chat_server):
    with resolve_llm(f"openai:kg-test@{chat_server.url}", cache=False, backoff=0.01) as llm:
        yield llm


def cited(text: str) -> list[int]:
    return [int(n) for group in re.findall(r"\[([\d, ]+)\]", text) for n in group.split(",")]


def test_extractive_text_from_paths_with_citations(movie_answer):
    answer = generate_answer(movie_answer, None)
    lines = answer.text.splitlines()
    assert lines[0] == "Robert Zemeckis."
    assert lines[1] == ("Because: Forrest Gump starred actors Tom Hanks [1]; "
                        "Forrest Gump directed by Robert Zemeckis [2].")
    assert lines[2].startswith("Because: Cast Away starred actors Tom Hanks [3]; Cast Away directed by")
    # every citation is the fact it names, and every fact a path walks is now in Answer.facts
    for n in cited(answer.text):
        fact = answer.facts[n - 1]
        assert any((fact.head, fact.relation, fact.tail) in {(h.tail, h.relation, h.head) if h.inverse
                                                            else (h.head, h.relation, h.tail) for h in p.hops}
                   for p in answer.paths)
    added = [f for f in answer.facts if f.head == "Cast Away" and f.relation == "directed_by"]
    assert len(added) == 1 and added[0].domain == "movies" and added[0].score == 0.6
    assert answer.llm_calls == 0 and answer.prompt is None
    assert answer.tokens == {"prompt": 0, "completion": 0}
    assert movie_answer.text == ""  # the input is not modified
    assert generate_answer(movie_answer, ExtractiveLLM()).text == answer.text


def test_extractive_uses_relation_text_and_handles_no_answer(movie_answer):
    text = generate_answer(movie_answer, None, relation_text={"directed_by": "was directed by"}).text
    assert "Forrest Gump was directed by Robert Zemeckis [2]" in text
    empty = generate_answer(Answer(question="Who is [Nobody]?"), None)
    assert empty.text == "No answer was found in the knowledge graph."


def test_prompt_has_numbered_facts_by_score_and_cited_paths(movie_answer):
    fused = ContextFusion().build(movie_answer, None)
    system, user = fused.messages
    assert system == {"role": "system", "content": DEFAULT_SYSTEM}
    facts = re.findall(r"^\[(\d+)\] (.*)$", user["content"], flags=re.M)
    assert facts == [("1", "Forrest Gump starred actors Tom Hanks"),
                     ("2", "Forrest Gump directed by Robert Zemeckis"),
                     ("3", "Cast Away starred actors Tom Hanks"),
                     ("4", "Cast Away directed by Robert Zemeckis"),
                     ("5", "Forrest Gump release year 1994")]
    assert "- Tom Hanks <-[starred actors]- Forrest Gump [1] -[directed by]-> Robert Zemeckis [2]" in user["content"]
    assert "Candidate answers from the graph: Robert Zemeckis" in user["content"]
    assert user["content"].endswith("Question: Who directed the films that [Tom Hanks] acted in?\n"
                                    "Answer concisely, citing the facts you use as [n].")
    assert [f.line for f in fused.facts] == [10, 11, 20, None, 12]


def test_llm_answer_citations_map_to_facts_and_invented_ones_are_dropped(chat_server, server_llm, movie_answer):
    chat_server.script = [completion("Robert Zemeckis directed Forrest Gump [2] and Cast Away [4][9], see [7, 1].")]
    answer = generate_answer(movie_answer, server_llm, max_tokens=64)
    assert answer.text == "Robert Zemeckis directed Forrest Gump [2] and Cast Away [4], see [1]."
    assert answer.facts[1].relation == "directed_by" and answer.facts[1].head == "Forrest Gump"
    assert answer.facts[3].head == "Cast Away" and answer.facts[3].tail == "Robert Zemeckis"
    assert [w for w in answer.warnings if "cited" in w] == [
        "the LLM cited [9], which is not among the 5 facts it was given; removed from the text",
        "the LLM cited [7], which is not among the 5 facts it was given; removed from the text"]
    sent = chat_server.requests[0].body
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.0
    assert answer.prompt == messages_to_text(sent["messages"])
    assert answer.tokens == {"prompt": 120, "completion": 9} and answer.llm_calls == 1


def test_cited_ranges_are_checked_too(chat_server, server_llm, movie_answer):
    chat_server.script = [completion("Robert Zemeckis [1-2], also [4 - 9] and [1\u20133, 12].")]
    answer = generate_answer(movie_answer, server_llm)
    assert answer.text == "Robert Zemeckis [1-2], also and [1-3]."
    assert [w for w in answer.warnings if "cited" in w] == [
        "the LLM cited [4-9], which goes beyond the 5 facts it was given; removed from the text",
        "the LLM cited [12], which is not among the 5 facts it was given; removed from the text"]

def test_an_empty_or_cut_off_reply_is_reported(chat_server, server_llm, movie_answer):
    def reply(content, finish_reason):
        return Reply(body={"choices": [{"message": {"role": "assistant", "content": content},
                                        "finish_reason": finish_reason}]})

    chat_server.script = [reply(None, "length"), reply("Robert Zeme", "length"), reply("[9]", "stop")]
    empty = generate_answer(movie_answer, server_llm, max_tokens=16)
    assert empty.text == "" and empty.warnings == [
        "the LLM wrote no answer text (finish reason: length); the answers and paths come from the graph",
        "the LLM's text was cut off at max_tokens=16"]
    cut = generate_answer(movie_answer, server_llm, max_tokens=16)
    assert cut.text == "Robert Zeme" and cut.warnings == ["the LLM's text cites none of the 5 facts it was given",
                                                          "the LLM's text was cut off at max_tokens=16"]
    invented = generate_answer(movie_answer, server_llm, max_tokens=16)
    assert invented.text == "" and invented.warnings == [
        "the LLM cited [9], which is not among the 5 facts it was given; removed from the text",
        "the LLM wrote no answer text (finish reason: stop); the answers and paths come from the graph"]

def test_a_reply_that_cites_nothing_is_reported(chat_server, server_llm, movie_answer):
    chat_server.script = [completion("Robert Zemeckis."), completion("Robert Zemeckis [2].")]
    uncited = generate_answer(movie_answer, server_llm)
    assert uncited.text == "Robert Zemeckis."
    assert uncited.warnings == ["the LLM's text cites none of the 5 facts it was given"]
    assert generate_answer(movie_answer, server_llm).warnings == []
    chunk = Chunk(id="c1", domain="movies", text="Forrest Gump is a 1994 film.", score=0.4)
    chat_server.script = [completion("In 1994.")]
    with_docs = generate_answer(movie_answer.model_copy(update={"chunks": [chunk]}), server_llm)
    assert with_docs.warnings == ["the LLM's text cites none of the 5 facts and 1 document it was given"]

def test_cost_adds_to_earlier_llm_calls(chat_server, server_llm, movie_answer):
    explored = movie_answer.model_copy(update={"tokens": {"prompt": 1000, "completion": 50}, "llm_calls": 3})
    chat_server.script = [completion("Robert Zemeckis [2].")]
    answer = generate_answer(explored, server_llm)
    assert answer.tokens == {"prompt": 1120, "completion": 59} and answer.llm_calls == 4


def test_cached_answers_cost_no_call(chat_server, movie_answer, tmp_path):
    chat_server.script = [completion("Robert Zemeckis [2].")]
    llm = resolve_llm(f"openai:kg-test@{chat_server.url}", cache=LLMCache(tmp_path))
    first = generate_answer(movie_answer, llm)
    again = generate_answer(movie_answer, llm)
    assert first.llm_calls == 1 and again.llm_calls == 0
    assert again.text == first.text and again.tokens == first.tokens
    assert len(chat_server.requests) == 1
    llm.close()


def test_over_budget_drops_lowest_score_facts_and_reports(movie_answer):
    fusion = ContextFusion()
    full = fusion.build(movie_answer, None)
    tight = fusion.build(movie_answer, None, budget=full.prompt_tokens - 3)
    assert tight.prompt_tokens <= tight.budget < full.prompt_tokens
    assert [f.relation for f in tight.dropped_facts] == ["release_year"]
    assert tight.warnings() == [f"context over the budget of {tight.budget} tokens: dropped 1 of 5 facts "
                                "(retrieved facts first, then the lowest scores)"]
    tiny = fusion.build(movie_answer, None, budget=full.prompt_tokens - 60)
    assert len(tiny.dropped_facts) >= 2 and tiny.prompt_tokens <= tiny.budget
    # dropped facts are no longer cited by the paths shown
    assert all(f"[{n}]" not in tiny.messages[1]["content"] for n in range(len(tiny.facts) + 1, 6))
    with pytest.raises(ConfigError, match="budget of 20 tokens is too small"):
        fusion.build(movie_answer, None, budget=20)


def test_over_budget_answer_keeps_dropped_facts_after_the_shown_ones(chat_server, server_llm, movie_answer):
    full = ContextFusion().build(movie_answer, server_llm)
    chat_server.script = [completion("Robert Zemeckis [2] [5].")]
    answer = generate_answer(movie_answer, server_llm, budget=full.prompt_tokens - 3)
    assert answer.text == "Robert Zemeckis [2]."  # [5] was dropped from the prompt, so it is invented
    assert answer.facts[4].relation == "release_year"
    assert any("dropped 1 of 5 facts" in w for w in answer.warnings)
    assert any("cited [5]" in w for w in answer.warnings)


def test_default_budget_follows_the_context_length(movie_answer):
    class Short(ExtractiveLLM):
        context_length = 200

    fused = ContextFusion(max_tokens=64).build(movie_answer, Short())
    assert fused.budget == 136


def test_templates_per_expert_and_override(movie_answer):
    fusion = ContextFusion(templates={"movies": "Film question: {question}\n{facts}"}, system=None)
    [user] = fusion.build(movie_answer, None).messages
    assert user["content"].startswith("Film question: Who directed")
    assert "[1] Forrest Gump starred actors Tom Hanks" in user["content"]
    assert "Reasoning paths" not in user["content"]
    [override] = fusion.build(movie_answer, None, template="Q: {question}\nA:").messages
    assert override["content"] == "Q: Who directed the films that [Tom Hanks] acted in?\nA:"
    other = movie_answer.model_copy(update={"experts": []})
    assert "Reasoning paths:" in fusion.build(other, None).messages[0]["content"]


@pytest.mark.parametrize("template", ["no question here {facts}", "{question} {nonsense}", "{question"])
def test_bad_templates(template, movie_answer):
    with pytest.raises(ConfigError, match="template"):
        ContextFusion().build(movie_answer, None, template=template)


def test_documents_are_cited_separately(chat_server, server_llm, movie_answer):
    chunks = [Chunk(id="c1", domain="movies", text="Forrest Gump is a 1994 film.", score=0.4),
              Chunk(id="c2", domain="movies", text="Cast Away is a 2000 film.", score=0.9)]
    with_docs = movie_answer.model_copy(update={"chunks": chunks})
    chat_server.script = [completion("Released in 1994 [D2] [D3].")]
    answer = generate_answer(with_docs, server_llm)
    user = chat_server.requests[0].body["messages"][1]["content"]
    assert "[D1] Cast Away is a 2000 film.\n[D2] Forrest Gump is a 1994 film." in user
    assert answer.text == "Released in 1994 [D2]."
    assert "the LLM cited [D3], which is not among the 2 documents it was given" in answer.warnings[0]


def test_choices_are_listed(movie_answer):
    fused = ContextFusion().build(movie_answer, None, choices=["Ron Howard", "Robert Zemeckis"])
    assert "Choices:\nA. Ron Howard\nB. Robert Zemeckis" in fused.messages[1]["content"]


def test_after_the_facts_paths_and_candidates_give_way(movie_answer):
    fusion = ContextFusion()
    bare = fusion.build(Answer(question=movie_answer.question), None).prompt_tokens
    fused = fusion.build(movie_answer, None, budget=bare + 12)
    assert fused.prompt_tokens <= bare + 12
    assert len(fused.dropped_facts) == 5 and fused.dropped_paths
    [warning] = fused.warnings()
    assert "dropped 5 of 5 facts" in warning and "of 2 paths" in warning


def test_facts_fill_the_room_a_dropped_document_leaves(movie_answer):
    # A document too long for the budget goes, and the facts dropped before it come back where they fit:
    # the prompt is not left without facts while half the budget is unused.
    fusion = ContextFusion()
    with_facts = fusion.build(movie_answer, None)
    long_doc = Chunk(id="c1", domain="movies", text="Forrest Gump is a 1994 film. " * 200, score=0.5)
    fused = fusion.build(movie_answer.model_copy(update={"chunks": [long_doc]}), None,
                         budget=with_facts.prompt_tokens + 10)
    assert fused.dropped_chunks == [long_doc] and not fused.chunks
    assert len(fused.facts) == 5 and not fused.dropped_facts
    assert fused.prompt_tokens == with_facts.prompt_tokens <= fused.budget
    # many facts: as many of the best as fit, one exact count each only near the boundary
    many = [movie_answer.facts[0].model_copy(update={"tail": f"Actor {i}", "score": 1 - i / 1000})
            for i in range(300)]
    crowded = movie_answer.model_copy(update={"facts": many, "chunks": [long_doc]})
    fused = fusion.build(crowded, None, budget=600)
    assert fused.budget - 20 < fused.prompt_tokens <= fused.budget
    assert fused.dropped_chunks == [long_doc] and 20 < len(fused.facts) < 300
    # the four edges the reasoning paths walk come first, then the other facts by score
    assert {f.tail for f in fused.facts[:4]} == {"Tom Hanks", "Robert Zemeckis"}
    assert [f.tail for f in fused.facts[4:7]] == ["Actor 0", "Actor 1", "Actor 2"]
    total = len(fused.facts) + len(fused.dropped_facts)  # with the path hops missing from the facts
    assert fused.warnings() == [f"context over the budget of 600 tokens: dropped {len(fused.dropped_facts)} of "
                                f"{total} facts, 1 of 1 chunks (retrieved facts first, then the lowest scores)"]


def test_thousands_of_paths_fit_with_few_token_counts(movie_answer):
    # Each section is cut to the most that fit by a binary search: dropping 3000 paths one exact count at a
    # time took 3000 counts of a growing prompt (24 s with the estimate, far more with a real tokenizer).
    class Counting(Reverser):
        counts = 0

        def count_message_tokens(self, messages):
            Counting.counts += 1
            return super().count_message_tokens(messages)

    star, directed = movie_answer.paths[0].hops
    paths = [ReasoningPath(hops=[star.model_copy(update={"tail": f"Film {i}", "tail_name": f"Film {i}"}),
                                 directed.model_copy(update={"head": f"Film {i}", "head_name": f"Film {i}",
                                                             "tail": f"Director {i}", "tail_name": f"Director {i}"})],
                           score=1 - i / 10_000) for i in range(3000)]
    crowded = movie_answer.model_copy(update={"paths": paths})
    fused = ContextFusion().build(crowded, Counting(), budget=600)
    assert Counting.counts < 60
    assert fused.budget - 30 < fused.prompt_tokens <= fused.budget
    assert 0 < len(fused.paths) < 3000 and len(fused.paths) + len(fused.dropped_paths) == 3000
    assert fused.paths == paths[: len(fused.paths)]  # the best paths are kept


def test_duplicate_facts_are_numbered_once(movie_answer):
    facts = movie_answer.facts
    doubled = movie_answer.model_copy(update={"facts": [*facts, facts[2].model_copy(update={"score": 0.3}), facts[0]]})
    fused = ContextFusion().build(doubled, None)
    assert re.findall(r"^\[\d+\] .*$", fused.messages[1]["content"], flags=re.M) == re.findall(
        r"^\[\d+\] .*$", ContextFusion().build(movie_answer, None).messages[1]["content"], flags=re.M)
    assert len(fused.facts) == 5 and [f.score for f in fused.facts if f.relation == "release_year"] == [0.3]
    assert len(generate_answer(doubled, None).facts) == 5


def test_more_than_26_choices_are_labelled_like_spreadsheet_columns(movie_answer):
    fused = ContextFusion().build(movie_answer, None, choices=[f"option {i}" for i in range(28)])
    assert "Z. option 25\nAA. option 26\nAB. option 27" in fused.messages[1]["content"]


def test_a_template_without_facts_allows_no_citations(chat_server, server_llm, movie_answer):
    # The model saw no numbered fact, so "[1]" is invented, and a text citing nothing is no fault of the model.
    chat_server.script = [completion("Robert Zemeckis [1]."), completion("Robert Zemeckis.")]
    invented = generate_answer(movie_answer, server_llm, template="Q: {question}\nA:")
    assert invented.text == "Robert Zemeckis."
    assert invented.warnings == ["the LLM cited [1], which is not among the 0 facts it was given; removed from the text"]
    assert generate_answer(movie_answer, server_llm, template="Q: {question}\nA:").warnings == []


def test_answer_chunks_follow_the_document_numbers(chat_server, server_llm, movie_answer):
    # The prompt lists documents by score; [Dn] in the text must be Answer.chunks[n - 1], as for facts.
    chunks = [Chunk(id="c1", domain="movies", text="Forrest Gump is a 1994 film.", score=0.4),
              Chunk(id="c2", domain="movies", text="Cast Away is a 2000 film.", score=0.9)]
    chat_server.script = [completion("Cast Away came out in 2000 [D1].")]
    answer = generate_answer(movie_answer.model_copy(update={"chunks": chunks}), server_llm)
    assert answer.text == "Cast Away came out in 2000 [D1]."
    assert [c.id for c in answer.chunks] == ["c2", "c1"]


def test_a_template_without_question_names_the_missing_field(movie_answer):
    with pytest.raises(ConfigError, match=r"prompt template '\{facts\}' has no \{question\} field"):
        ContextFusion().build(movie_answer, None, template="{facts}")
