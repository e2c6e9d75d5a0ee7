"""Choosing a backend by spec: ``extractive``, ``hf:NAME_OR_PATH``, ``openai:MODEL@BASE_URL``,
``softprompt:MODEL_DIR``, or an object.

``resolve_llm`` is the one place a ``--llm SPEC`` / ``llm=`` value becomes a backend; the backend
modules are imported only when chosen, so the extractive default never pays for torch.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from kgllm.exceptions import ConfigError
from kgllm.llm.base import LLM, BaseLLM
from kgllm.llm.cache import CachedLLM, LLMCache, default_cache_dir
from kgllm.llm.extractive import ExtractiveLLM

__all__ = ["LLM_SPECS", "SPEC_FORMS", "resolve_llm", "parse_spec", "hf_model"]

#: The backends: the spec form that selects each, with what it is (``kgllm stats`` lists them).
LLM_SPECS: dict[str, str] = {
    "extractive": "answers and reasoning chains written from the graph, no model (default)",
    "hf:NAME_OR_PATH": "a local transformers causal LM (CUDA when present)",
    "openai:MODEL@BASE_URL": "an OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama, hosted)",
    "softprompt:MODEL_DIR": "a local causal LM reading the answer's graph as soft-prompt tokens (kgllm train softprompt)",
    "langchain": "any LangChain BaseChatModel object, passed from Python",
}
SPEC_FORMS = ("extractive, hf:NAME_OR_PATH, openai:MODEL@BASE_URL, softprompt:MODEL_DIR "
              "(or a LangChain chat model object from Python)")

_OPENAI_RE = re.compile(r"^(?P<model>[^@]+?)(?:@(?P<url>https?://\S+))?$")


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split a spec string into its backend name and arguments.

    Returns:
        ``("extractive", {})``, ``("hf", {"model": ...})``, ``("openai", {"model": ..., "base_url": ...})`` or
        ``("softprompt", {"model_dir": ...})``.

    Raises:
        ConfigError: an unknown or malformed spec; the message lists the accepted forms.
    """
    text = spec.strip()
    if text in ("", "extractive", "none"):
        return "extractive", {}
    kind, sep, rest = text.partition(":")
    kind = kind.lower()
    if kind == "hf" and sep and rest.strip():
        return "hf", {"model": rest.strip()}
    if kind == "softprompt" and sep and rest.strip():
        return "softprompt", {"model_dir": rest.strip()}
    if kind == "openai" and sep and rest.strip():
        match = _OPENAI_RE.match(rest.strip())
        if match is None:
            raise ConfigError(f"malformed openai spec {spec!r}: the base URL must be http(s)://..., e.g. "
                              "openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1; LLM specs are: "
                              f"{SPEC_FORMS}")
        args = {"model": match["model"]}
        if match["url"]:
            args["base_url"] = match["url"]
        return "openai", args
    if kind == "langchain":
        raise ConfigError("the langchain backend takes a chat model object, not a string: "
                          "pass llm=ChatOpenAI(...) (any BaseChatModel) from Python")
    raise ConfigError(f"unknown LLM spec {spec!r}; expected one of: {SPEC_FORMS}")


_HF_LOADED: OrderedDict[tuple[str, tuple[tuple[str, Any], ...]], Any] = OrderedDict()
_HF_KEEP = 2  # loaded local models kept for reuse (each may hold GBs of GPU memory)
_HF_LOCK = threading.Lock()


def _kept(loaded: OrderedDict[Any, Any], lock: threading.Lock, key: Any, build: Any) -> Any:
    """``loaded[key]``, built by ``build()`` the first time; the ``_HF_KEEP`` most recently used are kept."""
    with lock:
        if key in loaded:
            loaded.move_to_end(key)
            return loaded[key]
        llm = build()
        loaded[key] = llm
        while len(loaded) > _HF_KEEP:
            loaded.popitem(last=False)
        return llm


def hf_model(model: str, kwargs: dict[str, Any]) -> Any:
    """The local model for a spec, loaded once: ``kb.ask(q, llm="hf:...")`` in a loop must not reload it."""
    from kgllm.llm.hf import HFLLM

    key = (str(Path(model).expanduser().resolve()) if Path(model).expanduser().exists() else model,
           tuple(sorted(kwargs.items())))
    return _kept(_HF_LOADED, _HF_LOCK, key, lambda: HFLLM(model, **kwargs))


