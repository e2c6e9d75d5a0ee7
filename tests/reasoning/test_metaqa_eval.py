"""MetaQA benchmark and trainer: file parsing, the fixed training half, KB reuse, a run on the fixture."""

from __future__ import annotations

import pytest

from kgllm.eval import registry
from kgllm.eval.metaqa import in_training_half, metaqa_kb, read_questions
from kgllm.exceptions import BenchmarkError, LoadError


def test_read_questions_and_types(metaqa_dir):
    questions = read_questions(metaqa_dir / "3-hop" / "qa_dev.txt", metaqa_dir / "3-hop" / "qa_dev_qtype.txt")
    assert len(questions) == 40
    first = questions[0]
    assert first.topic in first.question and first.line == 1
    assert first.qtype and "_to_" in first.qtype and first.answers


def test_bad_lines_name_file_line_and_value(tmp_path):
    path = tmp_path / "qa_dev.txt"
    path.write_text("who directed [Kismet]\tWilliam Dieterle\nno tab here\n")
    with pytest.raises(LoadError, match=r"qa_dev.txt line 2: .*'no tab here'"):
        read_questions(path)
    path.write_text("who directed Kismet\tWilliam Dieterle\n")
    with pytest.raises(LoadError, match="no \\[topic entity\\]"):
        read_questions(path)


def test_training_half_is_fixed_and_about_half():
    picks = [in_training_half(2, line) for line in range(1, 2001)]
    assert picks == [in_training_half(2, line) for line in range(1, 2001)]
    assert 0.45 < sum(picks) / len(picks) < 0.55
    assert picks != [in_training_half(3, line) for line in range(1, 2001)]


def test_benchmarks_and_trainer_registered():
    for name in ("metaqa-1hop", "metaqa-2hop", "metaqa-3hop", "metaqa-1hop-ntm"):
        assert registry.get_benchmark(name).primary_metric == "hits@1"
    assert registry.get_trainer("metaqa").name == "metaqa"


def test_kb_is_reused_by_checksum(metaqa_dir, tmp_path):
    kb = metaqa_kb(metaqa_dir, tmp_path / "kb")
    graph_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "kb" / "graph").rglob("*") if p.is_file()}
    kb.close()
    again = metaqa_kb(metaqa_dir, tmp_path / "kb")
    assert graph_files and all(p.stat().st_mtime_ns == t for p, t in graph_files.items())  # not loaded twice
    assert again.domain_info("movies")["kb_checksum"]
    assert again.store.count("movies")["triples"] == len((metaqa_dir / "kb.txt").read_text().splitlines())
    again.close()


def test_missing_files(tmp_path):
    with pytest.raises(BenchmarkError, match="qa_dev.txt"):
        registry.get_benchmark("metaqa-2hop").run(registry.EvalRequest(data=tmp_path, split="dev"))
    (tmp_path / "2-hop").mkdir()
    (tmp_path / "2-hop" / "qa_dev.txt").write_text("who directed [Kismet]\tWilliam Dieterle\n")
    with pytest.raises(BenchmarkError, match="no kb.txt"):
        registry.get_benchmark("metaqa-2hop").run(registry.EvalRequest(data=tmp_path, split="dev"))


def test_learned_run_on_fixture(metaqa_dir, metaqa_kb, model_dir):
    request = registry.EvalRequest(data=metaqa_dir, split="dev", model=model_dir, kb=metaqa_kb.path)
    result = registry.get_benchmark("metaqa-2hop").run(request)
    assert result["n"] == 40
    assert result["metrics"]["hits@1"] >= 0.95  # trained on these very questions (all_lines)
    assert 0.0 <= result["metrics"]["f1"] <= 1.0 and result["metrics"]["answer_recall"] >= result["metrics"]["f1"] - 1
    assert result["latency_ms"]["p50"] > 0
    assert result["config"]["scorer"] == "learned"
    assert sum(v["n"] for v in result["per_type"].values()) == 40
    assert result["config"]["halves"]["held_out"]["n"] + result["config"]["halves"]["training"]["n"] == 40


def test_zero_shot_held_out_and_limit(metaqa_dir, metaqa_kb):
    request = registry.EvalRequest(data=metaqa_dir, split="dev", limit=5, kb=metaqa_kb.path,
                                   options={"held_out": True})
    result = registry.get_benchmark("metaqa-1hop").run(request)
    assert result["n"] == 5 and result["config"]["held_out"] and result["config"]["scorer"] == "zero-shot"
    assert result["config"]["halves"]["training"]["n"] == 0


@pytest.mark.parametrize(("value", "held_out"), [("False", False), ("no", False), ("0", False), ("true", True)])
def test_held_out_given_as_text(metaqa_dir, metaqa_kb, value, held_out):
    # -o held_out=False reaches the benchmark as the string "False" (not JSON): it must not mean yes
    request = registry.EvalRequest(data=metaqa_dir, split="dev", limit=6, kb=metaqa_kb.path,
                                   options={"held_out": value})
    result = registry.get_benchmark("metaqa-1hop").run(request)
    assert result["config"]["held_out"] is held_out
    assert (result["config"]["halves"]["training"]["n"] == 0) is held_out


def test_report_gets_latency_histogram_calibration_and_progress(metaqa_dir, metaqa_kb, tmp_path, capsys):
    # MetaQA returned only a latency summary and no per-question scores: its report had neither a latency
    # histogram nor a calibration plot, and a run on the terminal showed no progress
    from kgllm.eval.runner import run_eval

    request = registry.EvalRequest(data=metaqa_dir, split="dev", limit=12, kb=metaqa_kb.path, progress=True)
    report = run_eval("metaqa-3hop", request, out=tmp_path / "r.json", report_dir=tmp_path / "report")
    assert "metaqa 3-hop questions" in capsys.readouterr().err
    preds = report["predictions"]
    assert len(preds) == len(report["latencies_ms"]) == 12
    assert all(0.0 <= p["score"] <= 1.0 and p["type"] and "_to_" in p["type"] for p in preds)
    assert sum(p["correct"] for p in preds) / 12 == pytest.approx(report["metrics"]["hits@1"], abs=1e-4)
    assert sum(b["count"] for b in report["calibration"]["bins"]) == 12
    for kind in ("latency", "calibration", "per_type"):
        assert (tmp_path / "report" / "plots" / f"metaqa-3hop_{kind}.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "report" / "predictions" / "metaqa-3hop.jsonl").read_text().count("\n") == 12
    written = (tmp_path / "r.json").read_text()
    assert '"predictions"' not in written and '"latencies_ms"' not in written  # --out stays small
