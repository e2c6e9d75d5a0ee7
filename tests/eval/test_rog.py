"""The RoG-format (WebQSP / CWQ) loader and evaluation on a small hand-made file."""

from __future__ import annotations

import shutil

import pytest

from kgllm.eval.registry import EvalRequest
from kgllm.eval.rog import read_rog, rog_file
from kgllm.eval.runner import run_eval
from kgllm.exceptions import BenchmarkError, ConfigError, LoadError


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


@pytest.mark.parametrize(("row", "message"), [
    # a bare string was read letter by letter: q_entity ['p', 'a', 'r', 'i', 's'], gold {'f', 'r', ...}
    ('"q_entity": "Paris", "graph": []', r"field 'q_entity' must be a list of strings, got a string: 'Paris'"),
    ('"q_entity": ["Paris"], "graph": [], "answer": "France"', r"field 'answer' must be a list of strings"),
    ('"q_entity": ["Paris"], "graph": [], "a_entity": [1]', r"field 'a_entity' must be a list of strings, got the item 1"),
    ('"q_entity": ["Paris"], "graph": null', r"field 'graph' must be a list of \[head, relation, tail\] edges, got null"),
    ('"q_entity": ["Paris"], "graph": {"a": 1}', r"field 'graph' must be .* edges, got an object"),
])
def test_fields_of_the_wrong_type_name_file_line_and_value(tmp_path, row, message):
    bad = tmp_path / "dev.jsonl"
    bad.write_text('{"question": "q", "q_entity": ["a"], "graph": []}\n{"question": "q", ' + row + "}\n")
    with pytest.raises(LoadError, match=r"dev\.jsonl line 2: " + message):
        list(read_rog(bad))


def test_a_question_that_is_not_a_string_is_named(tmp_path):
    bad = tmp_path / "dev.jsonl"
    bad.write_text('{"question": null, "q_entity": ["a"], "graph": [], "answer": null}\n')
    with pytest.raises(LoadError, match=r"line 1: field 'question' must be a string, got null"):
        list(read_rog(bad))
    bad.write_text('{"question": "q", "q_entity": ["a"], "graph": [], "answer": null, "a_entity": null}\n')
    assert list(read_rog(bad))[0].gold == set()  # null lists are empty, as absent ones


@pytest.mark.parametrize("value", [0, 5, 2.5, "two"])
def test_bad_max_hops_is_a_config_error_before_any_work(fixtures_dir, tmp_path, value):
    # int() read "two" as a ValueError traceback, 2.5 as 2, and 0 failed only on a question with a graph
    data = tmp_path / "webqsp"
    data.mkdir()
    shutil.copy(fixtures_dir / "eval" / "rog_sample.jsonl", data / "dev.jsonl")
    with pytest.raises(ConfigError, match=rf"max_hops must be a whole number at least 1 and at most 4, got {value!r}"):
        run_eval("webqsp", EvalRequest(data=data, split="dev", options={"max_hops": value}))
