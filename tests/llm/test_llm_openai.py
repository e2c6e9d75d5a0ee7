"""``openai:`` against a local chat-completions server: exact requests, auth, retries, timeouts, SSE streaming."""

from __future__ import annotations

import base64
import socket
import time

import pytest
from llm_testing import Reply

from kgllm.exceptions import ConfigError, LLMError
from kgllm.llm import OpenAICompatibleLLM, resolve_llm


def make(server, **kwargs):
    kwargs.setdefault("backoff", 0.01)
    return resolve_llm(f"openai:test-model@{server.url}", cache=False, **kwargs)


def test_request_is_exactly_the_chat_completions_protocol(chat_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    llm = make(chat_server)
    assert isinstance(llm, OpenAICompatibleLLM)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who directed Kismet?"}]
    gen = llm.generate(messages, max_tokens=32, temperature=0.2, stop=["\n\n", "Question:"])
    assert gen.text == "echo: Who directed Kismet?"
    assert (gen.prompt_tokens, gen.completion_tokens, gen.finish_reason) == (11, 7, "stop")
    [request] = chat_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-from-env"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"model": "test-model", "messages": messages, "max_tokens": 32, "temperature": 0.2,
                            "stop": ["\n\n", "Question:"]}
    llm.close()


def test_string_prompt_and_key_argument_override_env(chat_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with make(chat_server, api_key="sk-given") as llm:
        llm.generate("hi", max_tokens=5)
    request = chat_server.requests[0]
    assert request.headers["authorization"] == "Bearer sk-given"
    assert request.body == {"model": "test-model", "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": 5, "temperature": 0.0}


def test_no_key_no_auth_header(chat_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with make(chat_server) as llm:
        llm.generate("hi")
    assert "authorization" not in chat_server.requests[0].headers


def test_missing_usage_is_counted_locally(chat_server):
    chat_server.script = [Reply(body={"choices": [{"message": {"role": "assistant", "content": "Robert Zemeckis"},
                                                   "finish_reason": "stop"}]})]
    with make(chat_server) as llm:
        gen = llm.generate("Who directed Forrest Gump?")
    assert gen.text == "Robert Zemeckis" and gen.completion_tokens >= 2 and gen.prompt_tokens >= 5


def test_429_is_retried_after_the_servers_retry_after(chat_server):
    chat_server.script = [Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "1"})]
    with make(chat_server, max_retries=2) as llm:
        gen = llm.generate("hi")
    assert gen.text == "echo: hi"
    first, second = chat_server.requests
    assert second.time - first.time >= 0.9  # Retry-After honoured, not our 10 ms backoff
    assert second.body == first.body


