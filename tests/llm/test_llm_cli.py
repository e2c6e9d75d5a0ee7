"""``kgllm ask --llm hf:PATH`` and ``--llm openai:MODEL@URL`` end to end, on a real KB of MetaQA triples."""

from __future__ import annotations

import json
import shutil

import pytest
from llm_testing import Reply

import kgllm
from kgllm.cli import main

pytestmark = pytest.mark.usefixtures("torch_threads")

QUESTION = "Who directed [Kismet]?"


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory, fixtures_dir):
    path = tmp_path_factory.mktemp("cli") / "kb"
    with kgllm.open(path) as kb:
        kb.load(fixtures_dir / "kb" / "tiny_movies")
    return path


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """The default LLM cache lives under the home directory: keep it in the test's folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def ask(capsys, kb_dir, *args):
    """Run ``kgllm --kb DIR --json ask QUESTION ARGS``: exit code, stdout, stderr."""
    code = main(["--kb", str(kb_dir), "--json", "ask", QUESTION, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_with_an_openai_compatible_server(kb_dir, chat_server, home, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli")
    chat_server.script = [Reply(body={
        "choices": [{"message": {"role": "assistant", "content": "William Dieterle directed Kismet [1] [40]."},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 150, "completion_tokens": 12}})]
    code, out, err = ask(capsys, kb_dir, "--llm", f"openai:served-model@{chat_server.url}")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["text"] == "William Dieterle directed Kismet [1]."
    assert answer["facts"][0]["tail"] == "William Dieterle"
    assert answer["llm_calls"] == 1 and answer["tokens"] == {"prompt": 150, "completion": 12}
    assert any("cited [40]" in w for w in answer["warnings"])  # beyond the retrieved facts too
    [request] = chat_server.requests
    assert request.body["model"] == "served-model"
    assert request.headers["authorization"] == "Bearer sk-cli"
    assert "[1] Kismet directed by William Dieterle" in request.body["messages"][1]["content"]
    assert answer["prompt"].startswith("System: You answer questions")
    # the same question again is served from the on-disk cache: no request, no call
    again = json.loads(ask(capsys, kb_dir, "--llm", f"openai:served-model@{chat_server.url}")[1])
    assert again["text"] == answer["text"] and again["llm_calls"] == 0 and len(chat_server.requests) == 1
    assert (kb_dir / "llm_cache" / "completions.sqlite").is_file()  # the cache lives with the KB
    assert not (home / ".cache" / "kgllm").exists()
    # --no-llm-cache asks the server again
    chat_server.script = [Reply(body={
        "choices": [{"message": {"role": "assistant", "content": "William Dieterle [1]."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 150, "completion_tokens": 5}})]
    fresh = json.loads(ask(capsys, kb_dir, "--llm", f"openai:served-model@{chat_server.url}", "--no-llm-cache")[1])
    assert fresh["llm_calls"] == 1 and len(chat_server.requests) == 2


def test_ask_with_a_local_model(kb_dir, tiny_chat_lm_dir, home, capsys):
    code, out, err = ask(capsys, kb_dir, "--llm", f"hf:{tiny_chat_lm_dir}")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["llm_calls"] == 1 and answer["tokens"]["completion"] >= 1
    assert answer["prompt"].startswith("<|system|>") and answer["prompt"].endswith("<|assistant|>")
    assert "[1] Kismet directed by William Dieterle" in answer["prompt"]
    assert answer["answers"][0]["name"] == "William Dieterle"  # ranking comes from the graph, not the LM


def test_bad_llm_specs_are_one_line_errors(kb_dir, home, capsys, tmp_path):
    code, out, err = ask(capsys, kb_dir, "--llm", "gpt-5")
    assert code == 1 and out == ""
    assert err.startswith("ConfigError: unknown LLM spec 'gpt-5'; expected one of: extractive, hf:NAME_OR_PATH, "
                          "openai:MODEL@BASE_URL") and err.count("\n") == 1
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text("{}")
    code, _, err = ask(capsys, kb_dir, "--llm", f"hf:{tmp_path / 'weights'}")
    assert code == 1 and err.startswith("ConfigError: hf:") and "has no tokenizer" in err


def test_a_damaged_llm_cache_is_a_one_line_error(kb_dir, chat_server, home, capsys, tmp_path):
    kb = tmp_path / "kb"
    shutil.copytree(kb_dir, kb)
    (kb / "llm_cache").mkdir(exist_ok=True)
    (kb / "llm_cache" / "completions.sqlite").write_bytes(b"not a database " * 100)
    code, out, err = ask(capsys, kb, "--llm", f"openai:served-model@{chat_server.url}")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("ConfigError: the LLM cache ") and "--no-llm-cache" in err
    code, out, err = ask(capsys, kb, "--llm", f"openai:served-model@{chat_server.url}", "--no-llm-cache")
    assert code == 0, err
    assert json.loads(out)["llm_calls"] == 1
