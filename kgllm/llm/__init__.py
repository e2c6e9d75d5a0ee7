"""Language-model backends behind one small protocol, chosen by spec.

>>> from kgllm.llm import resolve_llm
>>> llm = resolve_llm("extractive")            # default, no model
>>> llm = resolve_llm("hf:/models/Qwen2.5-1.5B-Instruct")               # doctest: +SKIP
>>> llm = resolve_llm("openai:qwen2.5@http://127.0.0.1:8000/v1")         # doctest: +SKIP
>>> llm = resolve_llm(ChatOllama(model="llama3.1"))                      # doctest: +SKIP

Heavy backends (torch/transformers, langchain-core) are imported only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

from kgllm.llm.base import LLM, BaseLLM, Generation, Message, Prompt, approx_token_count, normalize_messages
from kgllm.llm.cache import CachedLLM, LLMCache, default_cache_dir
from kgllm.llm.extractive import ExtractiveLLM, extractive_text
from kgllm.llm.registry import LLM_SPECS, SPEC_FORMS, parse_spec, resolve_llm

__all__ = [
    "LLM",
    "BaseLLM",
    "Generation",
    "Message",
    "Prompt",
    "normalize_messages",
    "approx_token_count",
    "resolve_llm",
    "parse_spec",
    "LLM_SPECS",
    "SPEC_FORMS",
    "ExtractiveLLM",
    "extractive_text",
    "LLMCache",
    "CachedLLM",
    "default_cache_dir",
    "HFLLM",
    "OpenAICompatibleLLM",
    "LangChainLLM",
]

_LAZY = {"HFLLM": "kgllm.llm.hf", "OpenAICompatibleLLM": "kgllm.llm.openai",
         "LangChainLLM": "kgllm.llm.langchain"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kgllm.llm' has no attribute {name!r}")
