"""End to end on the small subsets: `kgllm train/eval csqa|obqa` through the registry, and answer_choices."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kgllm.eval.registry import EvalRequest, TrainRequest, get_benchmark, get_trainer
from kgllm.exceptions import BenchmarkError, ConfigError, LoadError, ModelError
from kgllm.fusion.choices import UNGROUNDED, ChoiceAnswerer, answer_choices

QUESTION = "Where would you find a revolving door that protects money?"
CHOICES = ["bank", "library", "department store", "mall", "new york"]


@pytest.fixture(scope="module")
def cache(mc_cache: Path) -> Path:
    return mc_cache


@pytest.fixture(scope="module")
def csqa_model(mcqa_dir: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("csqa-model")
    result = get_trainer("csqa").run(TrainRequest(
        data=mcqa_dir / "commonsenseqa", out=out,
        options={"epochs": 3, "hidden": 32, "heads": 2, "cache_dir": str(cache), "seed": 0, "dev_fraction": 0.25}))
    assert result["use_graph"] and result["n"] == 36 and len(result["history"]) == 3
    return out


def test_trained_model_dir_has_manifest(csqa_model: Path) -> None:
    manifest = json.loads((csqa_model / "manifest.json").read_text())
    assert manifest["benchmark"] == "csqa" and manifest["n_heldout"] == 12
    graph_lines = (csqa_model / "graph.tsv").read_text().splitlines()
    assert len(graph_lines) == 1500
    vectors = np.load(csqa_model / "node_vectors.npy")
    assert vectors.shape[1] == manifest["encoder_dim"] and vectors.shape[0] > 1000
    assert manifest["config"]["use_graph"] is True and manifest["config"]["epochs"] == 3
    assert all("dev_accuracy" in h for h in manifest["history"])


def test_eval_reports_accuracy(csqa_model: Path, mcqa_dir: Path, cache: Path) -> None:
    result = get_benchmark("csqa").run(EvalRequest(data=mcqa_dir / "commonsenseqa", split="dev", model=csqa_model,
                                                   options={"cache_dir": str(cache)}))
    assert result["n"] == 16 and 0.0 <= result["metrics"]["accuracy"] <= 1.0
    correct = sum(p["predicted"] == p["gold"] for p in result["predictions"])
    assert result["metrics"]["accuracy"] == pytest.approx(correct / 16)
    assert result["config"]["use_graph"] is True


def test_eval_bad_requests(csqa_model: Path, mcqa_dir: Path) -> None:
    with pytest.raises(BenchmarkError, match="needs --model"):
        get_benchmark("csqa").run(EvalRequest(data=mcqa_dir / "commonsenseqa"))
    with pytest.raises(BenchmarkError, match="test_inhouse.jsonl not found"):
        get_benchmark("csqa").run(EvalRequest(data=mcqa_dir / "commonsenseqa", split="test", model=csqa_model))
    with pytest.raises(BenchmarkError, match="valid splits: train, dev, test"):
        get_benchmark("csqa").run(EvalRequest(data=mcqa_dir / "commonsenseqa", split="valid", model=csqa_model))
    with pytest.raises(ModelError, match="manifest.json is missing"):
        get_benchmark("csqa").run(EvalRequest(data=mcqa_dir / "commonsenseqa", model=mcqa_dir))


def test_eval_report_has_latency_calibration_and_grounding(csqa_model: Path, mcqa_dir: Path, cache: Path,
                                                          tmp_path: Path) -> None:
    from kgllm.eval.runner import run_eval

    report = run_eval("csqa", EvalRequest(data=mcqa_dir / "commonsenseqa", split="dev", model=csqa_model,
                                          options={"cache_dir": str(cache)}),
                      out=tmp_path / "dev.json", report_dir=tmp_path / "report")
    saved = json.loads((tmp_path / "dev.json").read_text())
    assert saved["latency_ms"]["p50"] > 0 and saved["ungrounded_questions"] >= 0
    assert saved["timing"]["questions_per_second"] > 0
    assert sum(b["count"] for b in saved["calibration"]["bins"]) == 16
    assert all(0 < p["score"] <= 1 and p["correct"] == (p["predicted"] == p["gold"]) for p in report["predictions"])
    assert (tmp_path / "report" / "plots" / "csqa_calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_and_train_refuse_files_they_cannot_score(csqa_model: Path, mcqa_dir: Path, cache: Path,
                                                     tmp_path: Path) -> None:
    data = tmp_path / "commonsenseqa"
    shutil.copytree(mcqa_dir / "commonsenseqa", data)
    lines = (data / "dev.jsonl").read_text().splitlines()
    four = json.loads(lines[1])
    four["id"], four["question"]["choices"] = "four-choices", four["question"]["choices"][:4]
    four["answerKey"] = "A"
    (data / "dev.jsonl").write_text("\n".join([lines[0], json.dumps(four)]) + "\n")
    with pytest.raises(LoadError, match=r"dev\.jsonl: every question needs the same number of choices: the first "
                                        r"has 5, question 'four-choices' has 4"):
        get_benchmark("csqa").run(EvalRequest(data=data, model=csqa_model, options={"cache_dir": str(cache)}))
    (data / "train_inhouse.jsonl").write_text("\n".join([lines[0], json.dumps(four)]) + "\n")
    with pytest.raises(LoadError, match="same number of choices"):
        get_trainer("csqa").run(TrainRequest(data=data, out=tmp_path / "m", options={
            "cache_dir": str(cache), "graph": str(mcqa_dir / "conceptnet_100k" / "train.txt")}))
    (data / "dev.jsonl").write_text("")
    with pytest.raises(LoadError, match=r"dev\.jsonl: no csqa questions"):
        get_benchmark("csqa").run(EvalRequest(data=data, model=csqa_model, options={"cache_dir": str(cache)}))


@pytest.mark.parametrize("fraction", [1, 1.5, -0.1])
def test_train_refuses_a_held_out_share_that_leaves_nothing_to_train(mcqa_dir: Path, cache: Path, tmp_path: Path,
                                                                    fraction: float) -> None:
    with pytest.raises(ConfigError, match=f"dev_fraction must be at least 0 and below 1, got {fraction}"):
        get_trainer("csqa").run(TrainRequest(data=mcqa_dir / "commonsenseqa", out=tmp_path / "m", options={
            "epochs": 1, "dev_fraction": fraction, "cache_dir": str(cache)}))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("batch_size", 0, "batch_size must be a whole number at least 1, got 0"),
    ("epochs", 2.5, "epochs must be a whole number at least 1, got 2.5"),
    ("seed", "x", "seed must be a whole number at least 0 and at most 4294967295, got 'x'"),
    ("lr", "abc", "lr must be above 0, got 'abc'"),
    ("dropout", 1.5, "dropout must be at least 0 and below 1, got 1.5"),
    ("hops", 1, "hops must be a whole number at least 2 and at most 3, got 1"),
    ("max_nodes", 40000, "max_nodes must be a whole number at least 1 and at most 32000, got 40000"),
    ("threads", -2, "threads must be a whole number at least 1, got -2"),
    ("limit", True, "limit must be a whole number at least 1, got True"),
    ("hidden", 15, r"hidden \(15\) must be divisible by heads \(4\)"),
])
def test_train_refuses_bad_numeric_options_before_any_work(mcqa_dir: Path, cache: Path, tmp_path: Path, option: str,
                                                           value: object, message: str) -> None:
    # each used to end in a traceback (ZeroDivisionError, ValueError, RuntimeError) or, for some, train anyway
    with pytest.raises(ConfigError, match=f"^{message}$"):
        get_trainer("csqa").run(TrainRequest(data=mcqa_dir / "commonsenseqa", out=tmp_path / "m", options={
            "epochs": 1, "cache_dir": str(cache), option: value}))
    assert not (tmp_path / "m").exists()


def test_obqa_no_graph_baseline_with_open_book(mcqa_dir: Path, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "obqa"
    result = get_trainer("obqa").run(TrainRequest(data=mcqa_dir / "openbookqa", out=out, options={
        "epochs": 2, "no_graph": True, "cache_dir": str(cache), "hidden": 32}))
    assert result["use_graph"] is False
    assert len((out / "documents.txt").read_text().splitlines()) == 60
    evaluated = get_benchmark("obqa").run(EvalRequest(data=mcqa_dir / "openbookqa", split="dev", model=out,
                                                      options={"cache_dir": str(cache)}))
    assert evaluated["n"] == 12 and evaluated["config"]["use_graph"] is False
    # the facts' embeddings are saved: loading the model encodes no fact again
    saved = np.load(out / "document_vectors.npy")
    assert saved.shape == (60, 384) and saved.dtype == np.float32
    answerer = ChoiceAnswerer(out)
    calls: list[int] = []
    encode = answerer.builder.embedder.encode
    answerer.builder.embedder.encode = lambda texts, **kw: calls.append(len(texts)) or encode(texts, **kw)
    question = json.loads((mcqa_dir / "openbookqa" / "dev.jsonl").read_text().splitlines()[0])["question"]
    choices = [c["text"] for c in question["choices"]]
    answer = answerer.answer_many([(question["stem"], choices)])[0]
    assert answer.answers and calls == [1 + 2 * len(choices)]  # stem, choices, stem + choice: no facts
    np.save(out / "document_vectors.npy", saved[:10])
    with pytest.raises(ModelError, match="do not fit the facts"):
        ChoiceAnswerer(out)


def test_an_empty_saved_vectors_file_is_a_model_error_naming_it(csqa_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(csqa_model, model)
    (model / "node_vectors.npy").write_bytes(b"")  # a copy cut short (a full disk)
    with pytest.raises(ModelError, match=r"node_vectors\.npy: No data left in file"):
        ChoiceAnswerer(model)


def test_answer_choices_ranks_the_choices(csqa_model: Path) -> None:
    answer = answer_choices(None, QUESTION, CHOICES, model_dir=csqa_model)
    assert sorted(a.name for a in answer.answers) == sorted(CHOICES)
    assert answer.text == answer.answers[0].name
    assert sum(a.score for a in answer.answers) == pytest.approx(1.0, abs=1e-5)
    assert [a.score for a in answer.answers] == sorted((a.score for a in answer.answers), reverse=True)
    assert {a.id for a in answer.answers} == set("ABCDE") and not answer.warnings
    assert all(f.domain == "concepts" for f in answer.facts)


def test_ask_many_with_choices_goes_through_the_adapter_in_one_batch(csqa_model: Path, tiny_movies_kb) -> None:  # noqa: ANN001
    questions = [QUESTION, "Where do you keep money safe?", "What place has many shops?"]
    one_by_one = [answer_choices(None, q, CHOICES, model_dir=csqa_model) for q in questions]
    batched = tiny_movies_kb.ask_many(questions, choices=(c for c in CHOICES), adapter=csqa_model)  # a generator too
    assert [[(a.name, round(a.score, 5)) for a in x.answers] for x in batched] == [
        [(a.name, round(a.score, 5)) for a in x.answers] for x in one_by_one]
    assert [x.question for x in batched] == questions


def test_answer_choices_bad_input(csqa_model: Path) -> None:
    with pytest.raises(ConfigError, match="at least 2 choices"):
        answer_choices(None, QUESTION, ["bank"], model_dir=csqa_model)
    with pytest.raises(ConfigError, match="list of at least 2"):
        answer_choices(None, QUESTION, None, model_dir=csqa_model)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty answer choice"):
        answer_choices(None, QUESTION, ["bank", "  "], model_dir=csqa_model)
    with pytest.raises(ConfigError, match="non-empty question"):
        answer_choices(None, " ", CHOICES, model_dir=csqa_model)
    # not answered as the choice "None" (or "1", "2")
    with pytest.raises(ConfigError, match=r"answer choices must be strings, got None in \['bank', None\]"):
        answer_choices(None, QUESTION, ["bank", None], model_dir=csqa_model)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="answer choices must be strings, got 1 in"):
        answer_choices(None, QUESTION, [1, 2])  # type: ignore[list-item]


def test_more_than_26_choices_get_distinct_labels(csqa_model: Path) -> None:
    from kgllm.fusion.choices import choice_label

    assert [choice_label(i) for i in (0, 25, 26, 27, 51, 52, 701, 702)] == \
        ["A", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]
    choices = [f"place {i}" for i in range(30)]
    for answer in (answer_choices(None, QUESTION, choices, model_dir=csqa_model),
                   answer_choices(None, QUESTION, choices)):
        labels = {a.name: a.id for a in answer.answers}
        assert labels["place 0"] == "A" and labels["place 25"] == "Z" and labels["place 29"] == "AD"
        assert len(set(labels.values())) == 30


def test_repeated_choices_get_equal_scores(csqa_model: Path) -> None:
    """CommonsenseQA has questions listing a choice twice; both copies must score the same."""
    answer = answer_choices(None, QUESTION, ["bank", "mall", "bank"], model_dir=csqa_model)
    scores = {a.id: a.score for a in answer.answers}
    assert scores["A"] == pytest.approx(scores["C"], abs=1e-6)


def test_ungrounded_question_falls_back_and_is_flagged(csqa_model: Path) -> None:
    answer = answer_choices(None, "Qwzx vlorp frimble?", ["zzqv", "xxkq plonk"], model_dir=csqa_model)
    assert UNGROUNDED in answer.warnings and len(answer.answers) == 2 and answer.facts == []


def test_a_model_trained_again_into_its_directory_is_reloaded(mcqa_dir: Path, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"

    def train(seed: int, no_graph: bool) -> None:
        get_trainer("csqa").run(TrainRequest(data=mcqa_dir / "commonsenseqa", out=out, options={
            "epochs": 1, "hidden": 16, "heads": 2, "cache_dir": str(cache), "seed": seed, "no_graph": no_graph}))

    def scores(answer) -> dict[str, float]:  # noqa: ANN001
        return {a.name: a.score for a in answer.answers}

    train(0, False)
    first = answer_choices(None, QUESTION, CHOICES, model_dir=out)
    assert scores(answer_choices(None, QUESTION, CHOICES, model_dir=out)) == scores(first)  # loaded once
    train(5, True)
    again = answer_choices(None, QUESTION, CHOICES, model_dir=out)
    assert scores(again) == scores(ChoiceAnswerer(out).answer_many([(QUESTION, CHOICES)])[0])
    assert scores(again) != scores(first)


def test_zero_shot_without_a_model_dir() -> None:
    answer = answer_choices(None, "What do you use to cut paper?", ["scissors", "a spoon"])
    assert answer.text == "scissors" and "no trained adapter" in answer.warnings[0]


def test_model_dir_for_another_encoder_or_graph(csqa_model: Path, tmp_path: Path, embedder) -> None:  # noqa: ANN001
    other = tmp_path / "other-encoder"
    shutil.copytree(csqa_model, other, ignore=shutil.ignore_patterns("cache"))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["encoder"] = "sentence-transformers/all-mpnet-base-v2"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="all-mpnet-base-v2"):
        ChoiceAnswerer(other, embedder=embedder)
    regraph = tmp_path / "other-graph"
    shutil.copytree(csqa_model, regraph, ignore=shutil.ignore_patterns("cache"))
    lines = (regraph / "graph.tsv").read_text().splitlines()
    (regraph / "graph.tsv").write_text("\n".join(lines[:-100]) + "\n")
    with pytest.raises(ModelError, match="graph vocabulary"):
        ChoiceAnswerer(regraph, embedder=embedder)
    vectors = tmp_path / "bad-vectors"
    shutil.copytree(csqa_model, vectors, ignore=shutil.ignore_patterns("cache"))
    np.save(vectors / "node_vectors.npy", np.zeros((3, embedder.dim), dtype=np.float16))
    with pytest.raises(ModelError, match="do not fit the graph"):
        ChoiceAnswerer(vectors, embedder=embedder)


def test_cli_train_and_eval(mcqa_dir: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kgllm.cli import main

    data, model, report = mcqa_dir / "commonsenseqa", tmp_path / "m", tmp_path / "dev.json"
    assert main(["train", "csqa", "--data", str(data), "--out", str(model), "--epochs", "1", "--seed", "2",
                 "--no-graph", "-o", f"cache_dir={cache}"]) == 0
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["seed"] == 2 and manifest["config"]["use_graph"] is False
    assert main(["eval", "csqa", "--data", str(data), "--split", "dev", "--model", str(model), "--out", str(report),
                 "-o", f"cache_dir={cache}"]) == 0
    written = json.loads(report.read_text())
    assert written["benchmark"] == "csqa" and written["n"] == 16 and 0 <= written["metrics"]["accuracy"] <= 1
    capsys.readouterr()
    assert main(["eval", "csqa", "--data", str(data), "--split", "test", "--model", str(model)]) == 1
    assert "BenchmarkError" in capsys.readouterr().err


def test_cli_train_device_option_and_manifest_options(mcqa_dir: Path, cache: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from kgllm.cli import main

    data, model = mcqa_dir / "commonsenseqa", tmp_path / "m"
    base = ["train", "csqa", "--data", str(data), "--out", str(model), "--epochs", "1", "-o", f"cache_dir={cache}"]
    capsys.readouterr()
    assert main([*base, "-o", "device=tpu"]) == 1
    assert capsys.readouterr().err.strip() == "ConfigError: unknown device 'tpu'; use cpu, cuda or cuda:N"
    assert not model.exists()
    assert main([*base, "-o", "device=cpu", "-o", "hidden=16", "-o", "heads=2"]) == 0
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["device"] == "cpu" and manifest["wordnet"] is False
    assert manifest["graph_source"] == str((mcqa_dir / "conceptnet_100k" / "train.txt").resolve())
    assert manifest["options"]["hidden"] == "16" and manifest["options"]["device"] == "cpu"
    assert manifest["config"]["hidden"] == 16


def test_cli_flags_written_in_python_spelling(mcqa_dir: Path, cache: Path, tmp_path: Path) -> None:
    from kgllm.cli import main

    model = tmp_path / "m"
    assert main(["train", "csqa", "--data", str(mcqa_dir / "commonsenseqa"), "--out", str(model), "--epochs", "1",
                 "-o", "interaction=False", "-o", "no_graph=False", "-o", f"cache_dir={cache}"]) == 0
    config = json.loads((model / "manifest.json").read_text())["config"]
    assert config["interaction"] is False and config["use_graph"] is True


def test_cli_ask_with_an_adapter_needs_no_kb(csqa_model: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from kgllm.cli import main

    args = ["--kb", str(tmp_path / "absent"), "--json", "ask", QUESTION, *[a for c in CHOICES for a in ("--choice", c)]]
    capsys.readouterr()
    assert main([*args, "--adapter", str(csqa_model)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert sorted(a["name"] for a in answer["answers"]) == sorted(CHOICES) and answer["text"] in CHOICES
    assert main(args) == 1  # without an adapter the KB's encoder ranks the choices: the KB must exist
    assert capsys.readouterr().err.startswith("KBNotFound: ")
    assert main(["ask", QUESTION, "--adapter", str(csqa_model)]) == 1  # an adapter without choices is not ignored
    assert capsys.readouterr().err.startswith("ConfigError: --adapter ")
