"""Training a graph soft prompt (:mod:`kgllm.fusion.soft_prompt`) from question/answer pairs.

Each training question is asked of the knowledge base exactly as ``ask`` will ask it later, with a
recording stand-in for the LM: what the LM would be given (the cited-facts prompt, rendered by the LM's
own tokenizer and budgeted to its context) and the answer's graph evidence are kept. The frozen LM then
learns, through the graph tokens only, to continue that prompt with the gold answers (``"A, B"`` and
the end-of-text token): teacher forcing, the loss on the answer tokens alone.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kgllm.exceptions import ConfigError, LoadError
from kgllm.fusion.adapter import GraphSoftPrompt
from kgllm.fusion.soft_prompt import EvidenceGraphs, SoftPromptConfig, save_soft_prompt
from kgllm.llm.base import BaseLLM, Generation, GraphEvidence, Message, current_evidence
from kgllm.loaders._io import iter_lines

__all__ = ["read_qa_pairs", "Example", "collect_examples", "train_soft_prompt"]


def read_qa_pairs(path: Path) -> list[tuple[str, list[str]]]:
    """Questions and their gold answers: JSON lines (``{"question": ..., "answers": [...]}``, or
    ``"answer"`` for one) or MetaQA lines (``question<TAB>answer1|answer2``).

    Raises:
        LoadError: a line of neither form, or without answers (naming the file, line and value).
    """
    rows: list[tuple[str, list[str]]] = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LoadError(f"not JSON ({exc.msg})", path=path, line=number, value=line) from exc
            question = record.get("question") if isinstance(record, dict) else None
            answers = record.get("answers", [record.get("answer")]) if isinstance(record, dict) else None
        else:
            question, _, tail = line.partition("\t")
            answers = tail.split("|") if tail else None
        answers = [str(a).strip() for a in answers or [] if a is not None and str(a).strip()]
        if not isinstance(question, str) or not question.strip() or not answers:
            raise LoadError("expected a question with at least one answer ({\"question\": ..., \"answers\": [...]} "
                            "or question<TAB>answer1|answer2)", path=path, line=number, value=line)
        rows.append((question.strip(), answers))
    if not rows:
        raise LoadError("no questions", path=path)
    return rows


@dataclass
class Example:
    """What the LM is given for one question, and what it should write."""

    evidence: GraphEvidence
    prompt_ids: torch.Tensor  # (T,)
    target_ids: torch.Tensor  # (A,)


class _Recorder(BaseLLM):
    """Stands in for the LM while the training questions are asked: keeps each prompt and its graph."""

    backend = "recorder"

    def __init__(self, lm: Any, reserved: int) -> None:
        super().__init__(lm.name)
        self.lm = lm
        self.reserved = reserved
        self.records: list[tuple[list[Message], GraphEvidence]] = []

    @property
    def context_length(self) -> int | None:
        limit = self.lm.context_length
        return None if limit is None else limit - self.reserved

    def count_tokens(self, text: str) -> int:
        return self.lm.count_tokens(text)

    def count_message_tokens(self, messages: Sequence[Message]) -> int:
        return self.lm.count_message_tokens(messages)

    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str]) -> Generation:
        evidence = current_evidence()
        if evidence is not None:
            self.records.append((messages, evidence))
        return Generation(text="", prompt_tokens=0, completion_tokens=0, finish_reason="stop")

    def _stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
                stop: list[str]) -> Iterator[str]:
        yield self._generate(messages, max_tokens=max_tokens, temperature=temperature, stop=stop).text


def collect_examples(kb: Any, rows: Sequence[tuple[str, list[str]]], lm: Any, *, reserved: int,
                     domain: str | None = None, batch_size: int = 64) -> list[Example]:
    """Ask each question of ``kb`` as ``ask`` would with ``lm`` (an :class:`~kgllm.llm.hf.HFLLM`), and
    pair the recorded prompt with the gold answers. Questions that reach no LM call (nothing linked,
    nothing retrieved) are left out."""
    recorder = _Recorder(lm, reserved)
    gold = dict(rows)
    examples: list[Example] = []
    eos = [lm.tokenizer.eos_token_id] if lm.tokenizer.eos_token_id is not None else []
    for begin in range(0, len(rows), batch_size):
        recorder.records.clear()
        kb.ask_many([q for q, _ in rows[begin:begin + batch_size]], domain=domain, llm=recorder, llm_cache=False)
        for messages, evidence in recorder.records:
            answers = gold.get(evidence.question)
            if answers is None:
                continue
            prompt = lm._encode(messages)["input_ids"][0]
            target = lm.tokenizer(" " + ", ".join(answers), add_special_tokens=False)["input_ids"] + eos
            examples.append(Example(evidence, prompt, torch.tensor(target, dtype=torch.long)))
    return examples


def _padded(examples: Sequence[Example], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt + answer per row, right-padded; labels only on the answer tokens."""
    width = max(len(e.prompt_ids) + len(e.target_ids) for e in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, example in enumerate(examples):
        n, a = len(example.prompt_ids), len(example.target_ids)
        ids[row, :n + a] = torch.cat([example.prompt_ids, example.target_ids])
        mask[row, :n + a] = 1
        labels[row, n:n + a] = example.target_ids
    return ids, mask, labels


def train_soft_prompt(kb: Any, rows: Sequence[tuple[str, list[str]]], llm: str, out: Path,
                      cfg: SoftPromptConfig, *, domain: str | None = None, device: str | None = None,
                      progress: bool = False) -> dict[str, Any]:
    """Train a soft prompt for the LM ``llm`` (``hf:NAME_OR_PATH``) on ``kb``'s answers to ``rows``.

    Returns:
        What ``kgllm train softprompt`` prints: the model directory, how many questions became training
        examples, and the mean answer loss of each epoch.

    Raises:
        ConfigError: ``llm`` is not an ``hf:`` spec, or no question reached the LM.
    """
    from kgllm.llm.registry import hf_model, parse_spec

    kind, args = parse_spec(llm)
    if kind != "hf":
        raise ConfigError(f"a soft prompt trains against a local causal LM (hf:NAME_OR_PATH), got {llm!r}")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    lm = hf_model(args["model"], {"device": device} if device else {})
    started = time.perf_counter()
    examples = collect_examples(kb, rows, lm, reserved=cfg.num_tokens, domain=domain)
    if not examples:
        raise ConfigError(f"none of the {len(rows)} training questions reached the language model: no entity "
                          "of the knowledge base was linked and nothing was retrieved for them")
    relations = sorted({fact.relation for e in examples for fact in e.evidence.facts})
    graphs = EvidenceGraphs(relations, kb.embedder)
    graph_data = [graphs.graph(e.evidence) for e in examples]  # names embedded once, not every epoch
    model = GraphSoftPrompt(lm._model, kb.embedder.dim, graphs.n_relations, num_tokens=cfg.num_tokens,
                            hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout)
    model.gnn.to(lm.device)
    model.project.to(lm.device)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=cfg.lr)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id or 0
    history: list[dict[str, float]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, desc="soft prompt", unit="epoch")
    from kgllm.fusion.pyg import Batch

    for epoch in range(cfg.epochs):
        model.train()
        model.lm.eval()  # frozen: no dropout in the LM either
        order = list(range(len(examples)))
        rng.shuffle(order)
        losses: list[float] = []
        for begin in range(0, len(order), cfg.batch_size):
            chosen = order[begin:begin + cfg.batch_size]
            ids, mask, labels = _padded([examples[i] for i in chosen], pad)
            batch = Batch.from_data_list([graph_data[i] for i in chosen]).to(lm.device)
            loss = model(ids.to(lm.device), batch, attention_mask=mask.to(lm.device), labels=labels.to(lm.device)).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": round(sum(losses) / len(losses), 4)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=history[-1]["loss"])
    if bar is not None:
        bar.close()
    save_soft_prompt(out, model, cfg, llm=llm, encoder=kb.embedder.model_name, relations=relations,
                     info={"examples": len(examples), "history": history})
    return {"out": str(out), "n": len(rows), "examples": len(examples), "skipped": len(rows) - len(examples),
            "history": history, "seconds": round(time.perf_counter() - started, 1)}
