"""LangChain integration: a retriever over a kgllm knowledge base and a tool wrapping ``ask`` for agents.

Install with ``pip install "kgllm[langchain]"``::

    retriever = KGRetriever(kb=kgllm.open("my-kb"), top_k=5)
    docs = retriever.invoke("Who directed the films [Tom Hanks] acted in?")
    docs[0].page_content, docs[0].metadata["kind"]          # "path" | "fact" | "chunk"

    tool = kg_tool(kb, llm=None)        # give it to an agent: tool.invoke({"question": "..."})

The retriever takes any object with ``ask(question, *, domain=None, llm=None, top_k=10) -> Answer``
(a :class:`kgllm.KnowledgeBase`, or a remote client with the same method).
"""

from __future__ import annotations

from typing import Any

from kgllm.config import check_count
from kgllm.exceptions import ConfigError, KGLLMError
from kgllm.formatting import cited_numbers
from kgllm.types import Answer, Chunk, Fact, ReasoningPath

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.tools import BaseTool, StructuredTool
    from pydantic import ConfigDict, Field
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('kgllm.integrations.langchain needs langchain-core: pip install "kgllm[langchain]"') from exc

__all__ = ["KGRetriever", "kg_tool", "answer_documents", "KINDS"]

#: What the retriever can return, in this order: reasoning chains, then facts, then document chunks.
KINDS = ("paths", "facts", "chunks")


def _path_text(path: ReasoningPath, relation_text: dict[str, str]) -> str:
    if not path.hops:
        return ""
    parts = [path.hops[0].head_name or path.hops[0].head]
    for hop in path.hops:
        rel = relation_text.get(hop.relation) or hop.relation.replace("_", " ")
        parts.append(f"<-[{rel}]-" if hop.inverse else f"-[{rel}]->")
        parts.append(hop.tail_name or hop.tail)
    return " ".join(parts)


def _path_document(path: ReasoningPath, rank: int, question: str, relation_text: dict[str, str]) -> Document:
    last = path.hops[-1]
    return Document(page_content=_path_text(path, relation_text), metadata={
        "kind": "path", "rank": rank, "question": question, "score": path.score, "method": path.method,
        "answer": last.tail_name or last.tail, "answer_id": last.tail, "relations": path.relations,
        "domain": last.domain, "hops": [hop.model_dump() for hop in path.hops]})


def _fact_document(fact: Fact, citation: int, question: str, relation_text: dict[str, str]) -> Document:
    return Document(page_content=fact.text(relation_text.get(fact.relation)), metadata={
        "kind": "fact", "citation": citation, "question": question, **fact.model_dump()})


def _chunk_document(chunk: Chunk, rank: int, question: str) -> Document:
    return Document(page_content=chunk.text, id=chunk.id, metadata={
        "kind": "chunk", "rank": rank, "question": question, **chunk.model_dump(exclude={"text"})})


def answer_documents(answer: Answer, *, include: tuple[str, ...] = KINDS,
                     relation_text: dict[str, str] | None = None) -> list[Document]:
    """An answer's evidence as LangChain documents (paths by score, facts in citation order, chunks).

    A fact's ``metadata["citation"]`` is the ``n`` of ``[n]`` in ``answer.text``.
    """
    rel = dict(relation_text or {})
    docs: list[Document] = []
    if "paths" in include:
        ranked = sorted((p for p in answer.paths if p.hops), key=lambda p: -p.score)  # ranks 1.. with no gap
        docs += [_path_document(p, i + 1, answer.question, rel) for i, p in enumerate(ranked)]
    if "facts" in include:
        docs += [_fact_document(f, i + 1, answer.question, rel) for i, f in enumerate(answer.facts)]
    if "chunks" in include:
        docs += [_chunk_document(c, i + 1, answer.question) for i, c in enumerate(answer.chunks)]
    return docs


def _kb_relation_text(kb: Any, answer: Answer) -> dict[str, str]:
    """The relation texts of the experts that answered, as ``ask`` uses them (when ``kb`` has ``domain_info``)."""
    info = getattr(kb, "domain_info", None)
    texts: dict[str, str] = {}
    if not callable(info):
        return texts
    for expert in answer.experts:
        try:
            texts.update(info(expert.name).get("relation_text") or {})
        except KGLLMError:  # a remote client or a dropped domain: the relation names are used as they are
            continue
    return texts


