"""The routing-latency and index-search benchmark scripts, run end to end on tiny sizes.

Each script runs as a real subprocess (real MiniLM, real FAISS, a real knowledge base on disk) and
writes its JSON; the tests check the fields the README and the lead's reports read, and that the
numbers in them mean what they say (exact search has recall 1, cold questions ran the encoder...).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str, out: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def _check_stats(stats: dict, n: int) -> None:
    assert stats["n"] == n
    assert 0 < stats["p50"] <= stats["p95"]


def test_synthetic_experts_are_deterministic_and_disjoint():
    routing = _module("routing_latency")
    experts = routing.synthetic_experts(4, 40, seed=3)
    again = routing.synthetic_experts(4, 40, seed=3)
    assert [(e.name, e.triples) for e in experts] == [(e.name, e.triples) for e in again]
    vocabularies = [{name.lower() for name in e.entities} for e in experts]
    assert sum(len(v) for v in vocabularies) == len(set().union(*vocabularies))
    for expert in experts:
        assert len(expert.triples) == 40 and len(set(expert.triples)) == 40
        assert {r for _, r, _ in expert.triples} <= set(expert.relation_text)
        assert expert.topic in expert.description
    questions = routing.make_questions(experts, 30, seed=1)
    assert len({q for q, _ in questions}) == 30
    fresh = routing.make_questions(experts, 30, seed=2, exclude={q for q, _ in questions})
    assert not {q for q, _ in fresh} & {q for q, _ in questions}


def test_routing_latency_script(tmp_path):
    result = _run("routing_latency.py", "--experts", "2,3", "--questions", "8", "--triples", "12",
                  "--train-per-expert", "2", "--threads", "1", out=tmp_path / "routing.json")
    assert result["benchmark"] == "routing_latency"
    assert isinstance(result["passed"], bool) and result["torch_threads"] == 1
    assert [case["experts"] for case in result["cases"]] == [2, 3]
    for case in result["cases"]:
        _check_stats(case["profile_build_ms"], case["experts"])
        for key in ("route_cached_ms", "route_given_vector_ms", "route_cold_ms"):
            _check_stats(case[key], 8)
        assert case["cold_questions_encoded"] == 8  # every cold question really went through the encoder
        assert case["given_vector_same_ranking"] is True
        # each question names an entity of one expert or its topic: the router must mostly get it
        assert case["accuracy@1"]["cached"] >= 0.75
        trained = case["trained_router"]
        assert trained["train_questions"] == 2 * case["experts"]
        _check_stats(trained["route_cached_ms"], 8)
        assert case["target_p50_ms"] is None and case["meets_target"] is None  # targets are for 5 and 50


def test_index_search_script(tmp_path):
    result = _run("index_search.py", "--n", "2000", "--dim", "32", "--queries", "70", "--batch", "32",
                  "--factory", "Flat", "--factory", "HNSW32", "--factory", "IVF{nlist},PQ8np",
                  "--threads", "1", "--blas-threshold", "64", out=tmp_path / "index.json")
    assert result["benchmark"] == "index_search" and result["faiss_threads"] == 1
    assert result["faiss_blas_threshold"] == 64  # batches of 32 x dim 32 take the BLAS path, single queries not
    assert (result["n"], result["dim"], result["k"], result["distribution"]) == (2000, 32, 10, "uniform")
    flat, hnsw, ivfpq = result["cases"]
    assert [c["factory"] for c in result["cases"]] == ["Flat", "HNSW32", "IVF128,PQ8np"]
    for case in result["cases"]:
        assert case["count"] == 2000 and case["build_s"] > 0
        _check_stats(case["batch1_ms"], 70)
        _check_stats(case["batch32_ms"], 2)  # 70 queries make two full batches of 32
        assert case["batch32_queries_per_s"] > 0
        assert case["memory"]["index_file_mb"] > 0
        assert 0.0 <= case["recall@10"] <= 1.0
    assert flat["recall@10"] == flat["recall@10_batched"] == 1.0  # exact search finds the exact top 10
    assert flat["trained_on"] == 0 and ivfpq["trained_on"] > 0
    assert hnsw["recall@10"] >= 0.8
    # 8-byte PQ codes against 128-byte float vectors: the compressed index must be much smaller
    assert ivfpq["memory"]["index_file_mb"] < flat["memory"]["index_file_mb"] / 2


def test_index_search_rejects_unknown_distribution(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "index_search.py"), "--distribution", "gaussian",
                           "--out", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "uniform" in done.stderr and "clustered" in done.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("n, expected", [(100_000, 1024), (2000, 128), (10, 16)])
def test_default_nlist(n, expected):
    assert _module("index_search").default_nlist(n) == expected


def _nations_head(fixtures_dir: Path, tmp_path: Path) -> Path:
    """A data root whose ``nations/`` holds the fixture's first 360 lines as train.txt, the last 40 as valid.txt."""
    lines = (fixtures_dir / "eval" / "nations_train_head.txt").read_text().splitlines()
    nations = tmp_path / "data" / "nations"
    nations.mkdir(parents=True)
    (nations / "train.txt").write_text("\n".join(lines[:360]) + "\n")
    (nations / "valid.txt").write_text("\n".join(lines[360:]) + "\n")
    return tmp_path / "data"


