"""The MetaQA benchmark scripts: `bench/metaqa_ceiling.py` (bounds computed by hand on a hand-made folder)
and `bench/ask_latency.py` (end to end on the fixture)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from kgllm.exceptions import BenchmarkError

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _ceiling():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_metaqa_ceiling", BENCH / "metaqa_ceiling.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ceiling


def _folder(root: Path, questions: list[tuple[str, str, str]]) -> Path:
    (root / "1-hop").mkdir(parents=True)
    # "King Kong" holds the casts of two films; Kismet has one director; Naomi Watts starred in two films
    (root / "kb.txt").write_text("King Kong|starred_actors|Fay Wray\nKing Kong|starred_actors|Naomi Watts\n"
                                 "King Kong|starred_actors|Jack Black\nKismet|directed_by|William Dieterle\n"
                                 "Mulholland Drive|starred_actors|Naomi Watts\n",
                                 encoding="utf-8")
    (root / "1-hop" / "qa_dev.txt").write_text("".join(f"{q}\t{a}\n" for q, a, _ in questions), encoding="utf-8")
    (root / "1-hop" / "qa_dev_qtype.txt").write_text("".join(f"{t}\n" for _, _, t in questions), encoding="utf-8")
    return root


def test_ceiling_by_hand(tmp_path):
    data = _folder(tmp_path / "metaqa", [
        ("who starred in [King Kong]", "Naomi Watts|Jack Black", "movie_to_actor"),  # 2 of 3 candidates
        ("who directed [Kismet]", "William Dieterle", "movie_to_director"),
        ("what films did [Fay Wray] act in", "King Kong", "actor_to_movie"),
        ("who wrote [Kismet]", "Edward Knoblock", "movie_to_writer"),  # not in this KB at all
    ])
    bounds = _ceiling()(data, tmp_path / "kb")
    assert bounds["all"] == {"n": 4, "oracle": 75.0, "ambiguous": 1, "ambiguous_pct": 25.0,
                             "expected_random": round(100 * (2 / 3 + 1 + 1 + 0) / 4, 2),
                             # the most-linked actor of King Kong (Naomi Watts, two films) is a gold answer
                             "expected_popular": 75.0}
    assert bounds["training"]["n"] + bounds["held_out"]["n"] == 4


def test_ceiling_needs_question_types(tmp_path):
    data = _folder(tmp_path / "metaqa", [("who directed [Kismet]", "William Dieterle", "")])
    with pytest.raises(BenchmarkError, match="line 1"):
        _ceiling()(data, tmp_path / "kb")


def test_ask_latency_script_on_the_fixture(tmp_path, metaqa_dir):
    """``bench/ask_latency.py`` end to end on the MetaQA fixture (zero-shot, a few questions)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ask_latency.json"
    done = subprocess.run([sys.executable, str(BENCH / "ask_latency.py"), "--data", str(metaqa_dir), "--n", "8",
                           "--baseline-n", "2", "--kb", str(tmp_path / "kb"), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["questions"] == 8 and result["scorer"] == "zero-shot"
    assert set(result["ask_many_by_threads"]) == {"1", "2"}
    # batched and single answers agree, answer for answer and score for score
    assert all(run["same_answers_as_ask"] == 1.0 for run in result["ask_many_by_threads"].values())
    assert 0 < result["ask_ms"]["p50"] <= result["ask_ms"]["p95"]
    assert result["baseline_networkx_ms"]["n"] == 2
