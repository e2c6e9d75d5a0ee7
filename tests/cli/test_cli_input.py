"""The ``kgllm`` command on bad or unusual input: every error is one line naming the file, exits 1 and
leaves nothing behind; options that would be silently dropped are errors."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

from kgllm.cli import main


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_truncated_gzip_is_one_line_naming_the_file(tmp_path):
    # a truncated .gz raised EOFError, which click turned into "Aborted." (no file, no line)
    text = "".join(f"e{i}\tr{i * 7919 % 10007}\tf{i}\n" for i in range(20000))
    data = gzip.compress(text.encode("utf-8"))
    path = tmp_path / "big.tsv.gz"
    path.write_bytes(data[: len(data) // 4])
    exe = os.path.join(os.path.dirname(sys.executable), "kgllm")
    result = subprocess.run([exe, "--kb", str(tmp_path / "kb"), "load", "--domain", "d", "--triples", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"LoadError: {path} line ") and len(result.stderr.strip().splitlines()) == 1
    assert "truncated gzip file" in result.stderr and "Aborted" not in result.stderr
    assert not (tmp_path / "kb").exists()


def test_format_or_order_without_triples_is_an_error(tmp_path, capsys):
    # with --documents only, --format and --order were dropped without a word and the load went ahead
    doc = tmp_path / "notes.txt"
    doc.write_text("Paris is the capital of France.\n", encoding="utf-8")
    kb = tmp_path / "kb"
    for option, value in (("--format", "csv"), ("--order", "rht")):
        code, out, err = run(capsys, "--kb", kb, "load", "--domain", "d", "--documents", doc, option, value)
        assert code == 1 and out == ""
        assert err.strip() == f"ConfigError: {option} {value!r} says how the --triples file is read; give it with --triples"
    assert not kb.exists()


def test_empty_question_is_an_error(tmp_path, capsys, fixtures_dir):
    # `kgllm ask ""` printed "No question was asked." and exited 0
    kb = tmp_path / "kb"
    assert run(capsys, "--kb", kb, "load", fixtures_dir / "kb" / "tiny_geo")[0] == 0
    for question in ("", "   "):
        code, out, err = run(capsys, "--kb", kb, "--json", "ask", question)
        assert code == 1 and out == "" and err.startswith(f"ConfigError: empty question {question!r}")
        assert len(err.strip().splitlines()) == 1


def test_error_message_with_a_line_break_is_printed_on_one_line(tmp_path, capsys):
    # a message quoting a value with a line break (here the --kb path) came out as two lines
    code, out, err = run(capsys, "--kb", tmp_path / "my\nkb", "stats")
    assert code == 1 and out == ""
    assert err == f"KBNotFound: no knowledge base at {tmp_path / 'my'} kb\n"


def test_failed_first_load_into_a_nested_kb_path_leaves_no_folders(tmp_path, capsys):
    # `--kb new/a/kb` removed kb/ after a failed load but left new/ and new/a/ behind
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\tc\na\tb\n", encoding="utf-8")
    (tmp_path / "there").mkdir()
    for kb in (tmp_path / "new" / "a" / "kb", tmp_path / "there" / "a" / "kb"):
        code, out, err = run(capsys, "--kb", kb, "--json", "load", "--domain", "d", "--triples", bad)
        assert code == 1 and out == "" and err.startswith(f"LoadError: {bad} line 2: ")
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "there").is_dir() and list((tmp_path / "there").iterdir()) == []
    code, out, _ = run(capsys, "--kb", tmp_path / "new" / "a" / "kb", "--json", "import", tmp_path / "there")
    assert code == 1 and not (tmp_path / "new").exists()
    good = tmp_path / "good.tsv"
    good.write_text("a\tb\tc\n", encoding="utf-8")
    code, out, _ = run(capsys, "--kb", tmp_path / "new" / "a" / "kb", "--json", "load", "--domain", "d",
                       "--triples", good)
    assert code == 0 and json.loads(out)["triples_added"] == 1


def test_training_numbers_out_of_range_are_one_line_errors(tmp_path, capsys, fixtures_dir):
    # --seed -1 reached scikit-learn, -o lr=-1 torch's optimizer: each ended in a Python traceback
    routing = tmp_path / "routing.jsonl"
    rows = [{"question": f"Which region is [{c}] located in?", "domain": "geography"} for c in ("france", "chad")]
    rows += [{"question": f"Who directed [{f}]?", "domain": "movies"} for f in ("Kismet", "Heat")]
    routing.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    seed = "seed must be a whole number at least 0 and at most 4294967295"
    cases = [(("router", "--data", routing, "--seed", -1), f"{seed}, got -1"),
             (("router", "--data", routing, "-o", "seed=4294967296"), f"{seed}, got 4294967296"),
             (("router", "--data", routing, "-o", "c=-1"), "c must be above 0, got -1"),
             (("metaqa", "--data", fixtures_dir / "metaqa", "-o", "lr=-1", "--epochs", 1), "lr must be above 0, got -1"),
             (("metaqa", "--data", fixtures_dir / "metaqa", "--lr", "nan"), "lr must be above 0, got nan"),
             (("metaqa", "--data", fixtures_dir / "metaqa", "--lr", "inf"), "lr must be above 0, got inf"),
             (("metaqa", "--data", fixtures_dir / "metaqa", "-o", "hidden=abc"), "hidden must be a whole number at "
                                                                                 "least 1, got 'abc'"),
             (("metaqa", "--data", fixtures_dir / "metaqa", "-o", "epochs=0"), "epochs must be a whole number at "
                                                                               "least 1, got 0"),
             (("rules", "--data", fixtures_dir / "eval" / "countries_S1", "-o", "max_length=4"),
              "max_length must be a whole number at least 1 and at most 3, got 4")]
    for args, message in cases:
        code, out, err = run(capsys, "--json", "train", *args, "--out", tmp_path / "model")
        assert (code, out, err) == (1, "", f"ConfigError: {message}\n")
        assert not (tmp_path / "model").exists()
    code, out, _ = run(capsys, "--json", "train", "router", "--data", routing, "--seed", 7, "--out", tmp_path / "model")
    assert code == 0 and json.loads(out)["n"] == 4


def test_multiple_choice_refuses_the_options_it_would_drop(tmp_path, capsys, fixtures_dir):
    # with --choice the choices are ranked by similarity (or --adapter): --llm, --model and --explore were
    # accepted and silently not used
    kb = tmp_path / "kb"
    assert run(capsys, "--kb", kb, "load", fixtures_dir / "kb" / "tiny_geo")[0] == 0
    question = ["ask", "Which region is France in?", "--choice", "europe", "--choice", "asia"]
    code, out, err = run(capsys, "--kb", kb, *question, "--llm", "openai:m@http://127.0.0.1:9", "--explore")
    assert (code, out) == (1, "") and err.startswith("ConfigError: a multiple-choice question (--choice) is answered "
                                                     "by --adapter or by similarity, which take none of --llm, --explore")
    code, out, err = run(capsys, "--kb", kb, *question, "--model", fixtures_dir.parents[1] / "graphs" / "movies" / "scorer")
    assert (code, out) == (1, "") and "which take none of --model; leave it out" in err
    code, out, _ = run(capsys, "--kb", kb, "--json", *question, "--llm", "extractive")
    assert code == 0 and {a["name"] for a in json.loads(out)["answers"]} == {"europe", "asia"}


def test_files_whose_names_are_not_utf8_load(tmp_path, capsys):
    # the file name went into the provenance with surrogates: a traceback from the store's JSON writer
    triples = tmp_path / os.fsdecode(b"caf\xe9.tsv")
    triples.write_text("Paris\tcapital_of\tFrance\n", encoding="utf-8")
    document = tmp_path / os.fsdecode(b"d\xe9.txt")
    document.write_text("Paris is the capital of France.\n", encoding="utf-8")
    kb = tmp_path / "kb"
    code, out, _ = run(capsys, "--kb", kb, "--json", "load", "--domain", "d", "--triples", triples,
                       "--documents", document)
    assert code == 0 and json.loads(out)["triples_added"] == 1 and json.loads(out)["chunks_added"] == 1
    code, out, _ = run(capsys, "--kb", kb, "--json", "ask", "What is [Paris] the capital of?")
    answer = json.loads(out)
    assert code == 0 and answer["facts"][0]["source"] == "caf\ufffd.tsv"
    assert answer["chunks"][0]["source"] == "d\ufffd.txt"


def test_an_empty_description_is_refused_and_keeps_the_domains(tmp_path, capsys, fixtures_dir):
    # `--description ""` (an unset shell variable) replaced the domain's description, used for routing
    kb = tmp_path / "kb"
    triples = fixtures_dir / "kb" / "tiny_geo" / "countries.tsv"
    assert run(capsys, "--kb", kb, "load", "--domain", "geo", "--triples", triples, "--description", "countries")[0] == 0
    for blank in ("", "  "):
        code, out, err = run(capsys, "--kb", kb, "load", "--domain", "geo", "--triples", triples, "--description", blank)
        assert (code, out) == (1, "") and err.startswith(f"ConfigError: empty --description {blank!r}; ")
    code, out, _ = run(capsys, "--kb", kb, "--json", "stats")
    assert code == 0 and json.loads(out)["domains"]["geo"]["description"] == "countries"


def test_eval_all_with_both_data_folders_is_an_error(tmp_path, capsys, fixtures_dir):
    # --data was silently ignored when --data-root was given too
    code, out, err = run(capsys, "eval", "all", "--data-root", tmp_path, "--data", fixtures_dir / "eval")
    assert (code, out) == (1, "") and err.startswith("ConfigError: 'kgllm eval all' takes one data folder")
    code, _, err = run(capsys, "eval", "umls", "--data-root", tmp_path)
    assert code == 1 and "--data-root" in err and "is for 'kgllm eval all'" in err
