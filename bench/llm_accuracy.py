"""Answer accuracy of kgllm with a language model writing the text, on MetaQA and CommonsenseQA.

For each question the graph pipeline answers first (``kb.ask``, extractive), then the LLM writes the
answer from the fused, cited context (:func:`kgllm.fusion.context.generate_answer`). Reported per case:

- ``graph_hits@1``: the pipeline's top answer is gold (independent of the LLM);
- ``llm_text_accuracy``: a gold answer appears in the LLM's text (MetaQA), or the LLM picks the gold
  letter (CSQA: ``llm_accuracy``);
- ``extractive_text_accuracy``: the same test on the extractive text (MetaQA);
- ``llm_only_accuracy`` (``--baseline``): the LLM alone, without the knowledge graph;
- ``cited_rate`` / ``invented_citation_rate``: texts citing a fact / citing one that was not given;
- prompt and completion tokens per question, LLM calls, latency.

It needs a real model: ``--llm hf:PATH`` runs on a CUDA GPU (``--allow-cpu`` to force the CPU), and
``--llm openai:MODEL@URL`` needs the server to answer. Without one it writes a ``skipped`` record and
exits 0. MetaQA questions are the held-out half of dev (the half learned components do not train on).

Usage::

    python bench/llm_accuracy.py --llm hf:/models/Qwen2.5-7B-Instruct --limit 500
    python bench/llm_accuracy.py --llm openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1 \\
        --cases metaqa-1hop,metaqa-2hop,csqa --baseline

Writes ``bench/results/llm_accuracy.json`` (see ``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CASES = ("metaqa-1hop", "metaqa-2hop", "metaqa-3hop", "csqa")
MC_TEMPLATE = ("{context}\n\nQuestion: {question}\nChoices:\n{choices}\n"
               "Reply with the letter of the correct choice first, then a short reason citing facts as [n].")
_LETTER = re.compile(r"\b([A-E])\b")


def default_data() -> Path:
    """``$KGLLM_DATA``, else the shared data folder beside the repository."""
    return Path(os.environ.get("KGLLM_DATA", REPO.parent / "shared" / "data"))


def skip_reason(spec: str | None, allow_cpu: bool) -> str | None:
    """Why no LLM is available to measure with, or ``None`` when one is."""
    if not spec:
        return "no --llm given (hf:PATH on a GPU machine, or openai:MODEL@URL)"
    from kgllm.llm import parse_spec

    kind, args = parse_spec(spec)
    if kind == "extractive":
        return "the extractive backend has no LLM to measure"
    if kind == "hf":
        import torch

        if not torch.cuda.is_available() and not allow_cpu:
            return "no CUDA GPU for hf: (pass --allow-cpu to run on the CPU anyway)"
    return None


def gold_in_text(text: str, gold: list[str]) -> bool:
    from kgllm.eval.metrics import normalize_answer

    norm = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(g)} " in norm for g in gold if normalize_answer(g))


def first_letter(text: str) -> str | None:
    match = _LETTER.search(text.strip()[:40])
    return match.group(1) if match else None


def summary(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, float]:
    return {k: round(sum(r[k] for r in rows) / max(1, len(rows)), 4) for k in keys if rows and k in rows[0]}


def run_metaqa(name: str, data: Path, llm: Any, args: argparse.Namespace) -> dict[str, Any]:
    from kgllm.eval.metaqa import DOMAIN, in_training_half, metaqa_kb, read_questions
    from kgllm.eval.metrics import latency_summary
    from kgllm.fusion.context import generate_answer

    hops = int(name.split("-")[1][0])
    questions = [q for q in read_questions(data / "metaqa" / f"{hops}-hop" / "qa_dev.txt")
                 if not in_training_half(hops, q.line)][: args.limit]
    kb = metaqa_kb(data / "metaqa", Path(args.kb) if args.kb else None)
    relation_text = kb.relation_text(DOMAIN)
    rows, latencies = [], []
    for q in questions:
        graph = kb.ask(q.question, domain=DOMAIN, llm=None, top_k=10)
        started = time.perf_counter()
        answer = generate_answer(graph, llm, relation_text=relation_text, max_tokens=args.max_tokens)
        latencies.append((time.perf_counter() - started) * 1000)
        row = {"graph_hits@1": float(bool(graph.answers) and graph.answers[0].name in q.answers),
               "llm_text_accuracy": float(gold_in_text(answer.text, q.answers)),
               "extractive_text_accuracy": float(gold_in_text(graph.text.split("\n")[0], q.answers)),
               "cited_rate": float(bool(re.search(r"\[\d+", answer.text))),
               "invented_citation_rate": float(any("cited [" in w for w in answer.warnings)),
               "prompt_tokens": answer.tokens.get("prompt", 0),
               "completion_tokens": answer.tokens.get("completion", 0), "llm_calls": answer.llm_calls}
        if args.baseline:
            alone = llm.generate(f"Answer briefly: {q.question.replace('[', '').replace(']', '')}",
                                 max_tokens=args.max_tokens)
            row["llm_only_accuracy"] = float(gold_in_text(alone.text, q.answers))
        rows.append(row)
    kb.close()
    keys = ["graph_hits@1", "llm_text_accuracy", "extractive_text_accuracy", "llm_only_accuracy", "cited_rate",
            "invented_citation_rate", "prompt_tokens", "completion_tokens", "llm_calls"]
    return {"name": name, "n": len(rows), "metrics": summary(rows, keys), "latency_ms": latency_summary(latencies)}


def run_csqa(data: Path, llm: Any, args: argparse.Namespace) -> dict[str, Any]:
    from kgllm.eval.metrics import latency_summary
    from kgllm.fusion.context import generate_answer
    from kgllm.types import Answer

    kb = None
    if args.csqa_kb:  # a KB holding ConceptNet (e.g. built by `kgllm eval csqa`): ground the question in it
        import kgllm

        kb = kgllm.open(args.csqa_kb, create=False)
    rows, latencies = [], []
    with (data / "commonsenseqa" / "dev.jsonl").open(encoding="utf-8") as handle:
        items = [json.loads(line) for line in itertools.islice(handle, args.limit)]
    for item in items:
        stem = item["question"]["stem"]
        choices = [c["text"] for c in item["question"]["choices"]]
        graph = kb.ask(stem, choices=choices, llm=None) if kb is not None else Answer(question=stem)
        started = time.perf_counter()
        answer = generate_answer(graph, llm, template=MC_TEMPLATE, choices=choices, max_tokens=args.max_tokens)
        latencies.append((time.perf_counter() - started) * 1000)
        row = {"llm_accuracy": float(first_letter(answer.text) == item["answerKey"]),
               "prompt_tokens": answer.tokens.get("prompt", 0),
               "completion_tokens": answer.tokens.get("completion", 0), "llm_calls": answer.llm_calls}
        if args.baseline:
            listed = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))
            alone = llm.generate(f"Question: {stem}\nChoices:\n{listed}\nReply with the letter of the correct choice.",
                                 max_tokens=8)
            row["llm_only_accuracy"] = float(first_letter(alone.text) == item["answerKey"])
        rows.append(row)
    if kb is not None:
        kb.close()
    keys = ["llm_accuracy", "llm_only_accuracy", "prompt_tokens", "completion_tokens", "llm_calls"]
    return {"name": "csqa", "n": len(rows), "grounded": kb is not None, "metrics": summary(rows, keys),
            "latency_ms": latency_summary(latencies)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", help="hf:NAME_OR_PATH or openai:MODEL@BASE_URL")
    parser.add_argument("--data", type=Path, default=default_data(), help="the benchmark data root")
    parser.add_argument("--cases", default="metaqa-1hop,metaqa-2hop,csqa", help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--limit", type=int, default=200, help="questions per case")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--kb", help="KB directory for MetaQA (default: a reused temporary one)")
    parser.add_argument("--csqa-kb", help="a KB with ConceptNet to ground CSQA questions (default: LLM + choices)")
    parser.add_argument("--baseline", action="store_true", help="also measure the LLM alone, without the graph")
    parser.add_argument("--allow-cpu", action="store_true", help="run hf: models on the CPU")
    parser.add_argument("--no-cache", action="store_true", help="do not use the on-disk LLM cache")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "llm_accuracy.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    record: dict[str, Any] = {"benchmark": "llm_accuracy", "llm": args.llm, "limit": args.limit,
                              "platform": platform.platform(), "python": sys.version.split()[0]}
    reason = skip_reason(args.llm, args.allow_cpu)
    llm = None
    if reason is None:
        from kgllm.exceptions import KGLLMError
        from kgllm.llm import resolve_llm

        try:
            llm = resolve_llm(args.llm, cache=False if args.no_cache else True)
            llm.generate("Reply with OK.", max_tokens=2)  # reachable and working, or skip
        except KGLLMError as exc:
            reason = f"the LLM is not available: {exc}"
    if reason is not None:
        record["skipped"] = reason
        print(f"skipped: {reason}")
    else:
        started = time.perf_counter()
        record["device"] = getattr(llm, "device", None)
        record["cases"] = []
        for case in cases:
            result = run_csqa(args.data, llm, args) if case == "csqa" else run_metaqa(case, args.data, llm, args)
            record["cases"].append(result)
            print(json.dumps(result))
        record["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
