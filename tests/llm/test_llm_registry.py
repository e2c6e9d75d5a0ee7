"""Backend specs: parsing, errors that list the forms, the extractive backend, the protocol and exports."""

from __future__ import annotations

import pytest
from llm_testing import Reverser

import kgllm.llm as llm_pkg
from kgllm.exceptions import ConfigError, LLMError
from kgllm.llm import LLM, CachedLLM, ExtractiveLLM, LLMCache, parse_spec, resolve_llm
from kgllm.llm.base import StopTrimmer, approx_token_count, messages_to_text, normalize_messages


@pytest.mark.parametrize("spec, expected", [
    ("extractive", ("extractive", {})),
    ("", ("extractive", {})),
    ("hf:/models/qwen", ("hf", {"model": "/models/qwen"})),
    ("hf:Qwen/Qwen2.5-0.5B-Instruct", ("hf", {"model": "Qwen/Qwen2.5-0.5B-Instruct"})),
    ("openai:gpt-4o-mini@http://127.0.0.1:8000/v1",
     ("openai", {"model": "gpt-4o-mini", "base_url": "http://127.0.0.1:8000/v1"})),
    ("openai:Qwen/Qwen2.5-7B-Instruct@https://host:443/v1",
     ("openai", {"model": "Qwen/Qwen2.5-7B-Instruct", "base_url": "https://host:443/v1"})),
    ("openai:gpt-4o-mini", ("openai", {"model": "gpt-4o-mini"})),
])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["gpt4", "hf:", "openai:", "vllm:model@http://x", "openai:m@ftp://host"])
def test_unknown_spec_lists_the_forms(spec):
    with pytest.raises(ConfigError) as info:
        resolve_llm(spec)
    message = str(info.value)
    assert repr(spec) in message
    for form in ("extractive", "hf:NAME_OR_PATH", "openai:MODEL@BASE_URL"):
        assert form in message


def test_langchain_spec_string_explains_to_pass_an_object():
    with pytest.raises(ConfigError, match="BaseChatModel"):
        resolve_llm("langchain")


def test_non_llm_object_is_refused():
    with pytest.raises(ConfigError, match="cannot use int as an LLM"):
        resolve_llm(42)


def test_extractive_backend_refuses_to_generate():
    llm = resolve_llm(None)
    assert isinstance(llm, ExtractiveLLM) and llm.name == "extractive" and not llm.generative
    assert isinstance(llm, LLM)
    with pytest.raises(LLMError, match="hf:NAME_OR_PATH"):
        llm.generate("hello")
    with pytest.raises(ConfigError, match="no options"):
        resolve_llm("extractive", device="cpu")


def test_missing_hf_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such model directory"):
        resolve_llm(f"hf:{tmp_path / 'absent'}", cache=False)


def test_model_dir_without_tokenizer(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="has no tokenizer"):
        resolve_llm(f"hf:{tmp_path}", cache=False)


def test_base_validates_arguments():
    llm = Reverser()
    with pytest.raises(ConfigError, match="max_tokens"):
        llm.generate("abc", max_tokens=0)
    with pytest.raises(ConfigError, match="temperature"):
        llm.generate("abc", temperature=-1)
    with pytest.raises(ConfigError, match="unknown role 'robot'"):
        llm.generate([{"role": "robot", "content": "x"}])
    with pytest.raises(ConfigError, match="empty prompt"):
        llm.generate("")
    assert llm.calls == 0
    assert llm.generate("abc|def", stop="|").text == "fed"  # a bare string stop is one stop, not characters


def test_a_backend_that_returns_bare_text_is_told_what_to_return():
    class Bare(Reverser):
        def _generate(self, messages, *, max_tokens, temperature, stop):
            return "Robert Zemeckis"

    with pytest.raises(LLMError, match=r"^reverse:rev-1: Bare\._generate returned str, not a Generation\(text="):
        Bare().generate("Who directed Forrest Gump?")

def test_stream_is_cut_at_stop_across_pieces():
    trimmer = StopTrimmer(["STOP"])
    out = "".join(trimmer.feed(p) for p in ["Rob", "ert ST", "OP and more"]) + trimmer.flush()
    assert out == "Robert " and trimmer.stopped
    assert list(Reverser().stream("xxSTOPyy", stop=["POT"])) == ["yy"]


def test_cache_wraps_only_what_resolve_built(tmp_path):
    given = Reverser()
    assert resolve_llm(given) is given  # a ready instance is used as given
    cached = resolve_llm(given, cache=tmp_path)
    assert isinstance(cached, CachedLLM) and cached.name == "reverse:rev-1"
    assert isinstance(resolve_llm(given, cache=LLMCache(tmp_path)), CachedLLM)
    with pytest.raises(ConfigError, match="cache must be"):
        resolve_llm(given, cache=3.5)


def test_helpers():
    assert normalize_messages("hi") == [{"role": "user", "content": "hi"}]
    assert messages_to_text([{"role": "user", "content": "hi"}]) == "hi"
    text = messages_to_text([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert text == "System: S\n\nUser: U\n\nAssistant:"
    assert approx_token_count("") == 0
    assert approx_token_count("Who directed Kismet?") >= 4


def test_exports_are_public_and_lazy():
    for name in llm_pkg.__all__:
        assert getattr(llm_pkg, name) is not None
    assert set(llm_pkg.LLM_SPECS) >= {"extractive", "hf:NAME_OR_PATH", "openai:MODEL@BASE_URL"}
    with pytest.raises(AttributeError):
        llm_pkg.NotAThing  # noqa: B018


def test_module_exports():
    import kgllm.fusion.context as context
    import kgllm.integrations.langchain as integration

    for module in (context, integration):
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)


def test_retry_after_forms():
    import email.utils
    import time

    import httpx

    from kgllm.llm.openai import _retry_after

    def response(value):
        return httpx.Response(429, headers={"Retry-After": value} if value is not None else {})

    assert _retry_after(response("3")) == 3.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after(response(later)) <= 31
    assert _retry_after(response("soon")) is None and _retry_after(response(None)) is None
