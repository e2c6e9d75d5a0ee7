"""Reports (Markdown + PNG plots), run_all over a data root, the terminal summary."""

from __future__ import annotations

import json
import shutil

import pytest
from rich.console import Console

from kgllm.eval.reference import REFERENCES, references_for
from kgllm.eval.registry import EvalRequest
from kgllm.eval.report import write_report
from kgllm.eval.runner import print_summary, run_all, run_eval
from kgllm.exceptions import BenchmarkError, ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


def test_reference_table_has_sources_and_the_issue_numbers():
    assert all(r.source and 0 < r.value <= 1 for r in REFERENCES)
    minerva = {r.benchmark: r.value for r in references_for("countries-s3") if r.method == "MINERVA"}
    assert minerva == {"countries-s3": pytest.approx(0.951)}
    assert {r.method for r in references_for("umls", "mrr")} >= {"ConvE"}


def test_run_all_runs_what_exists_and_writes_the_report(fixtures_dir, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", root / "countries" / "countries_S1")
    lines = []
    reports = run_all(root, split="dev", out=tmp_path / "all.json", report_dir=tmp_path / "report",
                      echo=lines.append)
    by_name = {r["benchmark"]: r for r in reports}
    assert by_name["countries-s1"]["metrics"]["auc_pr"] == pytest.approx(1.0)
    assert "skipped" in by_name["umls"] and "expected files" in by_name["umls"]["skipped"] or \
        "not found" in by_name["umls"]["skipped"]
    assert f"countries-s1: {root / 'countries' / 'countries_S1'} (dev)" in lines
    assert not any(line.startswith(("umls", "routing")) for line in lines)  # no data, not announced
    saved = json.loads((tmp_path / "all.json").read_text())
    assert [r["benchmark"] for r in saved] == [r["benchmark"] for r in reports]

    md = (tmp_path / "report" / "report.md").read_text()
    assert "| countries-s1 | dev | 24 |" in md and "MINERVA" in md and "Rocktäschel" in md
    for kind in ("metrics", "latency", "calibration"):
        png = tmp_path / "report" / "plots" / f"countries-s1_{kind}.png"
        assert png.read_bytes()[:8] == PNG, kind
        assert f"plots/countries-s1_{kind}.png" in md
    assert (tmp_path / "report" / "predictions" / "countries-s1.jsonl").read_text().count("\n") == 24


def test_every_benchmark_has_a_data_folder_for_run_all():
    from kgllm.eval.registry import benchmarks
    from kgllm.eval.runner import DATA_FOLDERS

    assert set(DATA_FOLDERS) == set(benchmarks())
    assert DATA_FOLDERS["metaqa-1hop-ntm"] == "metaqa"  # its questions are metaqa/1-hop/ntm/qa_dev.txt


def test_per_type_plot_and_summary_table(tmp_path):
    report = {"benchmark": "metaqa-2hop", "split": "dev", "n": 4, "primary_metric": "hits@1",
              "metrics": {"hits@1": 0.75, "f1": 0.5}, "latency_ms": {"p50": 2.0}, "seconds": 1.0,
              "latencies_ms": [1.0, 2.0, 2.5, 3.0],
              "predictions": [{"type": "movie_to_director", "correct": True, "score": 0.9},
                              {"type": "movie_to_director", "correct": True, "score": 0.8},
                              {"type": "actor_to_movie", "correct": False, "score": 0.7},
                              {"type": "actor_to_movie", "correct": True, "score": 0.6}]}
    write_report([report, {"benchmark": "csqa", "error": "ValueError: boom"}], tmp_path)
    assert (tmp_path / "plots" / "metaqa-2hop_per_type.png").read_bytes()[:8] == PNG
    md = (tmp_path / "report.md").read_text()
    assert "error: ValueError: boom" in md and "EmbedKGQA" in md
    write_report([report, {"benchmark": "umls", "skipped": "umls: data folder not found: x"}], tmp_path / "s")
    assert "| umls | - | - | skipped: umls: data folder not found: x | - | - |" in (tmp_path / "s" / "report.md").read_text()
    console = Console(record=True, width=200)
    print_summary([report, {"benchmark": "csqa", "skipped": "no data"}], console=console)
    text = console.export_text()
    assert "hits@1=0.750" in text and "skipped" in text


def test_report_dir_of_a_single_run(fixtures_dir, tmp_path):
    data = tmp_path / "c"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", data)
    run_eval("countries-s1", EvalRequest(data=data, split="dev", limit=6), report_dir=tmp_path / "r")
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results[0]["n"] == 6 and "calibration" in results[0]


def test_a_split_without_questions_is_an_error_not_zero_scores(fixtures_dir, tmp_path):
    data = tmp_path / "c"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", data)
    (data / "valid.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"countries-s1: no questions in the 'dev' split of .*c$"):
        run_eval("countries-s1", EvalRequest(data=data, split="dev"), out=tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_unwritable_outputs_are_refused_before_the_run(fixtures_dir, tmp_path):
    data = fixtures_dir / "eval" / "countries_S1"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="--out must name a JSON file, got the folder"):
        run_eval("countries-s1", EvalRequest(data=data), out=tmp_path)
    with pytest.raises(ConfigError, match="--report must name a folder, got the file .*a-file"):
        run_eval("countries-s1", EvalRequest(data=data), report_dir=tmp_path / "a-file")
    with pytest.raises(ConfigError, match="--out must name a JSON file"):
        run_all(tmp_path, out=tmp_path)


def test_outputs_under_a_file_are_refused_before_the_run(fixtures_dir, tmp_path):
    # they failed with FileExistsError once the (possibly hours long) run was over
    data = tmp_path / "c"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", data)
    valid = (data / "valid.txt").read_text()
    (data / "valid.txt").write_text("not a triple\n")  # the run would fail on it: the outputs are checked first
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"--out .*report\.json cannot be written: .*a-file is a file, not a folder"):
        run_eval("countries-s1", EvalRequest(data=data), out=blocker / "sub" / "report.json")
    with pytest.raises(ConfigError, match=r"--report .*plots cannot be written: .*a-file is a file, not a folder"):
        run_eval("countries-s1", EvalRequest(data=data), report_dir=blocker / "plots")
    with pytest.raises(ConfigError, match="a-file is a file, not a folder"):
        run_all(tmp_path, report_dir=blocker / "plots")
    (data / "valid.txt").write_text(valid)
    report = run_eval("countries-s1", EvalRequest(data=data, limit=2), out=tmp_path / "new" / "deep" / "r.json",
                      report_dir=tmp_path / "new" / "report")  # folders still to be made are fine
    assert json.loads((tmp_path / "new" / "deep" / "r.json").read_text())["n"] == report["n"] == 2
    assert not list(tmp_path.glob("**/.kgllm-write-test-*"))  # the probe leaves nothing behind


def test_run_all_with_nothing_to_run_is_an_error(tmp_path):
    # it printed a table of skipped benchmarks and exited 0, as if a wrong --data-root had been evaluated
    with pytest.raises(BenchmarkError, match=r"no benchmark could run from .*; expected data folders under it: "
                                             r"commonsenseqa, countries/countries_S1, .*umls"):
        run_all(tmp_path, out=tmp_path / "all.json")
    assert not (tmp_path / "all.json").exists()
    (tmp_path / "commonsenseqa").mkdir()
    (tmp_path / "commonsenseqa" / "dev.jsonl").write_text("{}\n")
    with pytest.raises(BenchmarkError, match=r"; 'kgllm eval csqa' needs --model MODEL_DIR"):
        run_all(tmp_path)  # the one benchmark with data says why it could not run


def test_long_config_is_cut_at_a_key_not_mid_json(tmp_path):
    short = {"scorer": "learned", "hops": 2}
    long = {"scorer": "learned", "model": "models/metaqa", "regions": ["africa", "americas", "asia"] * 20,
            "halves": {"held_out": {"n": 4, "hits@1": 0.75}}}
    reports = [{"benchmark": name, "split": "dev", "n": 4, "metrics": {"hits@1": 0.75}, "seconds": 1.0,
                "config": config} for name, config in (("metaqa-1hop", short), ("metaqa-2hop", long))]
    write_report(reports, tmp_path)
    lines = [line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("config: ")]
    assert lines[0] == f"config: `{json.dumps(short)}`"  # a short one whole
    shown, note = lines[1][len("config: `"):].split("` ", 1)
    assert json.loads(shown) == {"scorer": "learned", "model": "models/metaqa"}  # valid JSON, whole keys
    assert note == "(cut before regions, halves; results.json has the whole config)"
    assert json.loads((tmp_path / "results.json").read_text())[1]["config"] == long


def test_an_incomplete_filter_is_a_warning_of_the_report(fixtures_dir, tmp_path):
    # it was only in config.filter_warning: neither the terminal summary nor report.md said the scores are low
    data = tmp_path / "nations"
    data.mkdir()
    lines = (fixtures_dir / "eval" / "nations_train_head.txt").read_text().splitlines()
    (data / "train.txt").write_text("\n".join(lines[:360]) + "\n")
    (data / "valid.txt").write_text("\n".join(lines[360:]) + "\n")
    request = EvalRequest(data=data, split="dev", limit=4, options={"epochs": 2, "dim": 8, "max_length": 2})
    report = run_eval("nations", request, report_dir=tmp_path / "report")
    assert report["warnings"][0] == report["config"]["filter_warning"]
    assert "test.txt absent" in report["warnings"][0]
    assert f"**Warning:** {report['warnings'][0]}" in (tmp_path / "report" / "report.md").read_text()


def test_a_multi_line_error_stays_in_its_table_row(tmp_path):
    # a newline in an error message ended the report.md table row mid-message
    write_report([{"benchmark": "umls", "error": "ValueError: first line\nsecond | line"}], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| umls | - | - | error: ValueError: first line second / line | - | - |" in md.splitlines()


def test_non_ascii_names_read_as_written_in_report_md(tmp_path):
    # the config line showed a data folder "données" as "donn\u00e9es"
    report = {"benchmark": "umls", "split": "dev", "n": 1, "metrics": {"mrr": 0.5}, "seconds": 1.0,
              "config": {"data": "/data/données/umls"}, "warnings": ["/data/données/umls: test.txt absent"],
              "per_type": {"côté": {"mrr": 0.5}, "名前": {"mrr": 0.25}}, "primary_metric": "mrr"}
    write_report([report], tmp_path)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert 'config: `{"data": "/data/données/umls"}`' in md and "**Warning:** /data/données/umls" in md
    assert (tmp_path / "plots" / "umls_per_type.png").read_bytes()[:8] == PNG
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))[0]["config"]["data"].endswith("données/umls")
