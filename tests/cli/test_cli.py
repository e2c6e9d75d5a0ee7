"""The ``kgllm`` command: loads, stats, JSON output and one-line errors with exit code 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import kgllm
from kgllm.cli import main


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_load_and_stats_json(tmp_path, capsys, fixtures_dir):
    kb = tmp_path / "kb"
    code, out, _ = run(capsys, "--kb", kb, "--json", "load", fixtures_dir / "kb" / "tiny_movies")
    assert code == 0
    assert json.loads(out)["triples_added"] == 50
    code, out, _ = run(capsys, "--kb", kb, "load", "--domain", "geo", "--triples",
                       fixtures_dir / "kb" / "tiny_geo" / "countries.tsv", "--description", "countries")
    assert code == 0 and out.startswith("geo: +46 triples")
    code, out, _ = run(capsys, "--kb", kb, "--json", "stats")
    stats = json.loads(out)
    assert code == 0
    assert stats["domains"]["tiny_movies"]["triples"] == 50 and stats["domains"]["geo"]["triples"] == 46
    assert "local" in stats["registered"]["stores"] and "neo4j" in stats["registered"]["stores"]
    code, out, _ = run(capsys, "--kb", kb, "stats")
    assert "tiny_movies" in out and "registered stores" in out


def test_errors_are_one_line_with_exit_code_1(tmp_path, capsys, fixtures_dir):
    code, out, err = run(capsys, "--kb", tmp_path / "absent", "stats")
    assert code == 1 and err.startswith("KBNotFound: ") and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.txt"
    bad.write_text("a|b|c\na|b\n", encoding="utf-8")
    code, out, err = run(capsys, "--kb", tmp_path / "kb", "load", "--domain", "d", "--triples", bad,
                         "--format", "pipe")
    assert code == 1 and err.startswith("LoadError: ") and "bad.txt line 2" in err
    code, out, err = run(capsys, "--kb", tmp_path / "kb", "load")
    assert code == 1 and err.startswith("ConfigError: ")
    # a pack with --domain used to load into the pack's own domain, ignoring the option
    code, out, err = run(capsys, "--kb", tmp_path / "kb", "load", fixtures_dir / "kb" / "tiny_geo", "--domain", "geo")
    assert code == 1 and err.startswith("ConfigError: a pack directory takes none of --domain")
    assert not (tmp_path / "kb").exists()  # failed loads into a new KB leave none behind
    code, out, err = run(capsys, "--kb", tmp_path / "kb", "eval", "no-such-benchmark", "--data", tmp_path)
    assert code == 1 and err.startswith("BenchmarkError: ") and "metaqa-1hop" in err
    assert run(capsys, "--kb", tmp_path / "kb", "load", fixtures_dir / "kb" / "tiny_geo")[0] == 0
    code, out, err = run(capsys, "--kb", tmp_path / "kb", "--store", "mongo", "stats")
    assert code == 1 and err.startswith("ConfigError: ")


def test_console_script_runs(tmp_path, fixtures_dir):
    exe = os.path.join(os.path.dirname(sys.executable), "kgllm")
    result = subprocess.run([exe, "--kb", str(tmp_path / "kb"), "--json", "load",
                             str(fixtures_dir / "kb" / "tiny_geo")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["domain"] == "tiny_geo"
    assert result.stderr == ""  # no progress bars when not on a terminal


def test_json_after_the_command_and_usage_errors(tmp_path, capsys, fixtures_dir):
    kb = tmp_path / "kb"
    assert run(capsys, "--kb", kb, "load", fixtures_dir / "kb" / "tiny_geo")[0] == 0
    code, out, _ = run(capsys, "--kb", kb, "stats", "--json")  # as well as before the command
    assert code == 0 and json.loads(out)["domains"]["tiny_geo"]["triples"] > 0
    code, out, _ = run(capsys, "--kb", kb, "ask", "Which region is [france] located in?", "--json")
    assert code == 0 and json.loads(out)["answers"]
    # usage errors: click's message on stderr, exit code 2, no traceback
    code, out, err = run(capsys, "--kb", kb, "stats", "--no-such-option")
    assert code == 2 and "No such option: --no-such-option" in err and "Traceback" not in err
    code, out, err = run(capsys, "--kb", kb, "ask")
    assert code == 2 and "Missing argument" in err
    code, out, err = run(capsys, "--kb", kb, "no-such-command")
    assert code == 2 and "No such command" in err


def test_failed_load_of_triples_with_documents_leaves_kb_unchanged(tmp_path, capsys, fixtures_dir):
    kb = tmp_path / "kb"
    assert run(capsys, "--kb", kb, "load", fixtures_dir / "kb" / "tiny_geo")[0] == 0
    before = run(capsys, "--kb", kb, "--json", "stats")[1]
    doc = tmp_path / "notes.txt"
    doc.write_bytes(b"France borders Spain.\n\xff\xfe\n")
    code, out, err = run(capsys, "--kb", kb, "load", "--domain", "geo", "--triples",
                         fixtures_dir / "kb" / "tiny_geo" / "countries.tsv", "--documents", doc)
    assert code == 1 and err.startswith("LoadError: ") and "notes.txt line 2" in err
    assert run(capsys, "--kb", kb, "--json", "stats")[1] == before


def test_export_import_round_trip_and_failed_import(tmp_path, capsys, fixtures_dir):
    kb = tmp_path / "kb"
    for pack in ("tiny_geo", "tiny_movies"):
        assert run(capsys, "--kb", kb, "load", fixtures_dir / "kb" / pack)[0] == 0
    code, out, _ = run(capsys, "--kb", kb, "export", tmp_path / "dump")
    assert code == 0 and out.strip() == f"exported 2 domain(s) to {tmp_path / 'dump'}: tiny_geo, tiny_movies"
    # a corrupt second domain: the first one, imported already, is removed again
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tmp_path / "dump", corrupt)
    folder = json.loads((corrupt / "manifest.json").read_text(encoding="utf-8"))["domains"]["tiny_movies"]["folder"]
    with open(corrupt / folder / "triples.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"head": "Kismet", "relation": "has_genre", "tail": "Comedy"}\n')
    code, out, err = run(capsys, "--kb", tmp_path / "copy", "import", corrupt)
    assert code == 1 and err.startswith("LoadError: ") and "sha256" in err
    assert not (tmp_path / "copy").exists()  # a failed import into a new KB leaves nothing behind
    code, out, _ = run(capsys, "--kb", tmp_path / "copy", "import", tmp_path / "dump")
    assert code == 0 and out.strip() == (f"imported 2 domain(s) from {tmp_path / 'dump'}: "
                                         "tiny_geo (+46 triples, +0 chunks), tiny_movies (+50 triples, +0 chunks)")
    original, copy = (json.loads(run(capsys, "--kb", path, "--json", "stats")[1])["domains"] for path in (kb, tmp_path / "copy"))
    assert {d: (s["entities"], s["triples"]) for d, s in copy.items()} == \
        {d: (s["entities"], s["triples"]) for d, s in original.items()}


def test_import_into_a_kb_holding_the_domains_needs_replace(tmp_path, capsys, fixtures_dir):
    kb = tmp_path / "kb"
    assert run(capsys, "--kb", kb, "load", fixtures_dir / "kb" / "tiny_geo")[0] == 0
    assert run(capsys, "--kb", kb, "export", tmp_path / "dump")[0] == 0
    code, out, err = run(capsys, "--kb", kb, "import", tmp_path / "dump")
    assert code == 1 and err.startswith("ConfigError: domain(s) 'tiny_geo' exist") and "--replace" in err
    code, out, _ = run(capsys, "--kb", kb, "import", tmp_path / "dump", "--replace")
    assert code == 0 and out.strip() == f"imported 1 domain(s) from {tmp_path / 'dump'}: tiny_geo (+46 triples, +0 chunks)"
    assert json.loads(run(capsys, "--kb", kb, "--json", "stats")[1])["domains"]["tiny_geo"]["triples"] == 46


def test_a_failed_import_replace_leaves_the_kb_as_it_was(tmp_path, capsys, fixtures_dir):
    kb = tmp_path / "kb"
    for pack in ("tiny_geo", "tiny_movies"):
        assert run(capsys, "--kb", kb, "load", fixtures_dir / "kb" / pack)[0] == 0
    assert run(capsys, "--kb", kb, "export", tmp_path / "dump")[0] == 0
    assert run(capsys, "--kb", kb, "load", "--domain", "other", "--triples",
               fixtures_dir / "kb" / "tiny_geo" / "countries.tsv", "--description", "not in the dump")[0] == 0
    before = json.loads(run(capsys, "--kb", kb, "--json", "stats")[1])["domains"]
    manifest = json.loads((tmp_path / "dump" / "manifest.json").read_text(encoding="utf-8"))
    triples = tmp_path / "dump" / manifest["domains"]["tiny_movies"]["folder"] / "triples.jsonl"
    with open(triples, "a", encoding="utf-8") as handle:  # the second domain fails its checksum
        handle.write('{"head": "Kismet", "relation": "has_genre", "tail": "Comedy"}\n')
    code, _, err = run(capsys, "--kb", kb, "import", tmp_path / "dump", "--replace")
    assert code == 1 and err.startswith("LoadError: ") and "sha256" in err
    assert json.loads(run(capsys, "--kb", kb, "--json", "stats")[1])["domains"] == before
    del manifest["domains"]["tiny_movies"]["sha256"]  # a malformed line, found half-way through the graph
    (tmp_path / "dump" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with open(triples, "a", encoding="utf-8") as handle:
        handle.write('{"head": "Kismet", "relation": "has_genre"}\n')
    code, _, err = run(capsys, "--kb", kb, "import", tmp_path / "dump", "--replace")
    assert code == 1 and err.startswith("LoadError: ") and "without 'tail'" in err
    assert json.loads(run(capsys, "--kb", kb, "--json", "stats")[1])["domains"] == before
    with kgllm.open(kb) as opened:
        assert opened.domain_info("other")["description"] == "not in the dump"
        assert opened.domain_info("tiny_movies")["description"] == before["tiny_movies"]["description"]


def test_choices_without_adapter_warn_with_the_cli_option(tmp_path, capsys, fixtures_dir):
    kb = tmp_path / "kb"
    assert run(capsys, "--kb", kb, "load", fixtures_dir / "kb" / "tiny_geo")[0] == 0
    code, out, _ = run(capsys, "--kb", kb, "ask", "Where do you keep milk?", "--choice", "fridge", "--choice", "oven")
    warnings = [line.strip() for line in out.splitlines() if line.strip().startswith("warning:")]
    assert code == 0 and len(warnings) == 1 and "--adapter" in warnings[0] and "model_dir" not in warnings[0]


def test_eval_all_refuses_a_model_it_would_ignore(tmp_path, capsys):
    code, out, err = run(capsys, "eval", "all", "--data-root", tmp_path, "--model", tmp_path / "m")
    assert code == 1 and err.startswith("ConfigError: 'kgllm eval all' takes no --model")


def test_eval_prints_the_warnings_of_the_report(capsys, fixtures_dir):
    code, out, _ = run(capsys, "eval", "countries-s1", "--data", fixtures_dir / "eval" / "countries_S1",
                       "--limit", 100)
    summary = json.loads(out)
    assert code == 0 and summary["n"] == 24
    assert summary["warnings"] == ["--limit 100 exceeds the 24 questions of the split; all were used"]


def test_eval_json_is_the_report_that_out_writes(capsys, fixtures_dir, tmp_path):
    # --json printed every prediction and latency besides the report JSON of DESIGN.md
    data = fixtures_dir / "eval" / "countries_S1"
    code, out, _ = run(capsys, "eval", "countries-s1", "--data", data, "--json", "--out", tmp_path / "r.json")
    printed = json.loads(out)
    assert code == 0 and printed == json.loads((tmp_path / "r.json").read_text())
    assert {"benchmark", "split", "n", "metrics", "latency_ms", "config", "kgllm_version", "seconds"} <= set(printed)
    assert "predictions" not in printed and "latencies_ms" not in printed
    shutil.copytree(data, tmp_path / "root" / "countries" / "countries_S1")
    code, out, _ = run(capsys, "--json", "eval", "all", "--data-root", tmp_path / "root", "--limit", 3)
    reports = {r["benchmark"]: r for r in json.loads(out)}
    assert code == 0 and reports["countries-s1"]["n"] == 3 and "predictions" not in reports["countries-s1"]


def test_eval_all_exits_1_when_a_benchmark_failed(capsys, fixtures_dir, tmp_path):
    # every benchmark that ran ended in an error, and the exit code was 0: a CI job would not notice
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", tmp_path / "root" / "countries" / "countries_S1")
    code, out, err = run(capsys, "eval", "all", "--data-root", tmp_path / "root", "-o", "max_length=9",
                         "--out", tmp_path / "all.json")
    assert code == 1 and err.startswith("BenchmarkError: 1 of ") and "countries-s1 (ConfigError: " in err
    reports = {r["benchmark"]: r for r in json.loads((tmp_path / "all.json").read_text())}
    assert "max_length" in reports["countries-s1"]["error"]  # the reports are written all the same


def test_failed_import_into_a_new_kb_leaves_nothing_and_export_to_a_file(tmp_path, capsys, fixtures_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text('{"format": "something-else"}', encoding="utf-8")
    code, out, err = run(capsys, "--kb", tmp_path / "new", "import", bad)
    assert code == 1 and err.startswith("LoadError: ") and "not a kgllm export" in err
    assert not (tmp_path / "new").exists()  # used to be left as an empty KB folder
    (tmp_path / "empty").mkdir()  # a folder made for the KB beforehand stays, empty
    assert run(capsys, "--kb", tmp_path / "empty", "import", bad)[0] == 1
    assert list((tmp_path / "empty").iterdir()) == []
    kb = tmp_path / "kb"
    assert run(capsys, "--kb", kb, "load", fixtures_dir / "kb" / "tiny_geo")[0] == 0
    assert run(capsys, "--kb", kb, "import", bad)[0] == 1
    assert json.loads(run(capsys, "--kb", kb, "--json", "stats")[1])["domains"]["tiny_geo"]["triples"] == 46
    target = tmp_path / "dump.txt"
    target.write_text("not a folder\n", encoding="utf-8")
    code, out, err = run(capsys, "--kb", kb, "export", target)
    assert code == 1 and err.strip() == (f"ConfigError: export directory {str(target)!r} is a file, not a "
                                         "directory; choose a new directory")


def test_plain_load_prints_the_warnings(tmp_path, capsys, fixtures_dir):
    # the geography pack's same_as pairs name the commonsense expert, not loaded yet
    code, out, _ = run(capsys, "--kb", tmp_path / "kb", "load", fixtures_dir.parents[1] / "graphs" / "geography")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].startswith("geography: +1110 triples")
    assert len(lines) == 2 and lines[1].startswith(
        "warning: same_as links name experts not in this KB (yet): commonsense; known experts: geography")


def test_usage_names_arguments_in_upper_case(capsys):
    for command, usage in (("ask", "QUESTION"), ("load", "[PACK]"), ("export", "OUT_DIR"), ("import", "DUMP_DIR"),
                           ("eval", "BENCHMARK"), ("train", "TARGET")):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and f" {command} [OPTIONS] {usage}" in out, out
        assert "{" not in next(line for line in out.splitlines() if "Usage:" in line)
    code, out, err = run(capsys, "ask")
    assert code == 2 and " ask [OPTIONS] QUESTION" in err and "Missing argument 'QUESTION'" in err


def test_eval_leaves_the_kb_option_alone(tmp_path, capsys, fixtures_dir):
    # MetaQA builds its own KB (a cache under the system temp dir); the user's KB, with its own movies
    # domain, must stay as it is, and the help says --kb is not used
    kb = tmp_path / "kb"
    assert run(capsys, "--kb", kb, "load", "--domain", "movies", "--triples",
               fixtures_dir / "kb" / "tiny_movies" / "kb.txt", "--format", "pipe")[0] == 0
    before = run(capsys, "--kb", kb, "--json", "stats")[1]
    code, out, _ = run(capsys, "--kb", kb, "--json", "eval", "metaqa-1hop", "--data", fixtures_dir / "metaqa",
                       "--limit", 2)
    assert code == 0 and json.loads(out)["config"]["kb"] != str(kb)
    assert run(capsys, "--kb", kb, "--json", "stats")[1] == before
    code, out, _ = run(capsys, "eval", "--help")
    assert code == 0 and "ignore --kb" in " ".join(out.split())


def test_countries_tail_outside_the_regions_is_an_error(tmp_path, capsys, fixtures_dir):
    data = tmp_path / "countries_S1"
    shutil.copytree(fixtures_dir / "eval" / "countries_S1", data)
    lines = (data / "valid.txt").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].split("\t")[0] + "\tlocatedin\tatlantis"
    (data / "valid.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "eval", "countries-s1", "--data", data)
    assert code == 1 and err.startswith(f"BenchmarkError: {data / 'valid.txt'} line 3: tail 'atlantis' is not a "
                                        "region of regions.list")


def test_model_of_another_kind_is_named(tmp_path, capsys, fixtures_dir):
    countries = fixtures_dir / "eval" / "countries_S1"
    scorer = fixtures_dir.parents[1] / "graphs" / "movies" / "scorer"
    code, out, err = run(capsys, "eval", "countries-s1", "--data", countries, "--model", scorer)
    assert code == 1 and err.strip() == (f"ModelError: {scorer} holds a path scorer (from 'kgllm train metaqa'), "
                                         "but 'kgllm eval countries-s1' needs a rule set (from 'kgllm train rules')")
    assert run(capsys, "train", "rules", "--data", countries, "--out", tmp_path / "rules")[0] == 0
    # csqa in a fresh process: its error is the one line on stderr, without torch_geometric's FutureWarning
    exe = os.path.join(os.path.dirname(sys.executable), "kgllm")
    result = subprocess.run([exe, "eval", "csqa", "--data", str(fixtures_dir / "mcqa" / "commonsenseqa"),
                             "--model", str(tmp_path / "rules")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr == (f"ModelError: {tmp_path / 'rules'} holds a rule set (from 'kgllm train rules'), but "
                             "'kgllm eval csqa' needs a multiple-choice adapter (from 'kgllm train csqa' or "
                             "'kgllm train obqa')\n")


def test_failed_first_load_leaves_no_kb_behind(tmp_path, capsys):
    triples = tmp_path / "ok.tsv"
    triples.write_text("a\tb\tc\n", encoding="utf-8")
    kb = tmp_path / "new-kb"
    code, _, err = run(capsys, "--kb", kb, "load", "--domain", "bad dom", "--triples", triples)
    assert code == 1 and err.startswith("ConfigError: ") and not kb.exists()
    assert run(capsys, "--kb", kb, "load", "--domain", "good", "--triples", triples)[0] == 0
    code, _, _ = run(capsys, "--kb", kb, "load", "--domain", "bad dom", "--triples", triples)
    assert code == 1 and (kb / "kgllm.json").is_file()  # an existing KB stays, unchanged
    code, out, _ = run(capsys, "--kb", kb, "--json", "stats")
    assert code == 0 and set(json.loads(out)["domains"]) == {"good"}


def test_unreachable_neo4j_is_one_line_on_stderr(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "kgllm")
    uri = f"neo4j://127.0.0.1:{port}"  # routing URIs made the driver log its own line first
    result = subprocess.run([exe, "--kb", str(tmp_path / "kb"), "--store", "neo4j", "--neo4j-uri", uri, "load",
                             "--domain", "d", "--triples", str(tmp_path / "none.tsv")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith(f"StoreUnavailable: cannot reach Neo4j at {uri}")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_load_of_triples_with_documents_reports_both(tmp_path, capsys, fixtures_dir):
    kb = tmp_path / "kb"
    notes, more = tmp_path / "notes.txt", tmp_path / "more.txt"
    notes.write_text("France borders Spain.\n", encoding="utf-8")
    more.write_text("Spain borders Portugal.\n", encoding="utf-8")
    code, out, _ = run(capsys, "--kb", kb, "--json", "load", "--domain", "geo", "--triples",
                       fixtures_dir / "kb" / "tiny_geo" / "countries.tsv", "--documents", notes)
    report = json.loads(out)  # the documents' report used to overwrite the triples' count with 0
    assert code == 0 and (report["triples_added"], report["chunks_added"], report["triples"]) == (46, 1, 46)
    # `--documents FILE FILE` took the second file for a pack directory
    code, out, err = run(capsys, "--kb", kb, "load", "--domain", "geo", "--documents", notes, more)
    assert code == 1 and err.strip() == (f"ConfigError: {str(more)!r} is not a pack directory; to load several "
                                         f"documents, give each with its own --documents (--documents {notes} "
                                         f"--documents {more})")
    code, out, _ = run(capsys, "--kb", kb, "load", "--domain", "geo", "--documents", notes, "--documents", more)
    assert code == 0 and out.startswith("geo: +0 triples, +1 chunks")


def test_load_of_triples_with_documents_is_one_step(tmp_path, capsys, fixtures_dir):
    # the triples were loaded first and kept when the documents then failed to be written
    kb = tmp_path / "kb"
    notes = tmp_path / "notes.txt"
    notes.write_text("France borders Spain.\n", encoding="utf-8")
    countries = fixtures_dir / "kb" / "tiny_geo" / "countries.tsv"
    assert run(capsys, "--kb", kb, "load", "--domain", "first", "--triples", countries)[0] == 0
    (kb / "docs").write_text("a file where the documents folder goes", encoding="utf-8")
    code, _, err = run(capsys, "--kb", kb, "--json", "load", "--domain", "geo", "--triples", countries,
                       "--documents", notes)
    assert code == 1 and "docs" in err
    code, out, _ = run(capsys, "--kb", kb, "--json", "stats")
    assert code == 0 and list(json.loads(out)["domains"]) == ["first"]


def test_load_documents_with_chunking(tmp_path, capsys):
    from kgllm.loaders import CHUNKINGS

    kb = tmp_path / "kb"
    facts = tmp_path / "facts.txt"
    facts.write_text('"the sun is a star"\n"water boils at 100 C"\n"a magnet attracts iron"\n', encoding="utf-8")
    code, out, _ = run(capsys, "--kb", kb, "--json", "load", "--domain", "para", "--documents", facts)
    assert code == 0 and json.loads(out)["chunks_added"] == 1  # one paragraph
    code, out, _ = run(capsys, "--kb", kb, "--json", "load", "--domain", "lines", "--documents", facts,
                       "--chunking", "line")
    assert code == 0 and json.loads(out)["chunks_added"] == 3  # one chunk per line
    code, out, err = run(capsys, "--kb", kb, "load", "--domain", "lines", "--documents", facts, "--chunking", "word")
    assert code == 1 and err.startswith("LoadError: unknown chunking 'word'")
    code, out, err = run(capsys, "--kb", kb, "load", "--domain", "lines", "--chunking", "line")
    assert code == 1 and err.startswith("ConfigError: --chunking says how --documents are cut")
    import typer.main

    from kgllm.cli import app

    (option,) = [p for p in typer.main.get_command(app).commands["load"].params if p.name == "chunking"]  # type: ignore[attr-defined]
    assert all(name in option.help for name in CHUNKINGS)  # the help lists the Python API's choices


def test_help_shows_every_option_text(capsys):
    # rich markup took "[the bundled graphs/]" for a style tag: `demo --help` read "Folder of domain packs ."
    import typer.main

    from kgllm.cli import app

    group = typer.main.get_command(app)
    for name, command in [("", group), *group.commands.items()]:  # type: ignore[attr-defined]
        code, out, _ = run(capsys, *([name] if name else []), "--help")
        shown = " ".join(out.replace("│", " ").split())
        for param in command.params:
            text = " ".join((getattr(param, "help", None) or "").split())
            assert code == 0 and text in shown, (name, text)


def test_eval_help_says_what_it_prints(capsys):
    code, out, _ = run(capsys, "eval", "--help")
    shown = " ".join(out.replace("│", " ").split())
    # it said "prints the report JSON" although without --json it prints a summary
    assert code == 0 and "prints a JSON summary (metrics, latency, warnings), with --json the whole report JSON" in shown


def test_version_honours_json(capsys):
    import kgllm

    code, out, _ = run(capsys, "version")
    assert code == 0 and out.strip() == kgllm.__version__
    for args in (("--json", "version"), ("version", "--json")):  # printed the bare version, not JSON
        code, out, _ = run(capsys, *args)
        assert code == 0 and json.loads(out) == {"version": kgllm.__version__}


def test_json_with_a_kb_folder_named_like_a_command(tmp_path, capsys, fixtures_dir, monkeypatch):
    # `--kb demo` names a folder: --json was moved before "demo", taken as the value of --kb, and the
    # command run was `demo` with an extra argument "stats" (usage error, exit 2)
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "--kb", "demo", "load", fixtures_dir / "kb" / "tiny_geo")[0] == 0
    for args in (("--kb", "demo", "stats", "--json"), ("--kb", "demo", "--json", "stats"),
                 ("--kb", "demo", "--store", "local", "stats", "--json")):
        code, out, err = run(capsys, *args)
        assert code == 0 and json.loads(out)["domains"]["tiny_geo"]["triples"] == 46, err


def test_demo_without_packs_is_an_error(tmp_path, capsys):
    # a --graphs folder without packs used to exit 0 silently, leaving an empty KB behind
    (tmp_path / "empty").mkdir()
    for graphs in (tmp_path / "empty", tmp_path / "absent"):
        code, out, err = run(capsys, "--kb", tmp_path / "kb", "demo", "--graphs", graphs)
        assert code == 1 and err.strip() == (f"ConfigError: --graphs {str(graphs)!r} holds no domain packs "
                                             "(folders with a manifest.yaml)")
        assert not (tmp_path / "kb").exists()


def test_paths_that_cannot_be_written_are_one_line(tmp_path, capsys, fixtures_dir):
    # an output path under a file printed a traceback
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder\n", encoding="utf-8")
    code, out, err = run(capsys, "eval", "countries-s1", "--data", fixtures_dir / "eval" / "countries_S1",
                         "--limit", 2, "--out", blocker / "report.json")
    assert code == 1 and err.startswith("ConfigError: --out ") and len(err.strip().splitlines()) == 1
    assert "is a file, not a folder" in err and not out  # refused before the run
    code, out, err = run(capsys, "--kb", blocker / "kb", "load", fixtures_dir / "kb" / "tiny_geo")
    assert code == 1 and err.startswith("NotADirectoryError: ") and len(err.strip().splitlines()) == 1


def test_debug_prints_the_traceback_instead_of_one_line(tmp_path, capsys, fixtures_dir, monkeypatch):
    # the one line `ErrorType: message` hid where an error that is really a bug came from
    monkeypatch.delenv("KGLLM_DEBUG", raising=False)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder\n", encoding="utf-8")
    absent = ("--kb", tmp_path / "absent", "stats")
    unwritable = ("--kb", blocker / "kb", "load", fixtures_dir / "kb" / "tiny_geo")
    for args, frame, error in ((("--debug", *absent), "kb.py", "KBNotFound: "),
                               ((*absent, "--debug"), "kb.py", "KBNotFound: "),
                               ((*unwritable, "--debug"), "local.py", "NotADirectoryError: ")):
        code, out, err = run(capsys, *args)
        assert code == 1 and err.startswith("Traceback (most recent call last):") and frame in err, err
        assert error in err.strip().splitlines()[-1]
    monkeypatch.setenv("KGLLM_DEBUG", "1")
    code, out, err = run(capsys, *absent)
    assert code == 1 and err.startswith("Traceback (most recent call last):")
    assert "KBNotFound: " in err.strip().splitlines()[-1]
    monkeypatch.setenv("KGLLM_DEBUG", "0")
    code, out, err = run(capsys, *absent)
    assert code == 1 and err.startswith("KBNotFound: ") and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "eval", "countries-s1", "--data", tmp_path, "-o", "--debug")  # the value of -o
    assert code == 1 and err.strip() == "ConfigError: expected KEY=VALUE for --option, got '--debug'"


def test_nothing_in_the_library_imports_the_cli():
    # DESIGN.md: cli.py sits on top and nothing imports it; kgllm/demo.py imported format_answer from it
    import ast
    from pathlib import Path

    package = Path(kgllm.__file__).parent
    importers = []
    for path in sorted(package.rglob("*.py")):
        if path.parent == package and path.name.startswith("cli_"):  # the CLI's own commands (cli_benchmarks)
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            if "kgllm.cli" in names:
                importers.append(str(path.relative_to(package)))
    assert importers == []
