"""LangChain retriever and agent tool over a real kgllm knowledge base (a few MetaQA movie triples)."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_core.messages import ToolMessage

import kgllm
from kgllm.exceptions import ConfigError
from kgllm.integrations.langchain import KGRetriever, answer_documents, kg_tool

pytestmark = pytest.mark.usefixtures("torch_threads")

QUESTION = "Who directed [Kismet]?"


@pytest.fixture(scope="module")
def kb(tmp_path_factory, fixtures_dir):
    with kgllm.open(tmp_path_factory.mktemp("lc") / "kb") as knowledge_base:
        knowledge_base.load(fixtures_dir / "kb" / "tiny_movies")
        yield knowledge_base


def test_invoke_returns_paths_then_facts_with_metadata(kb):
    retriever = KGRetriever(kb=kb, top_k=3)
    docs = retriever.invoke(QUESTION)
    assert docs and all(isinstance(d, Document) for d in docs)
    kinds = [d.metadata["kind"] for d in docs]
    assert kinds == sorted(kinds, key=["path", "fact", "chunk"].index)  # paths first, then facts
    path = docs[0]
    assert path.metadata["kind"] == "path" and path.metadata["answer"] == "William Dieterle"
    assert path.page_content == "Kismet -[directed by]-> William Dieterle"
    assert path.metadata["relations"] == ["directed_by"] and path.metadata["hops"][0]["head"] == "Kismet"
    fact = next(d for d in docs if d.metadata["kind"] == "fact")
    assert fact.page_content == "Kismet directed by William Dieterle"
    assert (fact.metadata["head"], fact.metadata["relation"], fact.metadata["tail"]) == (
        "Kismet", "directed_by", "William Dieterle")
    assert fact.metadata["domain"] == "tiny_movies" and fact.metadata["citation"] == 1
    # the citation numbers are those of the extractive answer text
    answer = kb.ask(QUESTION, top_k=3)
    assert f"[{fact.metadata['citation']}]" in answer.text


def test_batch_and_ainvoke_agree_with_invoke(kb):
    retriever = KGRetriever(kb=kb, include=("facts",), top_k=5)
    questions = [QUESTION, "Who starred in [Kismet]?"]
    single = [retriever.invoke(q) for q in questions]
    assert retriever.batch(questions) == single
    assert asyncio.run(retriever.ainvoke(questions[1])) == single[1]
    starring = {d.metadata["tail"] for d in single[1]}
    assert {"Marlene Dietrich", "Ronald Colman"} <= starring
    assert all(d.metadata["kind"] == "fact" for d in single[1])


def test_documents_use_the_packs_relation_texts_like_the_answer(kb):
    # The pack's manifest writes starred_actors as "starring"; ask's text does, and so must the documents.
    question = "Who starred in [Kismet]?"
    docs = KGRetriever(kb=kb, top_k=5).invoke(question)
    path = next(d for d in docs if d.metadata["kind"] == "path")
    fact = next(d for d in docs if d.metadata["kind"] == "fact")
    assert path.page_content.startswith("Kismet -[starring]-> ")
    assert f"{fact.page_content} [{fact.metadata['citation']}]" in kb.ask(question, top_k=5).text
    own = KGRetriever(kb=kb, top_k=5, include=("facts",), relation_text={"starred_actors": "features"})
    assert own.invoke(question)[0].page_content.startswith("Kismet features ")


def test_caps_and_options(kb):
    assert len(KGRetriever(kb=kb, top_k=5, max_documents=2).invoke("Who starred in [Kismet]?")) == 2
    with pytest.raises(ConfigError, match="unknown document kinds"):
        KGRetriever(kb=kb, include=("triples",))
    with pytest.raises(ConfigError, match="ask\\(\\) method"):
        KGRetriever(kb=object())


def test_tool_for_agents(kb):
    tool = kg_tool(kb, top_k=3)
    assert tool.name == "knowledge_graph" and "question" in tool.args
    content = tool.invoke({"question": QUESTION})
    assert content.splitlines()[0] == "William Dieterle."
    assert "Answers: William Dieterle (score" in content
    message = tool.invoke({"type": "tool_call", "id": "call-1", "name": "knowledge_graph",
                           "args": {"question": QUESTION}})
    assert isinstance(message, ToolMessage) and message.tool_call_id == "call-1"
    assert message.artifact["answers"][0]["name"] == "William Dieterle"
    assert message.artifact["paths"][0]["hops"][0]["relation"] == "directed_by"
    assert asyncio.run(tool.ainvoke({"question": QUESTION})) == content


def test_answer_documents_include_chunks(kb):
    from kgllm.types import Chunk

    answer = kb.ask(QUESTION, top_k=1).model_copy(update={
        "chunks": [Chunk(id="doc-1#0", domain="tiny_movies", text="Kismet is a 1944 film.", source="doc-1.txt")]})
    docs = answer_documents(answer, include=("chunks",))
    assert [(d.page_content, d.id, d.metadata["source"]) for d in docs] == [
        ("Kismet is a 1944 film.", "doc-1#0", "doc-1.txt")]


def test_include_one_kind_by_name(kb):
    # include="facts" is the one kind, not the letters f, a, c, t, s
    docs = KGRetriever(kb=kb, top_k=5, include="facts").invoke("Who starred in [Kismet]?")
    assert docs and {d.metadata["kind"] for d in docs} == {"fact"}


def test_path_ranks_have_no_gaps(kb):
    from kgllm.types import ReasoningPath

    answer = kb.ask(QUESTION, top_k=3)
    empty = ReasoningPath(hops=[], score=99.0)  # a path with no hop has no document, and takes no rank
    docs = answer_documents(answer.model_copy(update={"paths": [empty, *answer.paths]}), include=("paths",))
    assert [d.metadata["rank"] for d in docs] == list(range(1, len(answer.paths) + 1))


def test_tool_shows_the_agent_the_facts_an_llm_cites(kb):
    from langchain_core.language_models import FakeListChatModel

    # The agent reads only the tool's content: "[1]" is of no use to it without the fact behind it.
    tool = kg_tool(kb, llm=FakeListChatModel(responses=["William Dieterle directed it [1]."]), top_k=3)
    content = tool.invoke({"question": QUESTION})
    assert content.splitlines()[0] == "William Dieterle directed it [1]."
    assert content.splitlines()[-1] == "Cited facts: [1] Kismet directed by William Dieterle"


def test_bad_counts_are_config_errors_at_creation(kb):
    # top_k=0 / max_documents=0 were pydantic ValidationErrors, and kg_tool's top_k failed on the first call
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match=f"top_k must be an integer >= 1, got {bad!r}"):
            KGRetriever(kb=kb, top_k=bad)
        with pytest.raises(ConfigError, match=r"max_documents \(or None for all\) must be an integer >= 1"):
            KGRetriever(kb=kb, max_documents=bad)
        with pytest.raises(ConfigError, match=f"top_k must be an integer >= 1, got {bad!r}"):
            kg_tool(kb, top_k=bad)
    assert KGRetriever(kb=kb, top_k=3, max_documents=None).top_k == 3
