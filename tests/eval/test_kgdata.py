"""Benchmark folders of triples: empty files are named, not a crash deep inside rule mining."""

from __future__ import annotations

import shutil

import pytest

from kgllm.eval.kgdata import KGDataset
from kgllm.eval.registry import EvalRequest, TrainRequest, get_trainer
from kgllm.eval.runner import run_eval
from kgllm.exceptions import BenchmarkError


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
