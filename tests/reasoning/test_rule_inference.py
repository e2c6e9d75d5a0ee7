"""Rules attached to an expert infer edges its graph lacks, visible in the answer's reasoning path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgllm.eval.registry import TrainRequest, get_trainer
from kgllm.exceptions import DomainNotFound, ModelError
from kgllm.fusion.context import ContextFusion
from kgllm.kb import open_kb

QUESTION = "Which region is [france] located in?"
RELATION_TEXT = {"locatedin": "located in", "neighbor": "neighbor of"}


@pytest.fixture(scope="module")
def geography(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Countries S1 with every ``locatedin`` edge of France removed (the missing edges)."""
    folder = tmp_path_factory.mktemp("geo")
    lines = (fixtures_dir / "eval" / "countries_S1" / "train.txt").read_text().splitlines()
    kept = [line for line in lines if not line.startswith("france\tlocatedin\t")]
    assert len(lines) - len(kept) == 2  # france locatedin western_europe, europe
    (folder / "train.txt").write_text("\n".join(kept) + "\n")
    return folder


@pytest.fixture(scope="module")
def rules_dir(geography: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rules") / "geo"
    get_trainer("rules").run(TrainRequest(data=geography, out=out, options={"max_length": 2}))
    return out


@pytest.fixture()
def kb(geography: Path, embedder, tmp_path: Path):  # type: ignore[no-untyped-def]
    kb = open_kb(tmp_path / "kb", embedder=embedder)
    kb.load_triples("geography", geography / "train.txt", format="tsv", relation_text=RELATION_TEXT)
    yield kb
    kb.close()


def test_missing_edge_is_inferred_with_rule_and_path(kb, rules_dir):  # type: ignore[no-untyped-def]
    # one hop: without rules no chain from France reaches a region (its locatedin edge is gone)
    before = kb.ask(QUESTION, domain="geography", max_hops=1)
    assert "western_europe" not in {a.id for a in before.answers}
    assert all(h.rule is None for p in before.paths for h in p.hops)

    kb.use_rules("geography", rules_dir)
    answer = kb.ask(QUESTION, domain="geography", max_hops=1)
    ids = [a.id for a in answer.answers]
    assert "western_europe" in ids and "europe" in ids
    assert not {"spain", "italy", "germany"} & set(ids[:3])  # inferred regions rank above the neighbours
    best = answer.answers[ids.index("western_europe")]
    path = answer.paths[best.paths[0]]
    assert path.method == "rule" and len(path.hops) == 1
    hop = path.hops[0]
    assert (hop.head, hop.relation, hop.tail) == ("france", "locatedin", "western_europe")
    assert hop.rule is not None and hop.rule.startswith("locatedin(X,Y) <- ")
    assert "via france -[" in hop.rule and hop.rule.endswith("western_europe")
    # the grounding edges are stored facts with provenance; the inferred edge itself is not a fact
    assert all(f.source and f.line for f in answer.facts)
    assert ("geography", "france", "locatedin", "western_europe") not in {f.key for f in answer.facts}
    assert "inferred, not stored: locatedin(X,Y)" in answer.text
    assert "infer" in answer.timings
    # an LLM's prompt shows the inference on the path and never lists the inferred edge as a fact
    fused = ContextFusion().build(answer, None)
    prompt = fused.messages[-1]["content"]
    assert "western_europe (inferred by rule locatedin(X,Y) <- " in prompt
    assert ("france", "locatedin", "western_europe") not in {(f.head, f.relation, f.tail) for f in fused.facts}
    # batched ask gives the same answers
    assert [a.id for a in kb.ask_many([QUESTION], domain="geography", max_hops=1)[0].answers] == ids


def test_stored_edges_are_not_overridden(kb, rules_dir):  # type: ignore[no-untyped-def]
    kb.use_rules("geography", rules_dir)
    answer = kb.ask("Which region is [spain] located in?", domain="geography", max_hops=1)
    assert {a.id for a in answer.answers} == {"southern_europe", "europe"}
    assert all(h.rule is None for p in answer.paths for h in p.hops)


def test_rules_persist_in_the_manifest_and_can_be_detached(kb, rules_dir, embedder):  # type: ignore[no-untyped-def]
    kb.use_rules("geography", rules_dir, min_confidence=0.9)
    recorded = json.loads((kb.path / "kgllm.json").read_text())["domains"]["geography"]["rules"]
    assert recorded == {"dir": str(rules_dir.resolve()), "min_confidence": 0.9}
    path = kb.path
    kb.close()
    with open_kb(path, embedder=embedder) as reopened:
        assert reopened.domain_info("geography")["rules"]["min_confidence"] == 0.9
        # no rule for France reaches confidence 0.9 here, so nothing is inferred
        assert all(p.method != "rule" for p in reopened.ask(QUESTION, domain="geography", max_hops=1).paths)
        reopened.use_rules("geography", None)
        assert "rules" not in reopened.domain_info("geography")


def test_bad_rules_are_refused(kb, rules_dir, fixtures_dir, tmp_path):  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match="not a trained rule set directory"):
        kb.use_rules("geography", tmp_path)
    with pytest.raises(DomainNotFound, match="nowhere"):
        kb.use_rules("nowhere", rules_dir)
    with pytest.raises(ModelError, match="min_confidence"):
        kb.use_rules("geography", rules_dir, min_confidence=1.5)
    nations = tmp_path / "nations"
    nations.mkdir()
    (nations / "train.txt").write_text((fixtures_dir / "eval" / "nations_train_head.txt").read_text())
    get_trainer("rules").run(TrainRequest(data=nations, out=tmp_path / "nrules", options={"max_length": 1}))
    with pytest.raises(ModelError, match="absent from domain 'geography'"):
        kb.use_rules("geography", tmp_path / "nrules")
    assert "rules" not in kb.domain_info("geography")


def test_cli_trains_and_attaches_rules_then_ask_shows_the_inference(kb, geography, tmp_path, capsys):  # type: ignore[no-untyped-def]
    from kgllm.cli import main

    path = kb.path
    kb.close()
    rules = tmp_path / "cli-rules"
    assert main(["--json", "train", "rules", "--data", str(geography), "--out", str(rules), "-o", "max_length=2",
                 "-o", f"kb={path}", "-o", "domain=geography"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["attached_to"] == {"kb": str(path), "domain": "geography"} and trained["rules"] > 0
    assert main(["--kb", str(path), "--json", "ask", QUESTION, "--domain", "geography"]) == 0
    answer = json.loads(capsys.readouterr().out)
    top = answer["answers"][0]
    assert top["id"] in {"western_europe", "europe", "southern_europe"}
    assert answer["paths"][top["paths"][0]]["hops"][0]["rule"].startswith("locatedin(X,Y) <- ")
    assert main(["train", "rules", "--data", str(geography), "--out", str(rules), "-o", f"kb={path}"]) == 1
    assert "needs both -o kb=DIR and -o domain=NAME" in capsys.readouterr().err
    # a KB or domain that is not there is refused before the rules are mined and written
    for kb_dir, domain, error in ((tmp_path / "no-kb", "geography", "KBNotFound"), (path, "nosuch", "DomainNotFound")):
        out = tmp_path / f"rules-{domain}"
        assert main(["train", "rules", "--data", str(geography), "--out", str(out), "-o", f"kb={kb_dir}",
                     "-o", f"domain={domain}"]) == 1
        assert capsys.readouterr().err.startswith(error) and not out.exists()
