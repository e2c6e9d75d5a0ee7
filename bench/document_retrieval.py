"""Document retrieval inside ``ask``: does the retrieve stage find the fact an OpenBookQA question rests on?

Loads the bundled science pack (the 1,326 open-book facts as line chunks, plus its extracted triples)
into a fresh knowledge base, asks every OpenBookQA dev question through ``kb.ask_many(...,
domain="science")`` (extractive, no LLM) and checks whether the question's gold fact (``fact1`` of
``dev_complete.jsonl``) is among ``Answer.chunks``: Recall@1 and Recall@4 (the stage keeps 4 chunks),
once for the question stem alone and once for the stem followed by its answer choices. Also reports
the retrieve stage's time per question (``Answer.timings["retrieve"]``). Writes
``bench/results/document_retrieval.json``.

    python bench/document_retrieval.py --data ../shared/data/openbookqa [--limit N] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchjson import machine_info, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def normalized(text: str) -> str:
    """Lower case, no quotes or punctuation, single spaces: how a chunk is matched to a gold fact."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def read_questions(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def recall(answers: list[Any], gold: list[str]) -> dict[str, float]:
    found = [[normalized(chunk.text) for chunk in answer.chunks] for answer in answers]
    return {f"recall@{k}": round(float(np.mean([g in f[:k] for f, g in zip(found, gold, strict=True)])), 4)
            for k in (1, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the OpenBookQA folder (dev_complete.jsonl)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=RESULTS / "document_retrieval.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    import kgllm

    torch.set_num_threads(args.threads)
    rows = read_questions(args.data / "dev_complete.jsonl", args.limit)
    gold = [normalized(row["fact1"]) for row in rows]
    stems = [row["question"]["stem"] for row in rows]
    with_choices = [f"{stem} {' '.join(c['text'] for c in row['question']['choices'])}"
                    for stem, row in zip(stems, rows, strict=True)]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, kgllm.open(Path(tmp) / "kb") as kb:
        started = time.perf_counter()
        kb.load(ROOT / "graphs" / "science")
        kb.ask("What is a source of energy for plants?", domain="science")  # builds the chunk index once
        result["setup_s"] = round(time.perf_counter() - started, 1)
        chunks = {normalized(chunk.text) for chunk in kb.chunks("science")}
        result["gold_in_documents"] = round(float(np.mean([g in chunks for g in gold])), 4)
        for name, questions in (("stem", stems), ("stem_and_choices", with_choices)):
            started = time.perf_counter()
            answers = kb.ask_many(questions, domain="science")
            retrieve_ms = [answer.timings.get("retrieve", 0.0) for answer in answers]
            result[name] = {**recall(answers, gold),
                            "retrieve_ms_p50": round(float(np.percentile(retrieve_ms, 50)), 2),
                            "wall_s": round(time.perf_counter() - started, 1)}
            print(name, result[name], file=sys.stderr)
    write_result(args.out, {
        "benchmark": "document_retrieval", "machine": machine_info(), "n": len(rows), "threads": args.threads,
        "chunks_kept": 4, "results": result})


if __name__ == "__main__":
    main()
