"""The ``langchain`` backend over langchain-core's own chat models (GenericFakeChatModel, FakeListChatModel)."""

from __future__ import annotations

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from kgllm.exceptions import ConfigError, LLMError
from kgllm.fusion.context import generate_answer
from kgllm.llm import CachedLLM, LangChainLLM, LLMCache, resolve_llm


class RecordingChat(BaseChatModel):
    """A chat model that answers with a fixed text and keeps what LangChain handed it."""

    reply: str = "Robert Zemeckis [2]"
    seen: list = []

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append({"messages": messages, "stop": stop, **kwargs})
        usage = {"input_tokens": 42, "output_tokens": 5, "total_tokens": 47}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply, usage_metadata=usage))])


class EndpointChat(BaseChatModel):
    """A user's own chat model: its settings are fields, and it declares no identifying parameters."""

    base_url: str
    temperature: float = 0.0
    api_key: str = ""
    session: object = None  # a client object: a new one in every process

    @property
    def _llm_type(self) -> str:
        return "endpoint"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        text = f"{self.base_url} at {self.temperature}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

def test_generic_fake_chat_model_generate_and_stream():
    chat = GenericFakeChatModel(messages=iter([AIMessage(content="Robert Zemeckis directed it."),
                                               "Tom Hanks starred in Forrest Gump. Then more"]))
    llm = resolve_llm(chat, cache=False)
    assert isinstance(llm, LangChainLLM) and llm.name == "langchain:GenericFakeChatModel"
    gen = llm.generate("Who directed Forrest Gump?", max_tokens=20)
    assert gen.text == "Robert Zemeckis directed it."
    assert gen.prompt_tokens > 0 and gen.completion_tokens > 0  # counted locally: no usage reported
    pieces = list(llm.stream("And who starred?", stop=[". Then"]))
    assert len(pieces) > 1 and "".join(pieces) == "Tom Hanks starred in Forrest Gump"


def test_messages_stop_and_usage_reach_the_model():
    chat = RecordingChat(seen=[])
    llm = LangChainLLM(chat)
    gen = llm.generate([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"},
                        {"role": "assistant", "content": "A."}, {"role": "user", "content": "Again?"}],
                       max_tokens=7, temperature=0.3, stop=["\n"])
    assert (gen.text, gen.prompt_tokens, gen.completion_tokens) == ("Robert Zemeckis [2]", 42, 5)
    [call] = chat.seen
    assert [type(m) for m in call["messages"]] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert [m.content for m in call["messages"]] == ["Be brief.", "Q?", "A.", "Again?"]
    assert call["stop"] == ["\n"] and "max_tokens" not in call
    LangChainLLM(chat, bind_params=True).generate("Q?", max_tokens=7, temperature=0.3)
    assert chat.seen[-1]["max_tokens"] == 7 and chat.seen[-1]["temperature"] == 0.3


def test_fusion_through_a_langchain_model(movie_answer, tmp_path):
    chat = RecordingChat(seen=[])
    llm = resolve_llm(chat, cache=tmp_path)
    assert isinstance(llm, CachedLLM)
    answer = generate_answer(movie_answer, llm)
    assert answer.text == "Robert Zemeckis [2]" and answer.facts[1].relation == "directed_by"
    assert answer.tokens == {"prompt": 42, "completion": 5} and answer.llm_calls == 1
    assert "[1] Forrest Gump starred actors Tom Hanks" in chat.seen[0]["messages"][1].content
    assert generate_answer(movie_answer, llm).llm_calls == 0 and len(chat.seen) == 1  # served from the cache


def test_every_setting_of_the_chat_model_is_part_of_the_cache_key(tmp_path):
    def ask(**settings):
        return resolve_llm(EndpointChat(session=object(), **settings), cache=tmp_path).generate("Who directed Kismet?")

    first = ask(base_url="http://a/v1")
    assert not first.cached and first.text == "http://a/v1 at 0.0"
    assert ask(base_url="http://b/v1").text == "http://b/v1 at 0.0"  # another server
    assert ask(base_url="http://a/v1", temperature=0.7).text == "http://a/v1 at 0.7"  # another setting
    again = ask(base_url="http://a/v1")
    assert again.cached and again.text == first.text
    assert not ask(base_url="http://a/v1", api_key="sk-secret-1").cached
    assert b"sk-secret-1" not in (tmp_path / LLMCache.FILENAME).read_bytes()  # settings are hashed

def test_provider_errors_become_llm_errors():
    chat = FakeListChatModel(responses=[])  # raises on its first call: no responses left
    with pytest.raises(LLMError, match="langchain:"):
        LangChainLLM(chat).generate("hi")


def test_only_chat_models_are_wrapped():
    with pytest.raises(ConfigError, match="expected a LangChain BaseChatModel"):
        LangChainLLM("not a model")
