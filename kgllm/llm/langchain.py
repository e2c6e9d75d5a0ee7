"""``langchain`` — wrap any LangChain ``BaseChatModel`` (ChatOpenAI, ChatOllama, ChatAnthropic, ...).

Pass the model object from Python: ``kb.ask(q, llm=ChatOllama(model="qwen2.5"))`` or
``resolve_llm(chat_model)``. ``max_tokens`` and ``temperature`` are sent as call arguments only
when ``bind_params=True`` (most provider models accept them; LangChain's own fakes and some
providers take them only in the constructor). ``stop`` is always passed, and enforced on the
output too. Token counts come from the message's ``usage_metadata`` when the provider reports it.
Cached completions are keyed on the model's class and all of its settings (its fields when it is wrapped).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from kgllm.exceptions import ConfigError, LLMError
from kgllm.llm.base import BaseLLM, Generation, Message, StopTrimmer, approx_token_count

__all__ = ["LangChainLLM", "is_langchain_chat_model"]

_INSTALL = 'pip install "kgllm[langchain]"'
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _base_chat_model() -> type:
    try:
        from langchain_core.language_models import BaseChatModel
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(f"the langchain backend needs langchain-core: {_INSTALL}") from exc
    return BaseChatModel


def is_langchain_chat_model(obj: object) -> bool:
    """True for a LangChain ``BaseChatModel`` instance (false, without importing it, if not installed)."""
    if "langchain" not in type(obj).__module__ and not any(
            "langchain" in c.__module__ for c in type(obj).__mro__):
        return False
    try:
        return isinstance(obj, _base_chat_model())
    except ConfigError:  # pragma: no cover
        return False


def _content_text(content: Any) -> str:
    """Message content as text: LangChain content is a string or a list of typed blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content
                       if isinstance(b, (str, dict)))
    return str(content)


def _opaque(value: Any) -> str:
    """An object without a JSON form (a client, a pipeline) by its repr, less the memory address that would
    make every process's key new."""
    return _ADDRESS.sub("", repr(value))


class LangChainLLM(BaseLLM):
    """A LangChain chat model behind the :class:`~kgllm.llm.base.LLM` protocol.

    Args:
        chat_model: any ``langchain_core.language_models.BaseChatModel``.
        bind_params: send ``max_tokens``/``temperature`` with each call.

    Raises:
        ConfigError: ``chat_model`` is not a LangChain chat model.
    """

    backend = "langchain"

    def __init__(self, chat_model: Any, *, bind_params: bool = False) -> None:
        if not isinstance(chat_model, _base_chat_model()):
            raise ConfigError(f"expected a LangChain BaseChatModel, got {type(chat_model).__name__}")
        model_name = (getattr(chat_model, "model_name", None) or getattr(chat_model, "model", None)
                      or type(chat_model).__name__)
        super().__init__(str(model_name))
        self.chat_model: Any = chat_model
        self.bind_params = bind_params
        self._identity = self._settings_identity()

    def _settings_identity(self) -> str:
        """The model's class, name and every setting as it is handed over: its identifying parameters (which
        many providers and users' own models leave empty or partial, e.g. without the base URL) and its
        fields (clients and callbacks are excluded from them by LangChain). Taken once, so that state a model
        keeps between calls does not change the key; hashed, so no key or password is written to the cache."""
        model = self.chat_model
        settings: dict[str, Any] = {}
        for what, read in (("params", lambda: dict(model._identifying_params)), ("fields", model.model_dump)):
            try:
                settings[what] = read()
            except Exception:  # noqa: BLE001 - third-party models may fail here: the rest still identifies
                settings[what] = None
        try:
            text = json.dumps(settings, sort_keys=True, ensure_ascii=False, default=_opaque)
        except (TypeError, ValueError):  # keys that are not strings
            text = _opaque(settings)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"{type(model).__module__}.{type(model).__qualname__}:{self.model}#{digest}"

    @property
    def identity(self) -> str:
        return self._identity

    def count_tokens(self, text: str) -> int:
        # Only use the model's tokenizer when it has a real one: LangChain's default downloads GPT-2's.
        from langchain_core.language_models import BaseLanguageModel

        model = self.chat_model
        own = type(model).get_num_tokens is not BaseLanguageModel.get_num_tokens
        if own or getattr(model, "custom_get_token_ids", None) is not None:
            return int(model.get_num_tokens(text))
        return approx_token_count(text)

    def _to_lc(self, messages: Sequence[Message]) -> list[Any]:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        return [kinds[m["role"]](content=m["content"]) for m in messages]

    def _kwargs(self, max_tokens: int, temperature: float, stop: list[str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"stop": list(stop) or None}
        if self.bind_params:
            kwargs.update(max_tokens=max_tokens, temperature=float(temperature))
        return kwargs

    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str]) -> Generation:
        try:
            result = self.chat_model.invoke(self._to_lc(messages), **self._kwargs(max_tokens, temperature, stop))
        except Exception as exc:  # noqa: BLE001 - any provider error becomes our LLMError
            raise LLMError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        text = StopTrimmer(stop).trim(_content_text(result.content))
        usage = getattr(result, "usage_metadata", None) or {}
        prompt_tokens = usage.get("input_tokens")
        completion_tokens = usage.get("output_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = self.count_message_tokens(messages)
        if not isinstance(completion_tokens, int):
            completion_tokens = self.count_tokens(text)
        finish = (getattr(result, "response_metadata", None) or {}).get("finish_reason")
        return Generation(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          finish_reason=finish)

    def _stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
                stop: list[str]) -> Iterator[str]:
        try:
            for chunk in self.chat_model.stream(self._to_lc(messages),
                                                **self._kwargs(max_tokens, temperature, stop)):
                piece = _content_text(chunk.content)
                if piece:
                    yield piece
        except LLMError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise LLMError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
