"""Unknown ``-o`` keys are refused: a typo (``-o held_outt=true``) had no effect and no warning, so the numbers
measured silently came from the defaults."""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import pytest

from kgllm.eval import link_prediction, metaqa
from kgllm.eval.kgdata import KGDataset
from kgllm.eval.registry import EvalRequest, TrainRequest, benchmarks, get_benchmark, get_trainer, trainers
from kgllm.eval.runner import run_all, run_eval
from kgllm.exceptions import ConfigError


def _no_work(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise AssertionError("work started before the options were checked")


@pytest.fixture()
def countries_dir(fixtures_dir, tmp_path):
    dest = tmp_path / "countries_S1"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", dest)
    return dest


@pytest.fixture()
def data_root(fixtures_dir, tmp_path):
    """Countries S1 and a small Nations under their ``kgllm eval all`` folders."""
    root = tmp_path / "data"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", root / "countries" / "countries_S1")
    lines = (fixtures_dir / "eval" / "nations_train_head.txt").read_text().splitlines()
    (root / "nations").mkdir(parents=True)
    (root / "nations" / "train.txt").write_text("\n".join(lines[:300]) + "\n")
    (root / "nations" / "valid.txt").write_text("\n".join(lines[360:]) + "\n")
    return root


def test_every_benchmark_and_trainer_declares_its_options():
    assert all(spec.options is not None for spec in benchmarks().values())
    assert all(spec.options is not None for spec in trainers().values())


def test_eval_typo_is_refused_with_a_suggestion_before_the_kb_is_built(fixtures_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(metaqa, "metaqa_kb", _no_work)
    monkeypatch.setattr(metaqa, "read_questions", _no_work)
    request = EvalRequest(data=fixtures_dir / "metaqa", split="dev", kb=tmp_path / "kb", options={"held_outt": True})
    message = ("unknown option 'held_outt' (did you mean 'held_out'?) for 'kgllm eval metaqa-1hop'; "
               "accepted options: batch_size, held_out")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        run_eval("metaqa-1hop", request, out=tmp_path / "out.json")
    with pytest.raises(ConfigError, match="did you mean 'held_out'"):  # the benchmark itself, not only the runner
        get_benchmark("metaqa-1hop").run(request)
    assert not (tmp_path / "kb").exists() and not (tmp_path / "out.json").exists()


def test_train_typo_is_refused_with_a_suggestion_before_the_data_is_read(countries_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(KGDataset, "load", _no_work)
    with pytest.raises(ConfigError, match=r"^unknown option 'min_confidance' \(did you mean 'min_confidence'\?\) "
                                          r"for 'kgllm train rules'; accepted options: beam, constants, domain, kb, "):
        get_trainer("rules").run(TrainRequest(data=countries_dir, out=tmp_path / "rules",
                                              options={"min_confidance": 0.5}))
    with pytest.raises(ConfigError, match=r"'epoch' \(did you mean 'epochs'\?\) for 'kgllm train metaqa'"):
        get_trainer("metaqa").run(TrainRequest(data=countries_dir, out=tmp_path / "m", options={"epoch": 3}))
    assert not (tmp_path / "rules").exists() and not (tmp_path / "m").exists()


def test_several_unknown_keys_are_named_together():
    with pytest.raises(ConfigError, match=r"^unknown options 'max_hop' \(did you mean 'max_hops'\?\), 'zzz' for "
                                          r"'kgllm eval webqsp'; accepted options: embedder, max_hops$"):
        get_benchmark("webqsp").run(EvalRequest(data=Path("/nonexistent"), options={"max_hop": 2, "zzz": 1}))


def test_a_key_the_benchmark_does_not_use_is_refused(countries_dir, tmp_path):
    # Countries ranks regions with rules alone: -o dim=8 (ComplEx) had no effect on it
    with pytest.raises(ConfigError, match=r"^unknown option 'dim' for 'kgllm eval countries-s1'; accepted options: "):
        run_eval("countries-s1", EvalRequest(data=countries_dir, split="dev", options={"dim": 8}))


def test_eval_all_passes_a_key_only_to_the_benchmarks_that_accept_it(data_root, tmp_path):
    reports = run_all(data_root, names=["countries-s1", "nations"], out=tmp_path / "all.json",
                      options={"dim": 8, "epochs": 2, "max_length": 1})
    by_name = {r["benchmark"]: r for r in reports}
    assert set(by_name) == {"countries-s1", "nations"}
    assert all("metrics" in r for r in reports), reports  # countries-s1 refuses dim: it did not get it
    assert by_name["nations"]["config"]["kge"]["dim"] == 8 and by_name["nations"]["config"]["kge"]["epochs"] == 2
    assert (tmp_path / "all.json").is_file()


def test_eval_all_refuses_a_key_no_chosen_benchmark_accepts(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(KGDataset, "load", _no_work)
    with pytest.raises(ConfigError, match=r"^unknown option 'dimm' \(did you mean 'dim'\?\) for 'kgllm eval all' "
                                          r"\(no chosen benchmark accepts it\); accepted options: .*\bdim\b"):
        run_all(data_root, names=["countries-s1", "nations"], options={"dimm": 8}, out=tmp_path / "all.json")
    # accepted by a benchmark that was not chosen is still unknown to those that were
    with pytest.raises(ConfigError, match=r"^unknown option 'dim' for 'kgllm eval all'"):
        run_all(data_root, names=["countries-s1"], options={"dim": 8})
    with pytest.raises(ConfigError, match=r"^unknown option 'held_outt' \(did you mean 'held_out'\?\)"):
        run_all(data_root, options={"held_outt": True})  # every benchmark: metaqa's held_out is close
    assert not (tmp_path / "all.json").exists()


def test_declared_keys_follow_rule_mining_and_complex():
    # a parameter added to mine_rules or KGEConfig must be declared, or -o would refuse it
    from kgllm.reasoning.kge import KGEConfig
    from kgllm.reasoning.rule_mining import mine_rules

    mining = set(inspect.signature(mine_rules).parameters) - {"snapshot", "progress"}
    assert mining == set(link_prediction._MINE_OPTIONS)
    assert set(KGEConfig.__dataclass_fields__) == set(link_prediction._KGE_OPTIONS)
    assert set(link_prediction._NUMBERS) <= link_prediction.LINK_PREDICTION_OPTIONS
    assert link_prediction.COUNTRIES_OPTIONS < link_prediction.LINK_PREDICTION_OPTIONS
    assert set(metaqa._TRAIN_NUMBERS) <= metaqa.TRAIN_OPTIONS


def test_soft_prompt_keys_follow_its_config():
    from kgllm.eval import soft_prompt
    from kgllm.fusion.soft_prompt import SoftPromptConfig

    assert set(soft_prompt._NUMBERS) <= set(SoftPromptConfig.__dataclass_fields__)
    assert set(soft_prompt._NUMBERS) <= soft_prompt.OPTIONS


def test_multiple_choice_keys_follow_its_configs():
    from kgllm.eval import multiple_choice as mc
    from kgllm.fusion.training import TrainConfig

    assert set(mc._CONFIG_OPTIONS) <= set(TrainConfig.__dataclass_fields__)
    assert set(mc._NUMBERS) <= mc.TRAIN_OPTIONS == get_trainer("csqa").options == get_trainer("obqa").options
    assert mc.TRAIN_OPTIONS <= mc.EVAL_OPTIONS == get_benchmark("csqa").options  # one option set serves both


def test_multiple_choice_eval_takes_the_trainers_keys_with_a_warning(fixtures_dir, tmp_path):
    # bench/mc_accuracy.py passes one option set (cache_dir, graph, ...) to the trainer and the benchmark
    data, cache, model = fixtures_dir / "mcqa" / "commonsenseqa", tmp_path / "cache", tmp_path / "model"
    graph = fixtures_dir / "mcqa" / "conceptnet_100k" / "train.txt"
    options = {"cache_dir": str(cache), "graph": str(graph), "max_nodes": 64}
    get_trainer("csqa").run(TrainRequest(data=data, out=model, options={
        **options, "epochs": 1, "hidden": 16, "heads": 2, "threads": 1}))
    report = run_eval("csqa", EvalRequest(data=data, split="dev", model=model, options={**options, "threads": 1}))
    assert report["n"] > 0
    assert report["warnings"] == ["-o graph, max_nodes: no effect on 'kgllm eval csqa' (training options; the model "
                                  "directory fixes them)"]
    assert "warnings" not in run_eval("csqa", EvalRequest(data=data, split="dev", model=model,
                                                          options={"cache_dir": str(cache)}))
    with pytest.raises(ConfigError, match=r"^unknown option 'cache_dri' \(did you mean 'cache_dir'\?\) for "
                                          r"'kgllm eval csqa'"):
        run_eval("csqa", EvalRequest(data=data, split="dev", model=model, options={"cache_dri": str(cache)}))
