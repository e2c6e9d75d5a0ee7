"""``kgllm demo`` on the bundled packs: every example routed to its pack, and a cross-expert chain."""

from __future__ import annotations

import json
import re
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