def test_link_prediction_filter_bench_reports_both_filters(fixtures_dir, tmp_path):
    _nations_head(fixtures_dir, tmp_path)
    result = _run("link_prediction_filter.py", "--data-root", str(tmp_path / "data"), "-o", "epochs=5", "-o", "dim=8",
                  "-o", "max_length=1", "--curve", out=tmp_path / "lpf.json")
    assert result["benchmark"] == "link_prediction_filter" and set(result["results"]) == {"nations"}
    res = result["results"]["nations"]
    assert res["split_sizes"]["train'"] + 2 * res["split_sizes"]["valid'"] == 360 and res["n"] == res["split_sizes"]["valid'"]
    for method in ("rules", "kge", "combined"):
        assert res["without_test_filter"][method]["mrr"] <= res["with_test_filter"][method]["mrr"]
    curve = res["filter_curve"]["points"]  # more true triples filtered: a smaller share missing, no lower MRR
    assert [p["missing_share"] for p in curve] == sorted((p["missing_share"] for p in curve), reverse=True)
    assert all(a["mrr"] <= b["mrr"] for a, b in zip(curve, curve[1:], strict=False))
    assert res["cpu_s"] > 0 and "load_avg_1m" in res and result["machine"]["cpus"]


def test_mc_graph_signal_counts_connections_on_a_hand_made_graph(tmp_path):
    from kgllm.fusion.features import MCQuestion
    from kgllm.fusion.grounding import ConceptGraph, ConceptGrounder

    triples = tmp_path / "graph.txt"
    triples.write_text("AtLocation\tmilk\tfridge\nAtLocation\tbread\tbakery\nUsedFor\toven\tbaking\n"
                       "AtLocation\tcake\tbakery\nRelatedTo\tstone\tpebble\n", encoding="utf-8")
    graph = ConceptGraph.from_triples(triples)
    questions = [
        # the right choice has a direct edge; the wrong one is grounded but unconnected
        MCQuestion(id="1", stem="where is milk kept", choices=["fridge", "oven"], labels=["A", "B"], answer=0),
        # both choices reach "bread" through "bakery" only as a 2-hop path ("cake" - bakery - bread): none direct
        MCQuestion(id="2", stem="what is like a cake", choices=["stone", "bread"], labels=["A", "B"], answer=1),
        # no choice is connected at all: a tie, half credit
        MCQuestion(id="3", stem="which is heavy", choices=["stone", "oven"], labels=["A", "B"], answer=0),
    ]
    result = _module("mc_graph_signal").signal(questions, graph, ConceptGrounder(graph))
    assert result["questions"] == 3 and result["chance"] == 0.5
    assert result["right"]["direct"] == round(1 / 3, 4) and result["wrong"]["direct"] == 0.0
    assert result["right"]["two_hop"] == round(1 / 3, 4) and result["wrong"]["two_hop"] == 0.0
    assert result["right"]["grounded"] == 1.0 and result["wrong"]["grounded"] == 1.0
    assert result["graph_only_accuracy"] == round((1 + 1 + 0.5) / 3, 4)


def test_mc_graph_headroom_features_and_cross_validated_logit(tmp_path):
    import numpy as np

    from kgllm.fusion.features import MCQuestion
    from kgllm.fusion.grounding import ConceptGraph, ConceptGrounder

    bench = _module("mc_graph_headroom")
    triples = tmp_path / "graph.txt"
    triples.write_text("AtLocation\tmilk\tfridge\nUsedFor\toven\tbaking\nAtLocation\tcake\toven\n", encoding="utf-8")
    graph = ConceptGraph.from_triples(triples)
    questions = [MCQuestion(id="1", stem="where is milk kept", choices=["fridge", "oven", "moon"],
                            labels=["A", "B", "C"], answer=0)]
    x = bench.connection_features(questions, graph, ConceptGrounder(graph))
    at_location = graph.relations.index("AtLocation")
    assert x.shape == (1, 3, graph.n_relation_ids + 3)
    assert x[0, 0, at_location] == 1 and x[0, 0, :graph.n_relation_ids].sum() == 1  # milk -AtLocation-> fridge
    assert x[0, 1, :graph.n_relation_ids].sum() == 0 and x[0, 1, -2] == 1  # oven: grounded, not linked to milk
    assert x[0, 2].sum() == 0  # moon: not in the graph
    # the logit uses a feature that marks the right choice, and cannot beat chance with noise alone
    rng = np.random.default_rng(0)
    answers = rng.integers(0, 4, size=400)
    marked = rng.normal(size=(400, 4, 2)).astype(np.float32)
    marked[np.arange(400), answers, 0] += 3.0
    assert bench.cross_validated_accuracy(marked, answers) > 0.9
    assert bench.cross_validated_accuracy(marked[..., 1:], answers) < 0.4