def test_500s_are_retried_with_backoff_then_fail(chat_server):
    chat_server.script = [Reply(status=500, body={"error": {"message": "boom"}}) for _ in range(3)]
    with make(chat_server, max_retries=2, backoff=0.05) as llm:
        with pytest.raises(LLMError) as info:
            llm.generate("hi")
    assert "3 attempt(s)" in str(info.value) and "HTTP 500: boom" in str(info.value)
    times = [r.time for r in chat_server.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1  # exponential


def test_503_then_success(chat_server):
    chat_server.script = [Reply(status=503), Reply(status=502)]
    with make(chat_server, max_retries=3) as llm:
        assert llm.generate("again").text == "echo: again"
    assert len(chat_server.requests) == 3


def test_client_errors_are_not_retried(chat_server):
    chat_server.script = [Reply(status=400, body={"error": {"message": "model 'x' not found"}})]
    with make(chat_server, max_retries=3) as llm:
        with pytest.raises(LLMError, match="HTTP 400: model 'x' not found"):
            llm.generate("hi")
    assert len(chat_server.requests) == 1


def test_not_found_names_the_url_it_posted_to(chat_server):
    chat_server.script = [Reply(status=404, body={"detail": "Not Found"})]
    llm = resolve_llm(f"openai:test-model@{chat_server.url}/chat/completions", cache=False)  # not the API root
    with llm, pytest.raises(LLMError) as err:
        llm.generate("hi")
    assert str(err.value) == (f"openai:test-model@{chat_server.url}/chat/completions: HTTP 404: "
                              f'{{"detail": "Not Found"}} (POST {chat_server.url}/chat/completions/chat/completions; '
                              "the base URL must be the API root, such as http://127.0.0.1:8000/v1)")
    assert len(chat_server.requests) == 1

def test_credentials_in_the_url_reach_the_server_but_no_name_error_or_cache_key(chat_server):
    # A user:password in the URL and a query (Azure's ?api-version=) are kept for the request; what is
    # printed, reported or stored as a cache key shows them as ***.
    url = chat_server.url.replace("http://", "http://alice:s3cret@") + "?api-version=2024-06-01"
    chat_server.script = [Reply(), Reply(status=404, body={"detail": "Not Found"})]
    with resolve_llm(f"openai:test-model@{url}", cache=False, max_retries=0) as llm:
        assert llm.generate("hi").text == "echo: hi"
        with pytest.raises(LLMError) as err:
            llm.generate("hi")
    first = chat_server.requests[0]
    assert first.path == "/v1/chat/completions?api-version=2024-06-01"
    assert first.headers["authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    shown = chat_server.url.replace("http://", "http://alice:***@") + "?api-version=***"
    assert llm.name == f"openai:test-model@{shown}" and llm.identity == f"test-model@{shown}"
    assert "s3cret" not in str(err.value) and "2024-06-01" not in str(err.value)


def test_slow_server_times_out(chat_server):
    chat_server.script = [Reply(delay=1.5), Reply(delay=1.5)]
    with make(chat_server, timeout=0.3, max_retries=1) as llm:
        start = time.monotonic()
        with pytest.raises(LLMError, match="timed out"):
            llm.generate("hi")
    assert time.monotonic() - start < 1.5
    assert len(chat_server.requests) == 2


def test_body_that_stalls_or_breaks_off_is_retried_then_an_llm_error(chat_server):
    # The headers arrive in time, the body does not (or is cut short): retried like any timeout, and
    # reported as LLMError (the CLI's one-line error), not as an httpx exception.
    chat_server.script = [Reply(body_delay=1.5), Reply(cut=True)]
    with make(chat_server, timeout=0.3, max_retries=2) as llm:
        assert llm.generate("hi").text == "echo: hi"
    assert len(chat_server.requests) == 3
    chat_server.script = [Reply(cut=True), Reply(body_delay=1.5)]
    with make(chat_server, timeout=0.3, max_retries=1) as llm, \
            pytest.raises(LLMError, match="2 attempt.*timed out after 0.3s reading the response"):
        llm.generate("hi")
    chat_server.script = [Reply(cut=True)]
    with make(chat_server, max_retries=0) as llm, pytest.raises(LLMError, match="broke off"):
        llm.generate("hi")


def test_unreachable_endpoint():
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = resolve_llm(f"openai:m@http://127.0.0.1:{port}/v1", cache=False, max_retries=1, backoff=0.01)
    with pytest.raises(LLMError, match="cannot reach http://127.0.0.1"):
        llm.generate("hi")
    llm.close()


def test_malformed_response(chat_server):
    chat_server.script = [Reply(body={"unexpected": True}),
                          Reply(body={"choices": [{"message": {"content": 42}}]}),
                          Reply(body={"choices": [{"message": {"content": "x"}}], "usage": "none"})]
    with make(chat_server) as llm:
        for _ in range(3):
            with pytest.raises(LLMError, match="malformed"):
                llm.generate("hi")


def test_content_given_as_text_parts(chat_server):
    parts = [{"type": "text", "text": "Robert "}, {"type": "text", "text": "Zemeckis"}]
    chat_server.script = [Reply(body={"choices": [{"message": {"role": "assistant", "content": parts}}]}),
                          Reply(body={"choices": [{"message": {"role": "assistant", "content": None}}]})]
    with make(chat_server) as llm:
        assert llm.generate("Who directed Forrest Gump?").text == "Robert Zemeckis"
        assert llm.generate("hi").text == ""


def test_sse_streaming(chat_server):
    def delta(text):
        return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}

    chat_server.script = [Reply(events=[
        ": keep-alive comment\n\n",
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        delta("Robert"), delta(" Zeme"), delta("ckis [1]"), delta(" and more"),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        "data: [DONE]\n\n",
    ])]
    with make(chat_server) as llm:
        pieces = list(llm.stream("Who directed Forrest Gump?", max_tokens=20, stop=[" and"]))
    assert "".join(pieces) == "Robert Zemeckis [1]"
    assert len(pieces) >= 2  # really streamed, not one block
    body = chat_server.requests[0].body
    assert body["stream"] is True and body["stop"] == [" and"] and body["max_tokens"] == 20


def test_stream_cut_short_is_an_error_and_not_cached(chat_server, tmp_path):
    # The server closes the connection mid-answer (no finish_reason, no [DONE]): the partial text must
    # not be taken, nor cached, as the complete answer.
    piece = {"choices": [{"index": 0, "delta": {"content": "Rob"}, "finish_reason": None}]}
    done = {"choices": [{"index": 0, "delta": {"content": "ert"}, "finish_reason": "stop"}]}
    chat_server.script = [Reply(events=[piece]), Reply(events=[piece]), Reply(events=[piece, done])]
    llm = resolve_llm(f"openai:test-model@{chat_server.url}", cache=tmp_path, backoff=0.01)
    pieces = []
    with pytest.raises(LLMError, match="stream ended before the server finished"):
        pieces.extend(llm.stream("Who directed Forrest Gump?"))
    assert pieces == ["Rob"]
    with pytest.raises(LLMError, match="stream ended before"):
        list(llm.stream("Who directed Forrest Gump?"))
    assert len(chat_server.requests) == 2 and len(llm.cache) == 0
    assert "".join(llm.stream("Who directed Forrest Gump?")) == "Robert"  # complete without [DONE]: cached
    assert llm.generate("Who directed Forrest Gump?").cached and len(chat_server.requests) == 3
    llm.close()


def test_extra_body_is_part_of_the_cache_key(chat_server, tmp_path):
    # top_p, seed or an adapter name change what the server writes: a cached completion made with other
    # extra fields must not be served.
    def llm(**extra):
        return resolve_llm(f"openai:test-model@{chat_server.url}", cache=tmp_path, extra_body=extra or None)

    for extra in ({}, {"top_p": 0.1}, {"top_p": 0.9}, {"top_p": 0.9, "seed": 7}):
        with llm(**extra) as backend:
            assert not backend.generate("Who directed Kismet?").cached
    assert len(chat_server.requests) == 4
    assert [r.body.get("top_p") for r in chat_server.requests] == [None, 0.1, 0.9, 0.9]
    with llm(seed=7, top_p=0.9) as backend:  # the same fields in another order: the same request
        assert backend.generate("Who directed Kismet?").cached
    assert len(chat_server.requests) == 4

def test_stream_error_event(chat_server):
    chat_server.script = [Reply(events=[{"error": {"message": "overloaded"}}])]
    with make(chat_server) as llm, pytest.raises(LLMError, match="overloaded"):
        list(llm.stream("hi"))


def test_bad_settings():
    with pytest.raises(ConfigError, match="invalid base URL"):
        OpenAICompatibleLLM("m", "localhost:8000")
    with pytest.raises(ConfigError, match="timeout"):
        OpenAICompatibleLLM("m", "http://127.0.0.1:1/v1", timeout=0)
