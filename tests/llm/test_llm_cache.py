"""The on-disk completion cache: hits, keys, persistence across instances, switching off, streaming."""

from __future__ import annotations

import pytest
from llm_testing import Reverser

from kgllm.exceptions import ConfigError
from kgllm.llm import CachedLLM, LLMCache, resolve_llm


def test_identical_requests_are_served_from_disk(tmp_path):
    backend = Reverser()
    llm = resolve_llm(backend, cache=tmp_path / "cache")
    first = llm.generate("hello", max_tokens=10)
    second = llm.generate("hello", max_tokens=10)
    assert backend.calls == 1 and (llm.hits, llm.misses) == (1, 1)
    assert not first.cached and second.cached
    assert second.text == first.text == "olleh"
    assert (second.prompt_tokens, second.completion_tokens) == (first.prompt_tokens, first.completion_tokens)
    assert (tmp_path / "cache" / LLMCache.FILENAME).is_file()


def test_every_parameter_is_part_of_the_key(tmp_path):
    backend = Reverser()
    llm = resolve_llm(backend, cache=tmp_path)
    llm.generate("hello", max_tokens=10)
    llm.generate("hello", max_tokens=11)
    llm.generate("hello", max_tokens=10, temperature=0.5)
    llm.generate("hello", max_tokens=10, stop=["l"])
    llm.generate([{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}], max_tokens=10)
    assert backend.calls == 5
    other = Reverser()
    other.model = "rev-2"  # another model behind the same backend
    resolve_llm(other, cache=tmp_path).generate("hello", max_tokens=10)
    assert other.calls == 1


def test_cache_persists_and_can_be_switched_off(tmp_path):
    resolve_llm(Reverser(), cache=tmp_path).generate("persist me")
    again = Reverser()
    hit = resolve_llm(again, cache=tmp_path).generate("persist me")
    assert hit.cached and again.calls == 0
    off = Reverser()
    assert resolve_llm(off, cache=False) is off
    off.generate("persist me")
    assert off.calls == 1
    store = LLMCache(tmp_path)
    assert len(store) == 1
    store.clear()
    assert len(store) == 0


def test_stream_is_cached_once_read_to_the_end(tmp_path):
    backend = Reverser()
    llm = CachedLLM(backend, LLMCache(tmp_path))
    assert "".join(llm.stream("abc")) == "cba"
    assert "".join(llm.stream("abc")) == "cba"
    assert backend.calls == 1
    assert llm.generate("abc").cached  # a streamed completion serves later generate calls too



def test_a_damaged_cache_file_is_an_error_naming_it(tmp_path):
    (tmp_path / LLMCache.FILENAME).write_bytes(b"not a database " * 100)
    with pytest.raises(ConfigError, match=r"completions\.sqlite' cannot be used \(file is not a database\); "
                                          r"delete the file, or turn the cache off \(--no-llm-cache"):
        resolve_llm(Reverser(), cache=tmp_path)
    assert resolve_llm(Reverser(), cache=False).generate("hello").text == "olleh"
    # damaged while in use: the lookup says so too
    (tmp_path / LLMCache.FILENAME).unlink()
    llm = resolve_llm(Reverser(), cache=tmp_path)
    llm.generate("hello")
    (tmp_path / LLMCache.FILENAME).write_bytes(b"not a database " * 100)
    with pytest.raises(ConfigError, match="cannot be used"):
        llm.generate("hello")
