"""The RoG-format (WebQSP / CWQ) loader and evaluation on a small hand-made file."""

from __future__ import annotations

import shutil

import pytest

from kgllm.eval.registry import EvalRequest
from kgllm.eval.rog import read_rog, rog_file
from kgllm.eval.runner import run_eval
from kgllm.exceptions import BenchmarkError, LoadError


def test_reads_questions_and_graphs(fixtures_dir):
    questions = list(read_rog(fixtures_dir / "eval" / "rog_sample.jsonl"))
    assert [q.id for q in questions] == ["WebQTest-1", "WebQTest-2", "WebQTest-3"]
    first = questions[0]
    assert first.q_entity == ["Paris"] and first.gold == {"France"}
    assert ("Paris", "location.capital_of", "France") in first.graph and len(first.graph) == 5


def test_bad_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"question": "q", "q_entity": ["a"], "graph": [["a", "r", "b"]]}\n{"question": "x"\n')
    with pytest.raises(LoadError, match=r"test\.jsonl line 2: invalid JSON"):
        list(read_rog(bad))
    bad.write_text('{"question": "q", "q_entity": ["a"], "graph": [["a", "r"]]}\n')
    with pytest.raises(LoadError, match=r"line 1: graph edges must be \[head, relation, tail\]"):
        list(read_rog(bad))
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(LoadError, match=r"missing field\(s\) \['q_entity', 'graph'\]"):
        list(read_rog(bad))
    with pytest.raises(BenchmarkError, match="expected one of: dev.jsonl, validation.jsonl"):
        rog_file(tmp_path, "dev")


def test_a_folder_without_questions_names_every_accepted_file(tmp_path):
    # the runner said "lacks dev.jsonl; expected files: dev.jsonl", although validation.jsonl is read too
    with pytest.raises(BenchmarkError, match=r"^cwq: .*: no dev questions; expected one of: dev\.jsonl, "
                                             r"validation\.jsonl, valid\.jsonl$"):
        run_eval("cwq", EvalRequest(data=tmp_path, split="dev"))
    with pytest.raises(BenchmarkError, match="no test questions; expected one of: test.jsonl"):
        run_eval("webqsp", EvalRequest(data=tmp_path, split="test"))
    with pytest.raises(BenchmarkError, match="webqsp: data folder not found"):
        run_eval("webqsp", EvalRequest(data=tmp_path / "nowhere", split="dev"))


@pytest.mark.slow
def test_answers_each_question_on_its_own_subgraph(fixtures_dir, tmp_path):
    data = tmp_path / "webqsp"
    data.mkdir()
    shutil.copy(fixtures_dir / "eval" / "rog_sample.jsonl", data / "test.jsonl")
    report = run_eval("webqsp", EvalRequest(data=data, split="test", limit=50))
    assert report["n"] == 3
    preds = {p["question"]: p["predicted"] for p in report["predictions"]}
    assert preds["what country is paris the capital of"] == "France"
    assert preds["who directed the film inception"] == "Christopher Nolan"
    assert report["metrics"]["hits@1"] >= 2 / 3
