"""``kgllm demo`` on the bundled packs: every example routed to its pack, and a cross-expert chain."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from kgllm.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_demo_routes_every_example_and_crosses_experts(tmp_path, capsys):
    assert main(["--kb", str(tmp_path / "kb"), "--json", "demo"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {r["domain"] for r in result["loaded"]} == {"movies", "geography", "medicine", "commonsense", "science"}
    single = [q for q in result["asked"] if "+" not in q["expected_domain"]]
    assert len(single) >= 15
    assert all(q["routed_to"] == q["expected_domain"] for q in single), [
        (q["question"], q["routed_to"]) for q in single if q["routed_to"] != q["expected_domain"]]
    assert all(q["answers"] for q in single)
    [cross] = [q for q in result["asked"] if "+" in q["expected_domain"]]
    assert cross["experts_on_top_path"] == ["geography", "movies"]
    assert "-[same as]->" in cross["paths"][0]
    # the README's pack table gives what is stored (geography's source file has one duplicate line)
    assert main(["--kb", str(tmp_path / "kb"), "--json", "stats"]) == 0
    stored = {name: (info["triples"], info["entities"], info["chunks"])
              for name, info in json.loads(capsys.readouterr().out)["domains"].items()}
    table = {}
    for row in re.findall(r"^\| (\w+) \| [^|]+ \| ([\d,]+) \| ([\d,]+) \| ([\d,]+|–) \|$",
                          README.read_text(encoding="utf-8"), flags=re.MULTILINE):
        table[row[0]] = tuple(int(n.replace(",", "")) if n != "–" else 0 for n in row[1:])
    assert table == stored


def _stored(capsys, kb: Path) -> dict:
    assert main(["--kb", str(kb), "--json", "stats"]) == 0
    return json.loads(capsys.readouterr().out)["domains"]


def test_a_failed_demo_leaves_an_existing_kb_as_it_was(tmp_path, capsys, fixtures_dir):
    # a bad file in the second pack failed the demo after the first pack had been loaded into the KB
    graphs = tmp_path / "graphs"
    shutil.copytree(fixtures_dir / "kb" / "tiny_geo", graphs / "a_geo")
    shutil.copytree(fixtures_dir / "kb" / "tiny_movies", graphs / "b_movies")
    with (graphs / "b_movies" / "kb.txt").open("a", encoding="utf-8") as handle:
        handle.write("Kismet|directed_by\n")
    kb = tmp_path / "kb"
    assert main(["--kb", str(kb), "load", "--domain", "notes", "--triples",
                 str(fixtures_dir / "kb" / "tiny_geo" / "countries.tsv")]) == 0
    capsys.readouterr()
    before = _stored(capsys, kb)
    assert main(["--kb", str(kb), "demo", "--graphs", str(graphs)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"LoadError: {graphs / 'b_movies' / 'kb.txt'} line 51: expected 3 fields")
    assert _stored(capsys, kb) == before
    # an invalid manifest of a later pack is found before anything is loaded
    shutil.copy(fixtures_dir / "kb" / "tiny_movies" / "kb.txt", graphs / "b_movies" / "kb.txt")
    with (graphs / "b_movies" / "manifest.yaml").open("a", encoding="utf-8") as handle:
        handle.write("bogus: 1\n")
    assert main(["--kb", str(kb), "demo", "--graphs", str(graphs)]) == 1
    assert "unknown key 'bogus'" in capsys.readouterr().err and _stored(capsys, kb) == before
