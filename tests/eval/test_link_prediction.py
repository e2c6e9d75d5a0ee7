"""Countries / link-prediction benchmarks through the runner, and their bad-input errors."""

from __future__ import annotations

import json
import shutil

import pytest

from kgllm.eval.kgdata import KGDataset, read_split
from kgllm.eval.link_prediction import DEFAULT_RULE_WEIGHT
from kgllm.eval.registry import EvalRequest, TrainRequest, get_trainer
from kgllm.eval.runner import run_eval
from kgllm.exceptions import BenchmarkError, ConfigError, LoadError, ModelError
from kgllm.reasoning.rules import RuleSet


@pytest.fixture()
def countries(fixtures_dir, tmp_path):
    dest = tmp_path / "countries_S1"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", dest)
    return dest


def test_countries_s1_auc_pr_envelope_and_out_json(countries, tmp_path):
    out = tmp_path / "res.json"
    report = run_eval("countries-s1", EvalRequest(data=countries, split="dev"), out=out)
    assert report["benchmark"] == "countries-s1" and report["split"] == "dev" and report["n"] == 24
    assert report["metrics"]["auc_pr"] == pytest.approx(1.0)
    assert set(report["latency_ms"]) >= {"p50", "p95"}
    for key in ("config", "kgllm_version", "seconds"):
        assert key in report
    written = json.loads(out.read_text())
    assert written["metrics"] == report["metrics"] and "predictions" not in written
    first = report["predictions"][0]  # explained by a rule and a path of stored edges
    assert first["explanation"].startswith("locatedin(X,Y) <- ")
    assert first["explanation"].split(" via ")[1].endswith(f"]-> {first['predicted']}")


def test_trained_rules_are_reused_with_model(countries, tmp_path):
    info = get_trainer("rules").run(TrainRequest(data=countries, out=tmp_path / "rules"))
    assert info["rules"] > 0 and (tmp_path / "rules" / "manifest.json").is_file()
    report = run_eval("countries-s1", EvalRequest(data=countries, split="dev", model=tmp_path / "rules"))
    assert report["metrics"]["auc_pr"] == pytest.approx(1.0)
    assert report["config"]["mine_seconds"] == 0.0  # nothing mined: the saved rules were used


def test_rules_from_another_graph_are_refused(countries, tmp_path, fixtures_dir):
    nations = tmp_path / "nations"
    nations.mkdir()
    shutil.copy(fixtures_dir / "eval" / "nations_train_head.txt", nations / "train.txt")
    get_trainer("rules").run(TrainRequest(data=nations, out=tmp_path / "nrules"))
    with pytest.raises(ModelError, match="absent from"):
        run_eval("countries-s1", EvalRequest(data=countries, split="dev", model=tmp_path / "nrules"))


def test_limit_larger_than_the_data_uses_everything(countries):
    report = run_eval("countries-s1", EvalRequest(data=countries, split="dev", limit=10_000))
    assert report["n"] == 24
    assert "exceeds" in report["warnings"][0]
    assert run_eval("countries-s1", EvalRequest(data=countries, split="dev", limit=5))["n"] == 5


def test_missing_files_list_what_is_expected(countries, tmp_path):
    with pytest.raises(BenchmarkError, match=r"lacks test\.txt; expected files: train\.txt, test\.txt, regions\.list"):
        run_eval("countries-s1", EvalRequest(data=countries, split="test"))
    (countries / "regions.list").unlink()
    with pytest.raises(BenchmarkError, match="regions.list"):
        run_eval("countries-s1", EvalRequest(data=countries, split="dev"))
    with pytest.raises(BenchmarkError, match="data folder not found"):
        run_eval("umls", EvalRequest(data=tmp_path / "nowhere", split="dev"))


def test_unknown_benchmark_lists_known_ones(countries):
    with pytest.raises(BenchmarkError, match=r"unknown benchmark 'countries-s9'; known benchmarks: .*countries-s1"):
        run_eval("countries-s9", EvalRequest(data=countries))


