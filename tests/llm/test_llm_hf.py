"""``hf:`` with tiny random-weight causal LMs built in the test: tokens, chat template, generation, streaming."""

from __future__ import annotations

import pytest
from llm_testing import build_tiny_causal_lm

from kgllm.exceptions import LLMError
from kgllm.fusion.context import generate_answer
from kgllm.llm import CachedLLM, LLMCache, resolve_llm
from kgllm.llm.base import messages_to_text
from kgllm.llm.hf import HFLLM

pytestmark = pytest.mark.usefixtures("torch_threads")

MESSAGES = [{"role": "system", "content": "You answer questions."},
            {"role": "user", "content": "Who directed Forrest Gump?"}]


@pytest.fixture(scope="module")
def plain(tiny_lm_dir):
    return HFLLM(tiny_lm_dir, device="cpu")


@pytest.fixture(scope="module")
def chat(tiny_chat_lm_dir):
    return HFLLM(tiny_chat_lm_dir, device="cpu")


def test_loads_on_cpu_with_the_models_own_tokenizer(plain, tiny_lm_dir):
    assert plain.device == "cpu" and not plain.has_chat_template
    assert plain.context_length == 512
    assert plain.name == f"hf:{tiny_lm_dir}"
    assert str(tiny_lm_dir.resolve()) in plain.identity
    text = "Tom Hanks starred in Forrest Gump."
    assert plain.count_tokens(text) == len(plain.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert plain.count_tokens(text) < len(text)  # BPE merges learned from the corpus


def test_plain_prompt_without_chat_template(plain):
    assert plain.render(MESSAGES) == messages_to_text(MESSAGES)
    gen = plain.generate(MESSAGES, max_tokens=12)
    assert gen.prompt_tokens == plain.count_message_tokens(MESSAGES)
    assert 1 <= gen.completion_tokens <= 12
    assert gen.finish_reason in ("stop", "length")
    assert plain.generate(MESSAGES, max_tokens=12) == gen  # greedy decoding is deterministic


def test_chat_template_is_used(chat):
    assert chat.has_chat_template
    rendered = chat.render(MESSAGES)
    assert rendered == ("<|system|>You answer questions.</s>\n<|user|>Who directed Forrest Gump?</s>\n"
                        "<|assistant|>")
    gen = chat.generate(MESSAGES, max_tokens=8)
    # The template writes its own special tokens: nothing added twice.
    assert gen.prompt_tokens == len(chat.tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert gen.completion_tokens <= 8


def test_sampling_uses_temperature(chat):
    import torch

    torch.manual_seed(1)
    a = chat.generate("Tom Hanks", max_tokens=16, temperature=1.5).text
    torch.manual_seed(2)
    b = chat.generate("Tom Hanks", max_tokens=16, temperature=1.5).text
    greedy = chat.generate("Tom Hanks", max_tokens=16).text
    assert len({a, b, greedy}) >= 2


def test_stop_sequences_end_the_text(plain):
    full = plain.generate("Tom Hanks starred in", max_tokens=24).text
    assert len(full) > 8, full
    middle = len(full) // 2
    stop = full[middle:middle + 3]
    cut = full.find(stop)
    assert cut > 0
    stopped = plain.generate("Tom Hanks starred in", max_tokens=24, stop=[stop])
    assert stopped.text == full[:cut]
    assert stopped.finish_reason == "stop"


def test_streaming_gives_the_same_text_in_pieces(plain):
    full = plain.generate(MESSAGES, max_tokens=20).text
    pieces = list(plain.stream(MESSAGES, max_tokens=20))
    assert "".join(pieces) == full
    assert len(pieces) >= 1


def test_prompt_longer_than_the_context(plain):
    with pytest.raises(LLMError, match="exceeds the model's context of 512 tokens"):
        plain.generate("Forrest Gump " * 400, max_tokens=8)


def test_spec_with_cache(tiny_chat_lm_dir, tmp_path):
    llm = resolve_llm(f"hf:{tiny_chat_lm_dir}", cache=tmp_path, device="cpu")
    assert isinstance(llm, CachedLLM) and llm.has_chat_template  # backend attributes pass through
    first = llm.generate("Kismet", max_tokens=6)
    second = llm.generate("Kismet", max_tokens=6)
    assert not first.cached and second.cached and second.text == first.text
    assert llm.hits == 1
    again = resolve_llm(f"hf:{tiny_chat_lm_dir}", cache=False, device="cpu")
    assert again is llm.llm  # a loaded model is reused, not loaded again per question


def test_the_precision_is_part_of_the_cache_key(tiny_chat_lm_dir, tmp_path):
    # bfloat16 weights write other texts than float32 ones: their completions are cached apart
    full = CachedLLM(HFLLM(tiny_chat_lm_dir, device="cpu", dtype="float32"), LLMCache(tmp_path))
    half = CachedLLM(HFLLM(tiny_chat_lm_dir, device="cpu", dtype="bfloat16"), LLMCache(tmp_path))
    assert not full.generate("Kismet", max_tokens=4).cached
    assert not half.generate("Kismet", max_tokens=4).cached
    assert full.generate("Kismet", max_tokens=4).cached and half.generate("Kismet", max_tokens=4).cached

def test_a_path_under_the_home_directory(tiny_lm_dir, tmp_path, monkeypatch):
    # `--llm hf:~/models/x`: the shell does not expand a ~ after "hf:", so kgllm must
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_lm_dir, target_is_directory=True)
    llm = HFLLM("~/models/tiny", device="cpu")  # what resolve_llm("hf:~/models/tiny") loads
    assert llm.name == "hf:~/models/tiny" and llm.identity.startswith(str(tiny_lm_dir.resolve()))
    assert llm.generate("Kismet", max_tokens=2).completion_tokens >= 1

def test_generate_answer_with_a_local_model(chat, movie_answer):
    answer = generate_answer(movie_answer, chat, max_tokens=10)
    assert answer.llm_calls == 1
    assert answer.prompt.startswith("<|system|>You answer questions with the help of facts")
    assert answer.prompt.endswith("</s>\n<|assistant|>")  # exactly what the chat template gave the model
    assert "Question: Who directed the films that [Tom Hanks] acted in?" in answer.prompt
    assert "[1] Forrest Gump starred actors Tom Hanks" in answer.prompt
    assert answer.tokens["prompt"] == len(chat.tokenizer(answer.prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= answer.tokens["completion"] <= 10
    assert answer.text == answer.text.strip()


def test_budget_measured_with_the_models_tokenizer(chat, movie_answer):
    full = generate_answer(movie_answer, chat, max_tokens=4)
    budget = full.tokens["prompt"] - 5
    tight = generate_answer(movie_answer, chat, max_tokens=4, budget=budget)
    assert tight.tokens["prompt"] <= budget
    assert any("dropped 1 of 5 facts" in w for w in tight.warnings), tight.warnings
    # the lowest-score fact (release year, 0.1) went first
    assert "release year" in full.prompt and "release year" not in tight.prompt
    assert tight.facts[-1].relation == "release_year"


def test_device_is_chosen_automatically(tiny_lm_dir):
    import torch

    llm = HFLLM(tiny_lm_dir)
    assert llm.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(llm._model.parameters()).device.type == llm.device


@pytest.mark.gpu
def test_generates_on_cuda_in_bfloat16(tiny_chat_lm_dir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    llm = HFLLM(tiny_chat_lm_dir)
    assert next(llm._model.parameters()).dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported()
                                                   else torch.float32)
    gen = llm.generate(MESSAGES, max_tokens=8)
    assert gen.prompt_tokens == llm.count_message_tokens(MESSAGES) and 1 <= gen.completion_tokens <= 8
    assert "".join(llm.stream(MESSAGES, max_tokens=8)) == gen.text


NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>"
    "{% endif %}"
)


def test_template_without_system_role(tmp_path):
    llm = HFLLM(build_tiny_causal_lm(tmp_path / "gemma-like", chat_template=NO_SYSTEM_TEMPLATE), device="cpu")
    assert llm.render(MESSAGES) == ("<|user|>You answer questions.\n\nWho directed Forrest Gump?</s>"
                                    "<|assistant|>")
    assert llm.generate(MESSAGES, max_tokens=3).prompt_tokens == llm.count_message_tokens(MESSAGES)
    with pytest.raises(LLMError, match="chat template failed"):
        llm.render([{"role": "user", "content": "a"}, {"role": "system", "content": "late system"}])
