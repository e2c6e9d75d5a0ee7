"""MetaQA's bad inputs: options and question files, refused before the KB is built."""

from __future__ import annotations

import shutil

import pytest

from kgllm.eval.metaqa import read_questions
from kgllm.eval.registry import EvalRequest
from kgllm.eval.runner import run_eval
from kgllm.exceptions import ConfigError, LoadError


@pytest.mark.parametrize(("value", "shown"), [(0, "0"), ("abc", "'abc'"), (2.5, "2.5")])
def test_bad_batch_size_is_a_config_error_before_the_kb(fixtures_dir, tmp_path, value, shown):
    # int() made "abc" a ValueError traceback, 2.5 a batch of 2, and 0 "range() arg 3 must not be zero" after
    # the KB was built
    with pytest.raises(ConfigError, match=f"^batch_size must be a whole number at least 1, got {shown}$"):
        run_eval("metaqa-1hop", EvalRequest(data=fixtures_dir / "metaqa", split="dev", kb=tmp_path / "kb",
                                            options={"batch_size": value}))
    assert not (tmp_path / "kb").exists()


def test_question_files_that_are_not_utf8_name_file_and_line(fixtures_dir, tmp_path):
    data = tmp_path / "metaqa"
    shutil.copytree(fixtures_dir / "metaqa", data)
    questions = data / "1-hop" / "qa_dev.txt"
    count = len(read_questions(questions))
    with open(questions, "ab") as fh:
        fh.write(b"what films did [Fran\xe7ois] direct\tX\n")
    with pytest.raises(LoadError, match=rf"qa_dev\.txt line {count + 1}: not valid utf-8 text"):
        read_questions(questions)
    qtypes = data / "1-hop" / "qa_dev_qtype.txt"
    qtypes.write_bytes(qtypes.read_bytes() + b"\xff\n")
    with pytest.raises(LoadError, match=r"qa_dev_qtype\.txt line \d+: not valid utf-8 text"):
        read_questions(data / "3-hop" / "qa_dev.txt", qtypes)


@pytest.mark.parametrize("option", ["held_out", "ntm", "all_lines"])
def test_a_yes_no_option_that_is_neither_is_refused_before_the_kb(fixtures_dir, tmp_path, option):
    # "-o held_out=ture" was silently false: the whole dev set scored as if held out
    from kgllm.eval.registry import TrainRequest, flag, get_trainer

    with pytest.raises(ConfigError, match=rf"^-o {option}='ture': expected true or false"):
        if option == "held_out":
            run_eval("metaqa-1hop", EvalRequest(data=fixtures_dir / "metaqa", split="dev", kb=tmp_path / "kb",
                                                options={option: "ture"}))
        else:
            get_trainer("metaqa").run(TrainRequest(data=fixtures_dir / "metaqa", out=tmp_path / "model",
                                                   options={option: "ture", "kb": str(tmp_path / "kb")}))
    assert not (tmp_path / "kb").exists() and not (tmp_path / "model").exists()
    assert [flag(v, option) for v in ("Yes", " off ", "1", "", True, 0)] == [True, False, True, False, True, False]