def test_malformed_line_names_file_and_line(countries):
    lines = (countries / "valid.txt").read_text().splitlines()
    lines[3] = "brazil locatedin americas"  # spaces, not tabs
    (countries / "valid.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(LoadError) as err:
        run_eval("countries-s1", EvalRequest(data=countries, split="dev"))
    assert err.value.line == 4 and err.value.path.endswith("valid.txt")
    assert "line 4" in str(err.value) and "brazil locatedin americas" in str(err.value)
    with pytest.raises(LoadError, match="expected 3 tab-separated fields"):
        read_split(countries / "valid.txt")


def test_link_prediction_reports_rules_kge_and_combined(fixtures_dir, tmp_path):
    data = tmp_path / "nations"
    data.mkdir()
    lines = (fixtures_dir / "eval" / "nations_train_head.txt").read_text().splitlines()
    (data / "train.txt").write_text("\n".join(lines[:360]) + "\n")
    (data / "valid.txt").write_text("\n".join(lines[360:]) + "\n")
    known = set(KGDataset.load(data, name="n").entities)
    request = EvalRequest(data=data, split="dev", options={"epochs": 30, "dim": 16, "n3": 5e-3, "max_length": 2,
                                                               "rule_weight": 1.0})
    report = run_eval("nations", request)
    # on 360 training triples a tiny embedding (light N3) is weak, so the rules get full weight here
    assert report["config"]["rule_weight"] == 1.0
    assert report["n"] == 40 and report["primary_metric"] == "mrr"
    assert set(report["by_method"]) == {"rules", "kge", "combined"}
    for values in report["by_method"].values():
        assert 0.0 < values["mrr"] <= 1.0 and values["hits@1"] <= values["hits@3"] <= values["hits@10"]
    # 14 candidate nations: a random ranking would give MRR around 0.25
    assert report["metrics"]["mrr"] > 0.35
    assert report["predictions"][0]["predicted"] in known and report["per_type"]
    # each prediction says which rule derives it, through a path from the question's entity to the answer
    explained = [p for p in report["predictions"] if p["explanation"]]
    assert len(explained) > len(report["predictions"]) / 2
    for p in explained:
        assert type(p["correct"]) is bool  # a numpy bool would be written to JSON as a string
        entity = p["question"].split("(", 1)[1].rsplit(", ?)", 1)[0]
        rule, path = p["explanation"].split(" via ")
        assert rule.startswith(f"{p['type']}(") and " <- " in rule and "[conf " in rule
        assert path.startswith(f"{entity} -[")
        head = rule.split(" <- ")[0]  # a rule with a constant names the answer in its head instead
        assert path.endswith(f"]-> {p['predicted']}") or p["predicted"] in head.split("(")[1]


def test_test_split_true_triples_are_filtered_when_scoring_dev(fixtures_dir, tmp_path):
    """Scoring valid.txt filters test.txt's true triples too (the standard protocol); without test.txt
    the report says its filter is incomplete, and the same models rank no answer better."""
    lines = (fixtures_dir / "eval" / "nations_train_head.txt").read_text().splitlines()
    train, valid = lines[:300], lines[360:]
    # test triples over the same vocabulary, so both runs index (and train) identically
    vocab = {x for line in train + valid for x in line.split("\t")}
    test = [line for line in lines[300:360] if set(line.split("\t")) <= vocab]
    assert len(test) > 30
    folders = {}
    for with_test in (False, True):
        data = tmp_path / f"nations_{with_test}"
        data.mkdir()
        (data / "train.txt").write_text("\n".join(train) + "\n")
        (data / "valid.txt").write_text("\n".join(valid) + "\n")
        if with_test:
            (data / "test.txt").write_text("\n".join(test) + "\n")
        folders[with_test] = data
    options = {"epochs": 20, "dim": 16, "max_length": 2}
    reports = {w: run_eval("nations", EvalRequest(data=d, split="dev", options=options)) for w, d in folders.items()}
    incomplete, complete = reports[False]["config"], reports[True]["config"]
    assert incomplete["filter_complete"] is False and "test.txt" in incomplete["filter_warning"]
    assert complete["filter_complete"] is True and "filter_warning" not in complete
    assert complete["filtered_with"] == ["train.txt", "valid.txt", "test.txt"]
    assert complete["rule_weight"] == DEFAULT_RULE_WEIGHT
    # same training data and seed: identical scores, so filtering more can only lower ranks
    before = [p["rank"] for p in reports[False]["predictions"]]
    after = [p["rank"] for p in reports[True]["predictions"]]
    assert len(before) == len(after) == 2 * reports[True]["n"]
    assert all(a <= b for a, b in zip(after, before, strict=True))
    assert sum(after) < sum(before)
    # without test.txt, valid.txt's other answers above the gold one stand in for the missing answers
    # (the estimate's accuracy is checked on a simulated split below)
    assert "estimated_complete_filter" not in complete
    assert reports[False]["metrics"]["mrr"] < incomplete["estimated_complete_filter"]["combined"]["mrr"]


def _nations_folder(fixtures_dir, tmp_path, *, test: bool):  # type: ignore[no-untyped-def]
    """The Nations fixture as train (300) / valid (40) [/ test: the 60 between, same vocabulary]."""
    lines = (fixtures_dir / "eval" / "nations_train_head.txt").read_text().splitlines()
    data = tmp_path / f"nations_{test}"
    data.mkdir()
    (data / "train.txt").write_text("\n".join(lines[:300]) + "\n")
    (data / "valid.txt").write_text("\n".join(lines[360:]) + "\n")
    if test:
        vocab = {x for line in lines[:300] + lines[360:] for x in line.split("\t")}
        (data / "test.txt").write_text("\n".join(x for x in lines[300:360] if set(x.split("\t")) <= vocab) + "\n")
    return data


def test_split_test_trains_on_train_and_valid_and_ranks_test(fixtures_dir, tmp_path):
    data = _nations_folder(fixtures_dir, tmp_path, test=True)
    n_test = len(read_split(data / "test.txt"))
    report = run_eval("nations", EvalRequest(data=data, split="test", options={"epochs": 5, "dim": 8, "max_length": 1}))
    assert report["split"] == "test" and report["n"] == n_test
    config = report["config"]
    assert config["trained_on"] == ["train", "dev"] and config["filter_complete"] is True
    assert config["filtered_with"] == ["train.txt", "valid.txt", "test.txt"]
    assert "by_method_without_test_filter" not in config  # the test split is what is ranked


def test_simulated_split_carves_train_and_measures_the_missing_filter(fixtures_dir, tmp_path):
    data = _nations_folder(fixtures_dir, tmp_path, test=False)
    full = KGDataset.load(data, name="n")
    sim = full.simulated(seed=3)
    parts = [sim.splits[s] for s in ("train", "dev", "test")]
    assert sorted(t for p in parts for t in p) == sorted(full.splits["train"])  # a partition of train.txt
    assert len(parts[1]) == len(parts[2]) == round(300 * 40 / (300 + 2 * 40))
    assert sim.splits["known"] == full.splits["dev"] and sim.entities == full.entities
    assert full.simulated(seed=3).splits == sim.splits and full.simulated(seed=4).splits != sim.splits
    report = run_eval("nations", EvalRequest(data=data, split="dev", options={
        "simulate_split": True, "split_seed": 3, "epochs": 10, "dim": 16, "max_length": 2}))
    config = report["config"]
    assert report["n"] == len(parts[1]) and config["trained_on"] == ["train'"]
    assert config["simulated_split"]["test'"] == len(parts[2]) and config["simulated_split"]["valid.txt"] == 40
    assert config["filter_complete"] is False and "test.txt" in config["filter_warning"]
    # the same models ranked with less filtered: never better, and worse here
    without = config["by_method_without_test_filter"]
    for method, values in report["by_method"].items():
        assert without[method]["mrr"] <= values["mrr"]
    assert without["combined"]["mrr"] < report["by_method"]["combined"]["mrr"]
    # the swap estimate from the without-test' ranking, checked against the with-test' numbers
    from_without = config["estimated_from_without_test_filter"]["combined"]["mrr"]
    assert without["combined"]["mrr"] < from_without
    assert abs(from_without - report["metrics"]["mrr"]) < report["metrics"]["mrr"] - without["combined"]["mrr"]
    assert config["estimated_complete_filter"]["combined"]["mrr"] >= report["metrics"]["mrr"]
    # learn_valid: the models also learn from valid.txt, as --split test learns from train + valid
    more = run_eval("nations", EvalRequest(data=data, split="dev", options={
        "simulate_split": True, "split_seed": 3, "epochs": 10, "dim": 16, "max_length": 2, "learn_valid": True}))
    assert more["config"]["trained_on"] == ["train'", "valid.txt"] and more["n"] == report["n"]
    assert more["config"]["rules"] != config["rules"]  # mined from more triples


@pytest.mark.parametrize(("key", "value", "message"), [
    ("dim", "abc", "dim must be a whole number at least 1, got 'abc'"),  # was torch's TypeError
    ("rule_weight", "x", "rule_weight must be at least 0, got 'x'"),  # was float()'s ValueError
    ("max_length", "abc", "max_length must be a whole number at least 1 and at most 3, got 'abc'"),
    ("min_confidence", 2, "min_confidence must be at least 0 and at most 1, got 2"),
    ("lr", 0, "lr must be above 0, got 0"),
])
def test_bad_numeric_options_fail_before_any_work(fixtures_dir, tmp_path, countries, key, value, message):
    folder = _nations_folder(fixtures_dir, tmp_path, test=False)
    with pytest.raises(ConfigError, match=f"^{message}$"):
        run_eval("nations", EvalRequest(data=folder, split="dev", options={key: value}))
    countries_error = message if key in ("max_length", "min_confidence") else \
        f"unknown option '{key}' for 'kgllm eval countries-s1'"  # Countries has no ComplEx: refused, not ignored
    with pytest.raises(ConfigError, match=f"^{countries_error}"):
        run_eval("countries-s1", EvalRequest(data=countries, split="dev", options={key: value}))


@pytest.mark.parametrize("value", ["False", "no", "0", False])
def test_constants_off_as_text_mines_no_constant_rules(countries, tmp_path, value):
    # -o constants=False reaches the trainer as the string "False" (not JSON), which is true: constants were mined
    get_trainer("rules").run(TrainRequest(data=countries, out=tmp_path / "rules", options={"constants": value}))
    rules = RuleSet.load(tmp_path / "rules")
    assert len(rules) and all(rule.kind == "path" for rule in rules.rules)
    assert rules.params["constants"] is False


def test_split_test_without_valid_is_named_not_a_key_error(fixtures_dir, tmp_path, countries):
    # --split test learns from train + valid: link prediction crashed with KeyError: 'dev', and Countries
    # learned from train.txt alone while its config said trained_on ["train", "dev"]
    data = _nations_folder(fixtures_dir, tmp_path, test=True)
    (data / "valid.txt").unlink()
    (countries / "valid.txt").rename(countries / "test.txt")
    expected = r"missing valid\.txt; expected files: test\.txt, train\.txt, valid\.txt"
    with pytest.raises(BenchmarkError, match=rf"^nations: .*nations_True: {expected}$"):
        run_eval("nations", EvalRequest(data=data, split="test", options={"epochs": 1, "dim": 4}))
    with pytest.raises(BenchmarkError, match=rf"^countries-s1: .*countries_S1: {expected}$"):
        run_eval("countries-s1", EvalRequest(data=countries, split="test"))


def test_attaching_with_min_confidence_zero_fails_before_mining(countries, tmp_path):
    # mining accepts 0, kb.use_rules does not: the rules were mined and written, then a ModelError
    with pytest.raises(ConfigError, match=r"^min_confidence must be above 0 when attaching rules to a KB, got 0\.0$"):
        get_trainer("rules").run(TrainRequest(data=countries, out=tmp_path / "rules", options={
            "kb": str(tmp_path / "kb"), "domain": "geography", "min_confidence": 0}))
    assert not (tmp_path / "rules").exists() and not (tmp_path / "kb").exists()


def test_train_rules_refuses_an_unknown_split(countries, tmp_path):
    # --split tset learned from train.txt alone, as the default does, without a word
    with pytest.raises(BenchmarkError, match=r"^unknown split 'tset' for 'kgllm train rules'; known splits: train, "):
        get_trainer("rules").run(TrainRequest(data=countries, out=tmp_path / "rules", split="tset"))
    assert not (tmp_path / "rules").exists()


def test_an_empty_split_is_named_before_any_training(fixtures_dir, tmp_path, monkeypatch):
    import kgllm.reasoning.kge as kge

    def never(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("ComplEx trained for a split without questions")

    monkeypatch.setattr(kge, "train_complex", never)
    data = _nations_folder(fixtures_dir, tmp_path, test=False)
    (data / "valid.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"^nations: no questions in the 'dev' split of .*nations_False$"):
        run_eval("nations", EvalRequest(data=data, split="dev"))


def test_countries_hits_at_1_counts_tied_regions_half(tmp_path):
    # a country no rule reaches scores every region alike; argmax took the first of regions.list, so a
    # country of that region was counted right
    data = tmp_path / "countries_S1"
    data.mkdir()
    (data / "regions.list").write_text("africa\neurope\n")
    (data / "train.txt").write_text("a\tlocatedin\teurope\nb\tlocatedin\tafrica\na\tneighbor\tb\n")
    (data / "valid.txt").write_text("lonely\tlocatedin\tafrica\n")
    report = run_eval("countries-s1", EvalRequest(data=data, split="dev"))
    (prediction,) = report["predictions"]
    assert prediction["predicted"] == "africa" and prediction["rank"] == 1.5 and prediction["correct"] is False
    assert report["metrics"]["hits@1"] == 0.0
