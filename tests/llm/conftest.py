"""Fixtures for the LLM tests: tiny real causal LMs built on the spot, and a local chat-completions server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_testing import CHAT_TEMPLATE, ChatServer, build_tiny_causal_lm

from kgllm.types import Answer, ExpertChoice, Fact, Hop, ReasoningPath, ScoredAnswer


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A GPT-2 shaped model whose tokenizer has no chat template."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_chat_lm_dir(tmp_path_factory) -> Path:
    """A Llama shaped model whose tokenizer carries a chat template."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama-chat"), chat_template=CHAT_TEMPLATE,
                                arch="llama")


@pytest.fixture(scope="session")
def torch_threads() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def chat_server() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


# -- a reasoned answer over a tiny movie graph ----------------------------------------------------

@pytest.fixture()
def movie_answer() -> Answer:
    """What the reasoner returns for a 2-hop question over a few real MetaQA triples."""
    star = Hop(head="Tom Hanks", relation="starred_actors", tail="Forrest Gump", head_name="Tom Hanks",
               tail_name="Forrest Gump", domain="movies", inverse=True)
    directed = Hop(head="Forrest Gump", relation="directed_by", tail="Robert Zemeckis", head_name="Forrest Gump",
                   tail_name="Robert Zemeckis", domain="movies")
    star2 = Hop(head="Tom Hanks", relation="starred_actors", tail="Cast Away", head_name="Tom Hanks",
                tail_name="Cast Away", domain="movies", inverse=True)
    directed2 = Hop(head="Cast Away", relation="directed_by", tail="Robert Zemeckis", head_name="Cast Away",
                    tail_name="Robert Zemeckis", domain="movies")
    facts = [
        Fact(head="Forrest Gump", relation="starred_actors", tail="Tom Hanks", domain="movies", source="kb.txt",
             line=10, score=0.9),
        Fact(head="Forrest Gump", relation="directed_by", tail="Robert Zemeckis", domain="movies",
             source="kb.txt", line=11, score=0.8),
        Fact(head="Forrest Gump", relation="release_year", tail="1994", domain="movies", source="kb.txt",
             line=12, score=0.1),
        Fact(head="Cast Away", relation="starred_actors", tail="Tom Hanks", domain="movies", source="kb.txt",
             line=20, score=0.7),
    ]
    return Answer(
        question="Who directed the films that [Tom Hanks] acted in?",
        answers=[ScoredAnswer(id="Robert Zemeckis", name="Robert Zemeckis", score=0.95, domain="movies",
                              paths=[0, 1])],
        paths=[ReasoningPath(hops=[star, directed], score=0.9), ReasoningPath(hops=[star2, directed2], score=0.6)],
        facts=facts,
        experts=[ExpertChoice(name="movies", score=1.0)],
    )