class KGRetriever(BaseRetriever):
    """A LangChain retriever whose documents are a knowledge base's reasoning paths, facts and chunks.

    Attributes:
        kb: anything with ``ask(question, *, domain, llm, top_k) -> Answer``.
        domain: ask this expert only (``None``: let the router choose).
        top_k: answers the reasoner keeps (each brings its paths and facts).
        include: which of ``"paths"``, ``"facts"``, ``"chunks"`` to return.
        max_documents: cap on the documents returned (``None``: all).
        relation_text: natural-language relation names for the documents' text, over those of the
            experts' packs (which ``ask`` writes its text with).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kb: Any
    domain: str | None = None
    top_k: int = Field(default=10, ge=1)
    include: tuple[str, ...] = KINDS
    max_documents: int | None = Field(default=None, ge=1)
    relation_text: dict[str, str] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        # Checked before pydantic runs so that callers get kgllm's ConfigError, not a ValidationError.
        kb = data.get("kb")
        if not callable(getattr(kb, "ask", None)):
            raise ConfigError(f"KGRetriever needs an object with an ask() method, got {type(kb).__name__}")
        include = data.get("include", KINDS)
        include = (include,) if isinstance(include, str) else tuple(include)  # "facts" is one kind, not five
        data["include"] = include
        unknown = [k for k in include if k not in KINDS]
        if unknown or not include:
            raise ConfigError(f"unknown document kinds {unknown!r}; choose from {', '.join(KINDS)}")
        check_count("top_k", data.get("top_k", 10))
        if data.get("max_documents") is not None:
            check_count("max_documents (or None for all)", data["max_documents"])
        super().__init__(**data)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        answer = self.kb.ask(query, domain=self.domain, llm=None, top_k=self.top_k)
        relation_text = {**_kb_relation_text(self.kb, answer), **self.relation_text}
        docs = answer_documents(answer, include=self.include, relation_text=relation_text)
        return docs[: self.max_documents] if self.max_documents else docs


def _answer_content(answer: Answer, max_answers: int, relation_text: dict[str, str]) -> str:
    lines = [answer.text or "No answer was found in the knowledge graph."]
    if answer.answers:
        lines.append("Answers: " + "; ".join(f"{a.name} (score {a.score:.2f})" for a in answer.answers[:max_answers]))
    # The agent sees only this content: an LLM's "[2]" means nothing to it without the fact it cites.
    cited = cited_numbers(answer.text, len(answer.facts))
    if cited:
        facts = [answer.facts[n - 1] for n in cited]
        lines.append("Cited facts: " + "; ".join(f"[{n}] {f.text(relation_text.get(f.relation))}"
                                                for n, f in zip(cited, facts)))
    return "\n".join(lines)


def kg_tool(kb: Any, *, name: str = "knowledge_graph", description: str | None = None, domain: str | None = None,
            llm: Any = None, top_k: int = 5) -> BaseTool:
    """A LangChain tool that answers a question from the knowledge base, for agents.

    The tool's content is the answer text (with citations) and the ranked answers; its artifact
    (on a ``ToolMessage`` when called with a tool call) is the full :class:`~kgllm.types.Answer` as JSON data.

    Args:
        kb: anything with ``ask(question, *, domain, llm, top_k) -> Answer``.
        name: the tool name the agent sees.
        description: what the agent is told the tool does.
        domain: ask this expert only.
        llm: the backend writing the answer text (``None``: extractive, no LLM call).
        top_k: answers returned.
    """
    if not callable(getattr(kb, "ask", None)):
        raise ConfigError(f"kg_tool needs an object with an ask() method, got {type(kb).__name__}")
    check_count("top_k", top_k)  # at creation, not on the agent's first call

    def ask(question: str) -> tuple[str, dict[str, Any]]:
        answer = kb.ask(question, domain=domain, llm=llm, top_k=top_k)
        return _answer_content(answer, top_k, _kb_relation_text(kb, answer)), answer.model_dump(mode="json")

    return StructuredTool.from_function(
        func=ask, name=name, response_format="content_and_artifact",
        description=description or ("Answers factual questions from a knowledge graph with multi-hop reasoning. "
                                     "Input: a question in natural language (put entity names in [brackets] "
                                     "when known). Output: the answer with cited facts."))