def test_path_gnn_probe_trains_and_ranks_with_both_filters(fixtures_dir, tmp_path):
    result = _run("path_gnn_probe.py", "--data-root", str(_nations_head(fixtures_dir, tmp_path)), "--name", "nations", "--epochs", "2",
                  "--eval-every", "1", "--dim", "8", "--layers", "2", "--threads", "1", out=tmp_path / "gnn.json")
    history = result["results"]["history"]
    assert [point["epoch"] for point in history] == [1, 2] and history[1]["loss"] < history[0]["loss"]
    final = result["results"]["final"]
    assert final["without_test_filter"]["mrr"] <= final["with_test_filter"]["mrr"] <= 1
    assert result["results"]["n"] == round(360 * 40 / (360 + 2 * 40))  # valid' of the simulated split


def test_document_retrieval_finds_the_gold_fact(tmp_path):
    facts = (BENCH.parent / "graphs" / "science" / "openbook.txt").read_text().splitlines()[:3]
    obqa = tmp_path / "openbookqa"
    obqa.mkdir()
    rows = [{"id": str(i), "fact1": fact.strip('"'), "answerKey": "A",
             "question": {"stem": fact.strip('"'), "choices": [{"label": "A", "text": "yes"}]}}
            for i, fact in enumerate(facts)]
    (obqa / "dev_complete.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = _run("document_retrieval.py", "--data", str(obqa), "--threads", "1", out=tmp_path / "docs.json")
    assert result["n"] == 3 and result["results"]["gold_in_documents"] == 1.0
    assert result["results"]["stem"]["recall@1"] == 1.0  # a question that is the fact finds it first
    assert 0 <= result["results"]["stem_and_choices"]["recall@4"] <= 1


def test_conve_reference_ranks_valid_and_checks_the_estimate_on_a_resplit(fixtures_dir, tmp_path):
    data = _nations_head(fixtures_dir, tmp_path)
    real = _run("conve_reference.py", "--data-root", str(data), "--names", "nations", "--epochs", "2", "--every", "1",
                out=tmp_path / "real.json")["results"]["nations"]
    assert [p["epoch"] for p in real["checkpoints"]] == [1, 2] and real["n"] == 2 * 40
    assert real["published_test_mrr"] == {"dettmers2018": 0.82}
    final = real["final"]  # the estimate only takes the missing split's answers off: never a lower MRR
    assert 0 < final["valid_txt"]["mrr"] <= final["estimated_complete_filter"]["mrr"] <= 1
    simulated = _run("conve_reference.py", "--data-root", str(data), "--names", "nations", "--epochs", "1",
                     "--simulate", out=tmp_path / "sim.json")["results"]["nations"]["final"]
    assert simulated["without_test_filter"]["mrr"] <= simulated["with_test_filter"]["mrr"]
    assert simulated["without_test_filter"]["mrr"] <= simulated["estimated_from_without_test_filter"]["mrr"]


def test_mc_accuracy_trains_and_scores_each_variant_and_seed(fixtures_dir, tmp_path):
    result = _run("mc_accuracy.py", "--data-root", str(fixtures_dir / "mcqa"), "--benchmarks", "csqa",
                  "--variants", "alone", "graph", "--seeds", "0", "1", "--epochs", "1",
                  "-o", f"cache_dir={tmp_path / 'cache'}", out=tmp_path / "mc.json")
    runs = result["runs"]
    assert [(r["variant"], r["seed"]) for r in runs] == [("alone", 0), ("alone", 1), ("graph", 0), ("graph", 1)]
    assert all(r["n"] == 16 and 0 <= r["accuracy"] <= 100 for r in runs)  # the 16 dev questions of the fixture
    alone = [r["accuracy"] for r in runs if r["variant"] == "alone"]
    assert result["summary"]["csqa/alone"]["mean"] == pytest.approx(sum(alone) / 2, abs=0.01)
    assert (tmp_path / "cache").is_dir()  # the options reach the trainer and the benchmark
