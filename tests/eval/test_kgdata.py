"""Benchmark folders of triples: empty files are named, not a crash deep inside rule mining."""

from __future__ import annotations

import shutil

import pytest

from kgllm.eval.kgdata import KGDataset, read_split
from kgllm.eval.registry import EvalRequest, TrainRequest, get_trainer
from kgllm.eval.runner import run_eval
from kgllm.exceptions import BenchmarkError, LoadError


def test_an_empty_train_file_is_named(fixtures_dir, tmp_path):
    # umls/kinships/nations failed with "ValueError: need at least one array to concatenate", and Countries
    # said its regions were "not in the graph"
    data = tmp_path / "kg"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", data)
    (data / "train.txt").write_text("\n", encoding="utf-8")
    expected = r"kg/train\.txt holds no triples; expected head<TAB>relation<TAB>tail lines"
    for name in ("umls", "countries-s1"):
        with pytest.raises(BenchmarkError, match=f"{name}: .*{expected}"):
            run_eval(name, EvalRequest(data=data, split="dev"))
    with pytest.raises(BenchmarkError, match=expected):
        get_trainer("rules").run(TrainRequest(data=data, out=tmp_path / "rules"))
    assert not (tmp_path / "rules").exists()
    assert KGDataset.load(data, name="kg", need=("dev",)).splits["train"] == []  # read when not needed


def test_a_file_given_for_the_folder_is_named(fixtures_dir, tmp_path):
    # it said "... train.txt lacks train.txt, valid.txt" and, for 'train rules', "folder not found"
    train = fixtures_dir / "eval" / "countries_S1" / "train.txt"
    with pytest.raises(BenchmarkError, match=r"umls: --data must be the benchmark's folder, got the file .*train\.txt; "
                                             r"expected files in the folder: train\.txt, valid\.txt"):
        run_eval("umls", EvalRequest(data=train, split="dev"))
    with pytest.raises(BenchmarkError, match=r"train\.txt: not a folder; expected files: train\.txt"):
        get_trainer("rules").run(TrainRequest(data=train, out=tmp_path / "rules"))


def test_a_line_that_is_not_utf8_is_a_load_error_naming_file_and_line(fixtures_dir, tmp_path):
    # read_split opened the file as text: a bad byte was a UnicodeDecodeError naming neither file nor line
    data = tmp_path / "kg"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", data)
    with open(data / "valid.txt", "ab") as fh:
        fh.write(b"caf\xe9\tlocatedin\teurope\n")
    lines = len((data / "valid.txt").read_bytes().splitlines())
    with pytest.raises(LoadError, match=rf"kg/valid\.txt line {lines}: not valid utf-8 text .*'caf\ufffd\\tlocatedin"):
        KGDataset.load(data, name="kg", need=("train", "dev"))
    (data / "valid.txt").write_bytes((fixtures_dir / "eval" / "countries_S1" / "valid.txt").read_bytes())
    (data / "regions.list").write_bytes((data / "regions.list").read_bytes() + b"\xff\n")
    with pytest.raises(LoadError, match=r"kg/regions\.list line \d+: not valid utf-8"):
        run_eval("countries-s1", EvalRequest(data=data, split="dev"))


def test_too_few_triples_to_simulate_a_split_is_named(tmp_path):
    # valid' came out empty and the scale of the estimate divided by its size: ZeroDivisionError
    data = tmp_path / "kg"
    data.mkdir()
    (data / "train.txt").write_text("a\tr\tb\nb\tr\tc\nc\tr\ta\n", encoding="utf-8")
    (data / "valid.txt").write_text("", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"nations: too few triples to simulate a split \(3 in train\.txt, 0 in "
                                             r"valid\.txt\): valid' and test' would be empty"):
        run_eval("nations", EvalRequest(data=data, split="dev", options={"simulate_split": True, "dim": 4,
                                                                           "epochs": 1}))


def test_a_byte_order_mark_is_not_part_of_the_first_entity(tmp_path):
    # a file saved by a Windows editor starts with U+FEFF: the first head became the entity "\ufeffa"
    path = tmp_path / "train.txt"
    path.write_bytes("\ufeffa\tr\tb\r\nb\tr\tc\r\n".encode())
    assert read_split(path) == [("a", "r", "b"), ("b", "r", "c")]