_SOFT_LOADED: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_SOFT_LOCK = threading.Lock()  # its own: building a soft prompt loads its LM through hf_model


def soft_prompt_model(model_dir: str, kwargs: dict[str, Any]) -> Any:
    """The soft-prompt backend of a trained directory, loaded once (again once retrained there)."""
    from kgllm.fusion.soft_prompt import WEIGHTS, SoftPromptLLM

    path = Path(model_dir).expanduser()
    weights = path / WEIGHTS
    key = (str(path.resolve()), weights.stat().st_mtime_ns if weights.is_file() else None,
           tuple(sorted(kwargs.items())))
    return _kept(_SOFT_LOADED, _SOFT_LOCK, key, lambda: SoftPromptLLM(path, **kwargs))


def _cache(cache: bool | str | Path | LLMCache | None) -> LLMCache | None:
    if cache is False or cache is None:
        return None
    if cache is True:
        return LLMCache(default_cache_dir())
    if isinstance(cache, LLMCache):
        return cache
    if isinstance(cache, (str, Path)):
        return LLMCache(cache)
    raise ConfigError(f"cache must be a bool, a directory or an LLMCache, got {cache!r}")


def resolve_llm(spec: Any = None, *, cache: bool | str | Path | LLMCache | None = None,
                **kwargs: Any) -> LLM:
    """The backend a spec names.

    Args:
        spec: ``None`` or ``"extractive"`` (the default answerer), ``"hf:NAME_OR_PATH"``,
            ``"openai:MODEL@BASE_URL"``, ``"softprompt:MODEL_DIR"``, a LangChain ``BaseChatModel``, or an object that already
            implements the :class:`~kgllm.llm.base.LLM` protocol (returned as is).
        cache: ``True`` for the on-disk cache in :func:`~kgllm.llm.cache.default_cache_dir`, a
            directory or an :class:`LLMCache` for another one, ``False`` for none. The default
            (``None``) caches backends built here from a spec or a LangChain model, and leaves a
            ready :class:`~kgllm.llm.base.BaseLLM` instance as it is.
        **kwargs: backend options (``device=``/``dtype=`` for hf and softprompt; ``api_key=``, ``timeout=``,
            ``max_retries=``, ``tokenizer=`` for openai; ``bind_params=`` for langchain).

    Returns:
        An :class:`~kgllm.llm.base.LLM`; wrapped in :class:`CachedLLM` when a cache is on.

    Raises:
        ConfigError: an unknown spec (the message lists the forms) or bad backend options.
    """
    llm: Any
    if spec is None or isinstance(spec, str):
        kind, args = parse_spec(spec or "extractive")
        if kind == "extractive":
            if kwargs:
                raise ConfigError(f"the extractive backend takes no options, got {sorted(kwargs)}")
            return ExtractiveLLM()  # nothing to cache: it makes no calls
        if kind == "hf":
            llm = hf_model(args["model"], kwargs)
        elif kind == "softprompt":
            llm = soft_prompt_model(args["model_dir"], kwargs)
        else:
            from kgllm.llm.openai import DEFAULT_BASE_URL, OpenAICompatibleLLM

            llm = OpenAICompatibleLLM(args["model"], args.get("base_url", DEFAULT_BASE_URL), **kwargs)
    elif isinstance(spec, BaseLLM):
        llm = spec
    else:
        from kgllm.llm.langchain import LangChainLLM, is_langchain_chat_model

        if is_langchain_chat_model(spec):
            llm = LangChainLLM(spec, **kwargs)
        elif isinstance(spec, LLM):
            return spec  # a user's own backend: used as given, cached only if it is a BaseLLM
        else:
            raise ConfigError(f"cannot use {type(spec).__name__} as an LLM; expected one of: {SPEC_FORMS}, "
                              "or an object with name, generate, stream and count_tokens")
    if cache is None:  # default: cache what we built, leave a given instance alone
        cache = not isinstance(spec, BaseLLM)
    store = _cache(cache)
    # a backend that reads the answer's graph beside the prompt is not served from a cache keyed by the prompt
    if store is not None and llm.generative and not isinstance(llm, CachedLLM) \
            and not getattr(llm, "reads_evidence", False):
        return CachedLLM(llm, store)
    return llm
