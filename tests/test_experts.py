"""Experts and routing on small real packs with the real MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import kgllm
from kgllm.exceptions import ModelError
from kgllm.experts import Router, RouterModel, question_spans
from kgllm.pipeline_reasoning import BRIDGE_MARGIN
from kgllm.pipeline_routing import rank_experts


@pytest.fixture(scope="module")
def kb(tmp_path_factory, fixtures_dir):
    with kgllm.open(tmp_path_factory.mktemp("experts") / "kb") as knowledge_base:
        knowledge_base.load(fixtures_dir / "kb" / "tiny_movies")
        knowledge_base.load(fixtures_dir / "kb" / "tiny_geo")
        yield knowledge_base


def test_question_spans_prefers_brackets_and_skips_stopwords():
    spans = question_spans("Who directed [Kismet] in 1944?")
    assert spans[0] == ("kismet", 1, True)
    texts = {s for s, _, _ in spans}
    assert "directed" in texts and "1944" in texts and "who" not in texts and "in" not in texts


@pytest.mark.parametrize("question, expected", [
    ("Who directed [Kismet]?", "tiny_movies"),
    ("which films did Tom Hanks star in", "tiny_movies"),
    ("Which region is [france] located in?", "tiny_geo"),
    ("what countries border spain", "tiny_geo"),
])
def test_zero_shot_routing(kb, question, expected):
    ranked = kb.router.route(question)
    assert [c.name for c in ranked][0] == expected
    assert ranked[0].score > ranked[1].score
    assert any("description similarity" in reason for reason in ranked[0].reasons)


def test_entity_links_are_reasons(kb):
    top = kb.router.route("Who directed [Kismet]?")[0]
    assert any("'kismet'" in reason for reason in top.reasons)



def test_trained_router_round_trip(kb, tmp_path):
    questions = ["who directed X", "what films star Y", "when was Z released",
                 "where is X located", "which countries border Y", "what region contains Z"]
    labels = ["tiny_movies"] * 3 + ["tiny_geo"] * 3
    vectors = kb.embedder.encode(questions)
    model = RouterModel.fit(questions, vectors, labels, model=kb.embedder.model_name)
    predicted = np.array(model.labels)[model.probabilities(questions, vectors).argmax(1)]
    assert np.array_equal(predicted, np.array(labels))
    model.save(tmp_path / "router")
    loaded = RouterModel.load(tmp_path / "router", model=kb.embedder.model_name)
    assert np.allclose(loaded.coef, model.coef) and loaded.vocabulary == model.vocabulary
    routed = Router(kb, model=loaded).route("which countries border france")
    assert routed[0].name == "tiny_geo" and any("classifier" in r for r in routed[0].reasons)
    with pytest.raises(ModelError, match="trained with embedder"):
        RouterModel.load(tmp_path / "router", model="another-model")
    manifest = json.loads((tmp_path / "router" / "manifest.json").read_text())
    assert manifest["labels"] == ["tiny_geo", "tiny_movies"]


def test_ask_routes_to_the_right_expert(kb):
    answer = kb.ask("Who directed [Kismet]?")
    assert answer.experts[0].name == "tiny_movies"
    assert answer.answers[0].name == "William Dieterle" and answer.answers[0].domain == "tiny_movies"
    geo = kb.ask("Which region is [france] located in?")
    assert geo.experts[0].name == "tiny_geo"
    assert {a.name for a in geo.answers[:3]} & {"western_europe", "europe"}


def test_close_experts_are_all_consulted_and_merged(tmp_path):
    films = tmp_path / "films.txt"
    films.write_text("Kismet|directed_by|William Dieterle\n", encoding="utf-8")
    remake = tmp_path / "remake.txt"
    remake.write_text("Kismet|directed_by|Vincente Minnelli\n", encoding="utf-8")
    with kgllm.open(tmp_path / "kb") as two:
        description = "Films and their directors."
        two.load_triples("classic", films, format="pipe", description=description)
        two.load_triples("remakes", remake, format="pipe", description=description)
        answer = two.ask("Who directed [Kismet]?")
    assert {e.name for e in answer.experts} == {"classic", "remakes"}
    by_domain = {a.domain: a.name for a in answer.answers}
    assert by_domain == {"classic": "William Dieterle", "remakes": "Vincente Minnelli"}
    for item in answer.answers:  # each answer's paths are its own expert's edges
        assert all(answer.paths[i].hops[-1].domain == item.domain for i in item.paths)


def test_question_no_expert_can_serve(kb):
    answer = kb.ask("zxqv wlorp?")
    assert not answer.answers
    assert "No entity" in answer.text and "tiny_movies" in answer.text


def test_domain_bypasses_routing(kb):
    answer = kb.ask("Who directed [Kismet]?", domain="tiny_movies")
    assert [e.name for e in answer.experts] == ["tiny_movies"] and answer.experts[0].reasons == ["given"]


def _geo_and_films(tmp_path, fixtures_dir, films: str, relation_text: dict[str, str]):  # noqa: ANN202
    """A KB with the tiny geography pack and a films expert tagged with countries (``films``: pipe lines)."""
    path = tmp_path / "films.txt"
    path.write_text(films, encoding="utf-8")
    kb = kgllm.open(tmp_path / "kb")
    kb.load(fixtures_dir / "kb" / "tiny_geo")
    kb.load_triples("films", path, format="pipe", description="Films and the countries they are tagged with.",
                    relation_text=relation_text)
    return kb


def test_cross_expert_chain(tmp_path, fixtures_dir):
    films = ("Amelie|has_tags|france\nAmelie|directed_by|Jean-Pierre Jeunet\n"
             "The Sea Inside|has_tags|spain\nMetropolis|has_tags|silent film\n")
    with _geo_and_films(tmp_path, fixtures_dir, films, {"has_tags": "tagged", "directed_by": "directed by"}) as kb:
        answer = kb.ask("Which films are tagged with the countries that border [germany]?")
    assert {e.name for e in answer.experts} == {"tiny_geo", "films"}
    assert answer.answers[0].name == "Amelie" and answer.answers[0].domain == "films"
    assert 0 < answer.answers[0].score <= 1
    chain = answer.paths[answer.answers[0].paths[0]]
    assert [h.relation for h in chain.hops] == ["neighbor", "same_as", "has_tags"]
    assert [h.domain for h in chain.hops] == ["tiny_geo", "films", "films"]
    assert chain.hops[0].head == "germany" and chain.hops[2].inverse and chain.method == "cross-expert"
    assert "Metropolis" not in {a.name for a in answer.answers}  # no bridge, no answer
    # the countries are the chain's middle, not answers; their own chains stay as evidence
    assert {a.domain for a in answer.answers} == {"films"}
    assert any(p.method != "cross-expert" and p.hops[-1].tail == "france" for p in answer.paths)
    evidence = answer.text.splitlines()[1:]
    assert evidence and all("tagged" in line for line in evidence)  # only chains that reach an answer


@pytest.mark.parametrize(("films", "question", "expected"), [
    # germany has 9 neighbours; only the first 5 answers (france, belgium, luxembourg, switzerland,
    # netherlands) came with a path, and the others were never bridged: only Amelie was found
    ("Metropolis|has_tags|silent film\n", "Which films are tagged with the countries that border [germany]?",
     {"Amelie", "Flickering Lights", "Ida"}),
    # the films expert links [germany] too, so both experts are consulted and their answers merged before the
    # chains continue; the geography answers past the 5th (poland) had no path then, and Ida was lost
    ("Run Lola Run|has_tags|germany\n", "What is tagged with the countries bordering [germany]?",
     {"Run Lola Run", "Amelie", "Flickering Lights", "Ida"}),
])
def test_cross_expert_chain_continues_from_every_answer(tmp_path, fixtures_dir, films, question, expected):
    films = "Amelie|has_tags|france\nFlickering Lights|has_tags|denmark\nIda|has_tags|poland\n" + films
    with _geo_and_films(tmp_path, fixtures_dir, films, {"has_tags": "tagged"}) as kb:
        answer = kb.ask(question)
        assert kb.ask_many([question])[0].answers == answer.answers
    assert [e.name for e in answer.experts] == ["tiny_geo", "films"]
    assert {a.name for a in answer.answers} == expected
    for item in answer.answers:
        if item.name == "Run Lola Run":  # the films expert's own answer: one hop from germany
            continue
        chain = answer.paths[item.paths[0]]
        assert [(h.relation, h.tail) for h in chain.hops][1:] == [("same_as", chain.hops[1].tail),
                                                                  ("has_tags", item.id)]
        assert (chain.hops[0].head, chain.hops[0].relation) == ("germany", "neighbor")
    ida = next(a for a in answer.answers if a.name == "Ida")
    assert [(h.head, h.relation, h.tail) for h in answer.paths[ida.paths[0]].hops] == [
        ("germany", "neighbor", "poland"), ("poland", "same_as", "poland"), ("poland", "has_tags", "Ida")]
    assert {("poland", "neighbor")} <= {(f.tail, f.relation) for f in answer.facts}  # the hop's fact is cited


def test_no_cross_expert_chain_without_a_hop_the_question_names(tmp_path, fixtures_dir):
    # a concept expert scores within the bridge margin, but "capital" names no relation of either graph:
    # France's continent's concepts (castle, kingdom) are no answer
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("castle|AtLocation|europe\nkingdom|AtLocation|europe\ncapital|AtLocation|country\n",
                        encoding="utf-8")
    with kgllm.open(tmp_path / "kb") as kb:
        kb.load(fixtures_dir / "kb" / "tiny_geo")
        kb.load_triples("concepts", concepts, format="pipe", description="Capitals and the places they are at.")
        ranked = rank_experts(kb.pipeline, "What is the capital of France?", list(kb.domains))
        answer = kb.ask("What is the capital of France?")
    assert [c.name for c in ranked] == ["tiny_geo", "concepts"] and ranked[0].score - ranked[1].score < BRIDGE_MARGIN
    assert {a.domain for a in answer.answers} == {"tiny_geo"} and [e.name for e in answer.experts] == ["tiny_geo"]
    assert not any(p.method == "cross-expert" for p in answer.paths)
    # a question that names the first graph's hop ("border") still goes on in the second
    (tmp_path / "films").mkdir()
    with _geo_and_films(tmp_path / "films", fixtures_dir, "Amelie|has_tags|france\nIda|has_tags|poland\n"
                        "Flickering Lights|has_tags|denmark\n", {"has_tags": "tagged"}) as kb:
        about = kb.ask("Which films are about the countries that border [germany]?")
    assert {a.name for a in about.answers} == {"Amelie", "Ida", "Flickering Lights"}
    assert all(about.paths[a.paths[0]].method == "cross-expert" for a in about.answers)


def test_explicit_same_as_bridges_differently_named_entities(tmp_path, fixtures_dir):
    films = "Good Bye Lenin|has_tags|Deutschland\nAmelie|has_tags|Frankreich\n"
    with _geo_and_films(tmp_path, fixtures_dir, films, {"has_tags": "tagged"}) as kb:
        kb.set_domain_info("films", same_as=[{"entity": "Deutschland", "same_as_domain": "tiny_geo",
                                              "same_as_entity": "germany"}])
        answer = kb.ask("Which films are tagged with the countries that border [belgium]?")
    assert answer.answers[0].name == "Good Bye Lenin"
    chain = answer.paths[answer.answers[0].paths[0]]
    assert [(h.head, h.relation, h.tail) for h in chain.hops][:2] == [
        ("belgium", "neighbor", "germany"), ("germany", "same_as", "Deutschland")]
    assert "Amelie" not in {a.name for a in answer.answers}  # "Frankreich" is linked to nothing


def test_manifest_pointing_at_a_missing_expert(tmp_path, fixtures_dir):
    import shutil

    pack = tmp_path / "geo"
    shutil.copytree(fixtures_dir / "kb" / "tiny_geo", pack)
    manifest = pack / "manifest.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8")
                        + "same_as:\n  - {entity: france, same_as_domain: atlas, same_as_entity: France}\n",
                        encoding="utf-8")
    with kgllm.open(tmp_path / "kb") as kb:
        report = kb.load(pack)
        assert "atlas" in report["warnings"][0] and "tiny_geo" in report["warnings"][0]
        answer = kb.ask("Which countries border [france]?")
    assert answer.answers and answer.experts[0].name == "tiny_geo"


def test_expert_prompt_template_reaches_the_llm(tmp_path, fixtures_dir):
    from llm.llm_testing import Reverser

    with kgllm.open(tmp_path / "kb") as kb:
        kb.add_expert("films", description="Films and directors.",
                      prompt_template="FILM EXPERT. {context}\nQuestion: {question}")
        kb.load_triples("films", fixtures_dir / "kb" / "tiny_movies" / "kb.txt", format="pipe")
        llm = Reverser()
        answer = kb.ask("Who directed [Kismet]?", llm=llm, llm_cache=False)
    assert llm.calls == 1 and answer.llm_calls == 1
    assert "FILM EXPERT." in answer.prompt and "Question: Who directed [Kismet]?" in answer.prompt


def test_routing_confusion_plot_is_a_png(tmp_path):
    from kgllm.eval.routing import plot_confusion

    path = plot_confusion({"labels": ["geo", "movies"], "matrix": [[9, 1], [0, 10]]}, tmp_path / "out" / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def _two_expert_kb_and_routing_file(tmp_path, fixtures_dir, rows: list[tuple[str, str]]) -> Path:
    """A KB at ``tmp_path / "kb"`` with the tiny movies and geography packs; ``rows`` as a routing jsonl file."""
    with kgllm.open(tmp_path / "kb") as built:
        built.load(fixtures_dir / "kb" / "tiny_movies")
        built.load(fixtures_dir / "kb" / "tiny_geo")
    data = tmp_path / "routing.jsonl"
    data.write_text("".join(json.dumps({"question": q, "domain": d}) + "\n" for q, d in rows), encoding="utf-8")
    return data


def test_routing_report_keeps_the_confusion_matrix_and_plots_it(tmp_path, fixtures_dir):
    from kgllm.eval.registry import EvalRequest
    from kgllm.eval.runner import run_eval

    data = _two_expert_kb_and_routing_file(tmp_path, fixtures_dir, [
        ("who directed Kismet", "tiny_movies"), ("which countries border spain", "tiny_geo"),
        ("where is france located", "tiny_geo")])
    run_eval("routing", EvalRequest(data=data, options={"kb": str(tmp_path / "kb")}), out=tmp_path / "r.json",
             report_dir=tmp_path / "report")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["confusion"]["labels"] == ["tiny_geo", "tiny_movies"]
    assert sum(map(sum, saved["confusion"]["matrix"])) == 3
    assert set(saved["latency_ms"]) == {"p50", "p95", "p99", "mean"}
    assert saved["latency_ms"]["p50"] == round(saved["latency_ms"]["p50"], 3)
    for kind in ("confusion", "latency"):
        png = tmp_path / "report" / "plots" / f"routing_{kind}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", kind
        assert f"plots/routing_{kind}.png" in (tmp_path / "report" / "report.md").read_text()


def _train_router_into_the_kb(tmp_path, fixtures_dir) -> None:  # noqa: ANN001
    """``kgllm train router ... -o kb=`` on four labelled questions over tiny_movies and tiny_geo."""
    from kgllm.cli import main

    data = _two_expert_kb_and_routing_file(tmp_path, fixtures_dir, [
        ("who directed Kismet", "tiny_movies"), ("which films star Tom Hanks", "tiny_movies"),
        ("which countries border spain", "tiny_geo"), ("where is france located", "tiny_geo")])
    assert main(["train", "router", "--data", str(data), "--out", str(tmp_path / "router"),
                 "-o", f"kb={tmp_path / 'kb'}"]) == 0


def test_train_router_attaches_to_a_kb(tmp_path, fixtures_dir):
    _train_router_into_the_kb(tmp_path, fixtures_dir)
    with kgllm.open(tmp_path / "kb", create=False) as reopened:
        top = reopened.router.route("which countries border italy")[0]
    assert top.name == "tiny_geo" and any("classifier" in reason for reason in top.reasons)


def test_cross_expert_chain_keeps_the_answers_of_the_other_experts_consulted(tmp_path):
    from kgllm.reasoning.aggregate import merge_answers
    from kgllm.reasoning.bridge import cross_expert_answers
    from kgllm.reasoning.reasoner import PathReasoner

    films = tmp_path / "films.txt"
    films.write_text("The Lives of Others|has_tags|germany\nThe Lives of Others|has_tags|berlin\n"
                     "Wings of Desire|has_tags|berlin\n", encoding="utf-8")
    cities = tmp_path / "cities.tsv"
    cities.write_text("berlin\tcapital_of\tgermany\nbavaria\tstate_of\tgermany\n", encoding="utf-8")
    question = "Which films are tagged with [germany]?"
    with kgllm.open(tmp_path / "kb") as kb:
        kb.load_triples("films", films, format="pipe", description="Films and their tags.",
                        relation_text={"has_tags": "tagged"})
        kb.load_triples("cities", cities, description="German cities and states.")
        # both experts consulted (as when they score within ROUTE_MARGIN): the films expert answers
        # directly, the cities expert's answers (berlin, bavaria) bridge into the films graph
        own, first = (kb.ask(question, domain=name) for name in ("films", "cities"))
        merged = merge_answers([(first, "cities"), (own, "films")], top_k=10)
        before = first.model_copy(update={"answers": merged.answers, "paths": merged.paths, "facts": merged.facts})
        masked = PathReasoner.mask(question, question.index("germany"), question.index("]"))
        bridged = cross_expert_answers(kb.pipeline, before, "cities", kb.pipeline.context("films"), masked)
    assert bridged is not None
    top = bridged.answers[0]
    assert (top.name, top.domain, top.score) == ("The Lives of Others", "films", own.answers[0].score)
    assert [(h.head, h.relation) for h in bridged.paths[top.paths[0]].hops] == [("germany", "has_tags")]
    assert {a.name for a in bridged.answers} == {"The Lives of Others", "Wings of Desire"}  # berlin's continued
    for item in bridged.answers:  # every answer's paths end in it
        assert all(bridged.paths[i].hops[-1].tail_name == item.name for i in item.paths)


def test_router_model_trained_for_other_experts_is_not_used(tmp_path, fixtures_dir):
    import shutil

    _train_router_into_the_kb(tmp_path, fixtures_dir)
    dishes = tmp_path / "dishes.tsv"
    dishes.write_text("pasta\tcooked_by\tboiling\nbread\tcooked_by\tbaking\n", encoding="utf-8")
    with kgllm.open(tmp_path / "kb", create=False) as kb:
        kb.load_triples("cooking", dishes, description="Dishes and how they are cooked.")  # added since training
        question = "How is [pasta] cooked?"
        ranked = kb.router.route(question)
        answer = kb.ask(question)
        # the classifier knows no 'cooking' (it would give it 0): zero-shot routing, and the answer says why
        assert ranked[0].name == "cooking" and not any("classifier" in r for c in ranked for r in c.reasons)
        assert answer.experts[0].name == "cooking" and answer.answers[0].name == "boiling"
        assert any("trained for experts tiny_geo, tiny_movies, not for cooking" in w for w in answer.warnings)
        kb.delete_domain("cooking")  # the experts it was trained for again: the classifier routes
        assert not any("router model" in w for w in kb.ask(question).warnings)
        geo = kb.router.route("which countries border italy")
        assert geo[0].name == "tiny_geo" and any("classifier" in r for r in geo[0].reasons)
        # among fewer experts than it was trained for, its probabilities are renormalized over them
        assert kb.router.route("who directed Kismet", experts=["tiny_geo"])[0].reasons[-1] == "classifier 1.00"
        shutil.rmtree(tmp_path / "router")  # moved or deleted: zero-shot, with a warning (no error)
    with kgllm.open(tmp_path / "kb", create=False) as kb:
        answer = kb.ask("which countries border [italy]?")
        assert answer.experts[0].name == "tiny_geo" and answer.answers
        assert any("not used" in w and "use_router_model(None)" in w for w in answer.warnings)


def test_damaged_router_model_is_refused_or_routes_zero_shot(tmp_path, fixtures_dir):
    # a manifest without labels raised KeyError from kb.router (every ask failed) and from use_router_model;
    # files saved by two trainings (an interrupted one over an older model) were taken as one model
    _train_router_into_the_kb(tmp_path, fixtures_dir)
    manifest = tmp_path / "router" / "manifest.json"
    good = manifest.read_text(encoding="utf-8")
    manifest.write_text(json.dumps({**json.loads(good), "labels": None}), encoding="utf-8")
    with kgllm.open(tmp_path / "kb", create=False) as kb:
        answer = kb.ask("which countries border [italy]?")
        assert answer.experts[0].name == "tiny_geo" and answer.answers
        assert any("not a router manifest" in w and "routed zero-shot" in w for w in answer.warnings)
        with pytest.raises(ModelError, match="not a router manifest"):
            kb.use_router_model(tmp_path / "router")
        manifest.write_text(good, encoding="utf-8")
        vocabulary = tmp_path / "router" / "vocabulary.json"
        vocabulary.write_text(json.dumps({"ab": 0, "bc": 1}), encoding="utf-8")  # another training's n-grams
        with pytest.raises(ModelError, match="router model files do not fit together"):
            kb.use_router_model(tmp_path / "router")
