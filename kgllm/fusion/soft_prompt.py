"""Graph soft-prompt fusion for a causal LM (G-Retriever style): the ``softprompt:MODEL_DIR`` backend.

The facts an answer's prompt shows, its linked entities and the reasoner's candidate answers become a
small graph (:class:`EvidenceGraphs`): node 0 is the question, the others are entities with their names'
embeddings as features; edges are the facts (each relation both ways) and question–topic links. A
relational graph-attention encoder turns it into ``num_tokens`` vectors prepended to the frozen LM's
input embeddings (:class:`~kgllm.fusion.adapter.GraphSoftPrompt`), so the model reads the graph beside
the cited-facts prompt. Only the encoder and its projection are trained
(:mod:`kgllm.fusion.soft_prompt_training`); the model directory names the LM it was trained for.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from kgllm.exceptions import ModelError
from kgllm.fusion.adapter import GraphSoftPrompt
from kgllm.fusion.grounding import NODE_CHOICE, NODE_CONTEXT, NODE_OTHER, NODE_QUESTION
from kgllm.fusion.pyg import Batch, Data
from kgllm.llm.base import BaseLLM, Generation, GraphEvidence, Message, current_evidence
from kgllm.model_manifest import read_model_manifest

__all__ = ["SoftPromptConfig", "EvidenceGraphs", "SoftPromptLLM", "save_soft_prompt", "load_soft_prompt",
           "KIND", "MANIFEST", "WEIGHTS"]

KIND = "kgllm-soft-prompt"
MANIFEST = "manifest.json"
WEIGHTS = "soft_prompt.pt"


@dataclass
class SoftPromptConfig:
    """Shape of the graph encoder and how it was trained (saved in the manifest)."""

    num_tokens: int = 8
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 8
    seed: int = 0


class EvidenceGraphs:
    """:class:`GraphEvidence` as torch_geometric graphs over a fixed relation vocabulary.

    Edge types: 0 links the question and its topic entities; ``1 + i`` is relation ``i`` from head to
    tail and ``1 + R + i`` the way back; the last two stand for a relation the vocabulary lacks.
    """

    def __init__(self, relations: Sequence[str], embedder: Any) -> None:
        self.relations = list(relations)
        self.embedder = embedder
        self._index = {name: i for i, name in enumerate(self.relations)}

    @property
    def n_relations(self) -> int:
        return 2 * len(self.relations) + 3

    def _edge_type(self, relation: str) -> tuple[int, int]:
        r = len(self.relations)
        i = self._index.get(relation)
        return (1 + i, 1 + r + i) if i is not None else (1 + 2 * r, 2 + 2 * r)

    def graph(self, evidence: GraphEvidence) -> Data:
        names: dict[str, str] = {}
        for fact in evidence.facts:
            names.setdefault(fact.head, fact.head_name or fact.head)
            names.setdefault(fact.tail, fact.tail_name or fact.tail)
        for eid in [*evidence.topic, *evidence.candidates]:
            names.setdefault(eid, eid)
        ids = list(names)
        node = {eid: i + 1 for i, eid in enumerate(ids)}
        topic, candidates = set(evidence.topic), set(evidence.candidates)
        types = [NODE_CONTEXT] + [NODE_QUESTION if e in topic else NODE_CHOICE if e in candidates else NODE_OTHER
                                  for e in ids]
        edges: list[tuple[int, int, int]] = []
        for eid in evidence.topic:
            edges += [(0, node[eid], 0), (node[eid], 0, 0)]
        for fact in evidence.facts:
            forward, backward = self._edge_type(fact.relation)
            edges += [(node[fact.head], node[fact.tail], forward), (node[fact.tail], node[fact.head], backward)]
        vectors = self.embedder.encode([evidence.question, *(names[e] for e in ids)])
        edge_index = torch.tensor([[s for s, _, _ in edges], [d for _, d, _ in edges]], dtype=torch.long) \
            if edges else torch.zeros((2, 0), dtype=torch.long)
        return Data(x=torch.as_tensor(vectors, dtype=torch.float32), node_type=torch.tensor(types, dtype=torch.long),
                    edge_index=edge_index, edge_type=torch.tensor([t for _, _, t in edges], dtype=torch.long),
                    num_nodes=len(types))

    def batch(self, evidence: Sequence[GraphEvidence]) -> Batch:
        return Batch.from_data_list([self.graph(item) for item in evidence])


def save_soft_prompt(model_dir: Path, model: GraphSoftPrompt, cfg: SoftPromptConfig, *, llm: str, encoder: str,
                     relations: Sequence[str], info: dict[str, Any] | None = None) -> Path:
    """Write the encoder and projection weights (not the LM's) and a manifest naming the LM."""
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("lm.")}
    torch.save(state, model_dir / WEIGHTS)
    manifest = {"kind": KIND, "format": 1, "llm": llm, "encoder": encoder, "node_dim": model.gnn.node_dim,
                "lm_hidden": model.lm_hidden, "relations": list(relations), "config": asdict(cfg), **(info or {})}
    (model_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return model_dir


def read_soft_prompt_manifest(model_dir: str | Path) -> dict[str, Any]:
    manifest = read_model_manifest(model_dir, MANIFEST, key="kind", expected=KIND, what="graph soft prompt")
    path = Path(model_dir) / MANIFEST
    missing = [k for k in ("llm", "encoder", "node_dim", "lm_hidden", "relations", "config") if k not in manifest]
    if missing:
        raise ModelError(f"{path}: incomplete manifest, missing {', '.join(missing)}")
    known = {f.name for f in fields(SoftPromptConfig)}
    if not isinstance(manifest["config"], dict) or set(manifest["config"]) - known:
        raise ModelError(f"{path}: config has entries this version does not know: {manifest['config']!r}")
    return manifest


def load_soft_prompt(model_dir: str | Path, lm: Any, *, node_dim: int) -> tuple[GraphSoftPrompt, dict[str, Any]]:
    """The trained soft prompt of ``model_dir`` around ``lm`` (the HF model it was trained for)."""
    manifest = read_soft_prompt_manifest(model_dir)
    cfg = SoftPromptConfig(**manifest["config"])
    if node_dim != manifest["node_dim"]:
        raise ModelError(f"{model_dir} was trained on {manifest['node_dim']}-dimensional name embeddings, "
                         f"the encoder gives {node_dim}")
    lm_hidden = int(lm.get_input_embeddings().embedding_dim)
    if lm_hidden != manifest["lm_hidden"]:
        raise ModelError(f"{model_dir} was trained for an LM of width {manifest['lm_hidden']} "
                         f"({manifest['llm']}), this one has {lm_hidden}")
    model = GraphSoftPrompt(lm, node_dim, 2 * len(manifest["relations"]) + 3, num_tokens=cfg.num_tokens,
                            hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout)
    weights = Path(model_dir) / WEIGHTS
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        unexpected = model.load_state_dict(state, strict=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:  # damaged, missing, mis-shaped
        raise ModelError(f"{weights}: cannot load the soft prompt's weights ({exc})") from exc
    missing = [k for k in unexpected.missing_keys if not k.startswith("lm.")]
    if missing or unexpected.unexpected_keys:
        raise ModelError(f"{weights}: weights do not match the manifest (missing {missing[:3]}, "
                         f"unexpected {unexpected.unexpected_keys[:3]})")
    return model, manifest


class SoftPromptLLM(BaseLLM):
    """``softprompt:MODEL_DIR``: the LM named in the model's manifest, reading the answer's graph as graph
    tokens beside the prompt. In ``ask`` the graph is the answer's evidence
    (:func:`~kgllm.llm.base.current_evidence`); called directly, it is the question alone.

    Args:
        model_dir: a directory from ``kgllm train softprompt``.
        device, dtype: for the LM (see :class:`~kgllm.llm.hf.HFLLM`); the graph encoder follows the LM.
        embedder: the name encoder; by default the one named in the manifest.
    """

    backend = "softprompt"
    reads_evidence = True  # its output depends on more than the prompt: not served from the text cache

    def __init__(self, model_dir: str | Path, *, device: str | None = None, dtype: str | None = None,
                 embedder: Any = None) -> None:
        from kgllm.embed import Embedder
        from kgllm.llm.registry import hf_model

        self.model_dir = Path(model_dir).expanduser()
        manifest = read_soft_prompt_manifest(self.model_dir)
        super().__init__(str(self.model_dir))
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        self.lm = hf_model(str(manifest["llm"]).removeprefix("hf:"), kwargs)
        self.embedder = embedder or Embedder(manifest["encoder"])
        if self.embedder.model_name != manifest["encoder"]:
            raise ModelError(f"{self.model_dir} was trained with encoder {manifest['encoder']!r}, "
                             f"not {self.embedder.model_name!r}")
        self.graphs = EvidenceGraphs(manifest["relations"], self.embedder)
        self.soft_prompt, self.manifest = load_soft_prompt(self.model_dir, self.lm._model, node_dim=self.embedder.dim)
        self.soft_prompt.gnn.to(self.lm.device)
        self.soft_prompt.project.to(self.lm.device)
        self.soft_prompt.eval()
        self._identity = f"softprompt:{self.lm._fingerprint(self.model_dir)}+{self.lm.identity}"

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def context_length(self) -> int | None:
        limit = self.lm.context_length
        return None if limit is None else limit - self.soft_prompt.num_tokens  # the graph tokens come first

    def count_tokens(self, text: str) -> int:
        return self.lm.count_tokens(text)

    def count_message_tokens(self, messages: Sequence[Message]) -> int:
        return self.lm.count_message_tokens(messages)

    def render(self, messages: Sequence[Message]) -> str:
        return self.lm.render(messages)

    def _evidence(self, messages: list[Message]) -> GraphEvidence:
        found = current_evidence()
        if found is not None:
            return found
        return GraphEvidence(question=next((m["content"] for m in reversed(messages) if m["role"] == "user"), ""))

    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str]) -> Generation:
        from transformers import StoppingCriteriaList

        from kgllm.llm.hf import StopOnText

        inputs = self.lm._prepare(messages, max_tokens + self.soft_prompt.num_tokens)
        n_prompt = int(inputs["input_ids"].shape[1])
        batch = self.graphs.batch([self._evidence(messages)]).to(self.lm.device)
        kwargs = self.lm._generate_kwargs(inputs, max_tokens, temperature, [])
        kwargs.pop("input_ids"), kwargs.pop("attention_mask", None)
        if stop:  # generating from embeddings returns the new tokens only: the stop check starts at 0
            kwargs["stopping_criteria"] = StoppingCriteriaList([StopOnText(self.lm.tokenizer, stop, 0)])
        with self.lm._lock, torch.inference_mode():
            new_tokens = self.soft_prompt.generate(inputs["input_ids"], batch, inputs.get("attention_mask"), **kwargs)[0]
        return self.lm.reply(new_tokens, n_prompt + self.soft_prompt.num_tokens, max_tokens, stop)

    def _stream(self, messages: list[Message], *, max_tokens: int, temperature: float,
                stop: list[str]) -> Iterator[str]:
        yield self._generate(messages, max_tokens=max_tokens, temperature=temperature, stop=stop).text
