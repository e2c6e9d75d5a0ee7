"""``kgllm eval`` / ``kgllm train`` refuse ``-o`` keys (and ``--epochs``, ``--lr``, ``--seed``, ``--no-graph``) that
the benchmark or trainer does not take: a typo was silently ignored and the defaults were measured."""

from __future__ import annotations

import json
import shutil

from kgllm.cli import main


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_option_typo_is_a_one_line_error_with_a_suggestion(capsys, fixtures_dir, tmp_path):
    code, out, err = run(capsys, "eval", "metaqa-1hop", "--data", fixtures_dir / "metaqa", "-o", "held_outt=true",
                         "--out", tmp_path / "r.json")
    assert (code, out) == (1, "")
    assert err == ("ConfigError: unknown option 'held_outt' (did you mean 'held_out'?) for 'kgllm eval metaqa-1hop'; "
                   "accepted options: batch_size, held_out\n")
    assert not (tmp_path / "r.json").exists()


def test_train_option_typo_is_a_one_line_error_with_a_suggestion(capsys, fixtures_dir, tmp_path):
    code, out, err = run(capsys, "--json", "train", "rules", "--data", fixtures_dir / "eval" / "countries_S1",
                         "--out", tmp_path / "rules", "-o", "min_confidance=0.5")
    assert (code, out) == (1, "") and len(err.splitlines()) == 1
    assert err.startswith("ConfigError: unknown option 'min_confidance' (did you mean 'min_confidence'?) for "
                          "'kgllm train rules'; accepted options: beam, constants, domain, kb, max_bodies, ")
    assert not (tmp_path / "rules").exists()


def test_train_flags_the_trainer_does_not_take_are_errors(capsys, fixtures_dir, tmp_path):
    routing = tmp_path / "routing.jsonl"
    routing.write_text(json.dumps({"question": "Who directed [Heat]?", "domain": "movies"}) + "\n", encoding="utf-8")
    cases = [(("router", "--data", routing, "--epochs", 3), "'kgllm train router' takes no --epochs; "
                                                            "accepted options: c, graphs, kb, seed"),
             (("router", "--data", routing, "--lr", 0.1), "'kgllm train router' takes no --lr; "),
             (("rules", "--data", fixtures_dir / "eval" / "countries_S1", "--seed", 1),
              "'kgllm train rules' takes no --seed; "),
             (("metaqa", "--data", fixtures_dir / "metaqa", "--no-graph"), "'kgllm train metaqa' takes no --no-graph; ")]
    for args, message in cases:
        code, out, err = run(capsys, "train", *args, "--out", tmp_path / "model")
        assert (code, out) == (1, "") and err.startswith(f"ConfigError: {message}"), err
        assert len(err.splitlines()) == 1 and not (tmp_path / "model").exists()


def test_eval_all_refuses_a_key_no_benchmark_accepts(capsys, fixtures_dir, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", root / "countries" / "countries_S1")
    code, out, err = run(capsys, "eval", "all", "--data-root", root, "-o", "max_lenght=1", "--report", tmp_path / "r")
    assert (code, out) == (1, "") and len(err.splitlines()) == 1
    assert err.startswith("ConfigError: unknown option 'max_lenght' (did you mean 'max_length'?) for 'kgllm eval all' "
                          "(no chosen benchmark accepts it); accepted options: ")
    assert not (tmp_path / "r").exists()
    # a key some benchmark accepts (ComplEx's dim) runs; Countries, which has no ComplEx, does not get it
    code, out, err = run(capsys, "--json", "eval", "all", "--data-root", root, "-o", "dim=8", "-o", "max_length=1")
    assert code == 0, err
    ran = [r for r in json.loads(out) if "metrics" in r]
    assert [r["benchmark"] for r in ran] == ["countries-s1"]
