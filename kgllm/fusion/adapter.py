"""Graph-attention adapters that fuse a retrieved subgraph into a language model.

Two fusion paths share one relational graph-attention encoder (:class:`GraphEncoder`, built on
torch_geometric's ``GATv2Conv``; edge features are relation and endpoint-type embeddings):

* :class:`MultipleChoiceAdapter` (QA-GNN style encoder fusion): a context node carrying the LM's
  pooled state of (question, choice) is joined to the grounded concepts; node relevance from the LM is
  a node feature; the pooled graph, the context node and the LM state give a graph score added,
  through a gate that starts at zero, to the LM's score of the choice.
  Optional GreaseLM-style :class:`InteractionLayer` s exchange LM and context-node states after each
  GNN layer. ``use_graph=False`` is the baseline: the same LM projection and head, no graph.
* :class:`GraphSoftPrompt` (G-Retriever style) for any Hugging Face causal LM: the GNN's pooled output
  becomes ``num_tokens`` graph tokens prepended through ``inputs_embeds``; the LM is frozen.

Graph batches are ``torch_geometric.data.Batch`` objects with ``x`` (node features), ``node_type``,
``relevance``, ``edge_index``, ``edge_type`` and ``batch``; in QA graphs node 0 of each graph is the
context node (see :func:`kgllm.fusion.training.qa_batch`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from kgllm.fusion.grounding import NODE_TYPES
from kgllm.fusion.pyg import GATv2Conv, scatter, softmax

__all__ = ["RelationalGATLayer", "InteractionLayer", "AttentionPooling", "GraphEncoder",
           "MultipleChoiceAdapter", "GraphSoftPrompt"]


class RelationalGATLayer(nn.Module):
    """One GATv2 message-passing layer whose attention sees edge (relation/type) features.

    A pre-norm residual block: ``x + dropout(gelu(GATv2(norm(x), edge_attr)))``.

    Args:
        dim: Node state width (divisible by ``heads``).
        heads: Attention heads (their outputs are concatenated back to ``dim``).
        dropout: Dropout on attention weights and on the update.

    Shapes:
        - x: ``(N, dim)``; edge_index: ``(2, E)``; edge_attr: ``(E, dim)``
        - output: ``(N, dim)``
    """

    def __init__(self, dim: int, *, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.dim, self.heads = dim, heads
        self.norm = nn.LayerNorm(dim)
        self.conv = GATv2Conv(dim, dim // heads, heads=heads, edge_dim=dim, dropout=dropout,
                              add_self_loops=True, fill_value="mean")
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        return x + self.drop(nn.functional.gelu(self.conv(self.norm(x), edge_index, edge_attr)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, heads={self.heads})"


class InteractionLayer(nn.Module):
    """GreaseLM-style modality interaction: the LM state and the context-node state are mixed by an MLP.

    Shapes:
        - lm: ``(B, dim)``; ctx: ``(B, dim)``
        - output: ``((B, dim), (B, dim))``, both updated residually
    """

    def __init__(self, dim: int, *, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim = dim
        self.mix = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, 2 * dim), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(2 * dim, 2 * dim))

    def forward(self, lm: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor]:
        d_lm, d_ctx = self.mix(torch.cat([lm, ctx], dim=-1)).split(self.dim, dim=-1)
        return lm + d_lm, ctx + d_ctx

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class AttentionPooling(nn.Module):
    """Attention pooling of each graph's nodes, with a per-graph query (the LM state) or a learned one.

    Shapes:
        - h: ``(N, dim)``; batch: ``(N,)``; query: ``(B, dim)`` or None
        - output: ``(B, dim)``
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.default_query = nn.Parameter(torch.zeros(dim))

    def forward(self, h: Tensor, batch: Tensor, num_graphs: int, query: Tensor | None = None) -> Tensor:
        q = self.default_query.expand(num_graphs, -1) if query is None else query
        logits = (self.key(h) * q[batch]).sum(-1) / math.sqrt(self.dim)
        alpha = softmax(logits, batch, num_nodes=h.size(0))
        return scatter(alpha.unsqueeze(-1) * self.value(h), batch, dim=0, dim_size=num_graphs, reduce="sum")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class GraphEncoder(nn.Module):
    """Relational graph-attention encoder: node/type/relevance embedding, GATv2 layers, attention pooling.

    Args:
        node_dim: Width of the input node features ``x`` (e.g. the concept-name embeddings).
        n_relations: Size of the edge relation vocabulary.
        hidden: Node state width.
        layers: Number of :class:`RelationalGATLayer` s.
        heads: Attention heads per layer.
        dropout: Dropout rate.
        interaction: Add an :class:`InteractionLayer` after each GNN layer (needs ``lm_state``).

    Shapes:
        - batch.x: ``(N, node_dim)``; batch.node_type, batch.edge_type: ``(N,)``, ``(E,)``;
          batch.relevance: ``(N,)`` (optional); lm_state: ``(B, hidden)`` or None
        - output: node states ``(N, hidden)``, pooled ``(B, hidden)``, LM state ``(B, hidden)`` or None
    """

    def __init__(self, node_dim: int, n_relations: int, *, hidden: int = 128, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1, interaction: bool = False) -> None:
        super().__init__()
        self.node_dim, self.n_relations, self.hidden = node_dim, n_relations, hidden
        self.node_proj = nn.Sequential(nn.Linear(node_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.node_type = nn.Embedding(NODE_TYPES, hidden)
        self.relevance = nn.Linear(1, hidden)
        self.relation = nn.Embedding(n_relations, hidden)
        self.src_type = nn.Embedding(NODE_TYPES, hidden)
        self.dst_type = nn.Embedding(NODE_TYPES, hidden)
        self.layers = nn.ModuleList(RelationalGATLayer(hidden, heads=heads, dropout=dropout) for _ in range(layers))
        self.interactions = nn.ModuleList(InteractionLayer(hidden, dropout=dropout) for _ in range(layers)) \
            if interaction else None
        self.norm = nn.LayerNorm(hidden)
        self.pool = AttentionPooling(hidden)

    def embed_nodes(self, batch) -> Tensor:  # noqa: ANN001 - a torch_geometric Batch
        h = self.node_proj(batch.x) + self.node_type(batch.node_type)
        relevance = getattr(batch, "relevance", None)
        if relevance is not None:
            h = h + self.relevance(relevance.unsqueeze(-1))
        return h

    def forward(self, batch, *, context: Tensor | None = None, lm_state: Tensor | None = None,  # noqa: ANN001
                context_index: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Encode a batch of graphs.

        Args:
            batch: The graphs.
            context: States written into the context nodes before message passing, ``(B, hidden)``.
            lm_state: The LM state for the interaction layers and as the pooling query, ``(B, hidden)``.
            context_index: Row of each graph's context node in the batch, ``(B,)``.
        """
        h = self.embed_nodes(batch)
        if context is not None and context_index is not None:
            h = h.index_copy(0, context_index, context + self.node_type.weight[0])
        src, dst = batch.edge_index
        edge_attr = self.relation(batch.edge_type) + self.src_type(batch.node_type[src]) + \
            self.dst_type(batch.node_type[dst])
        for i, layer in enumerate(self.layers):
            h = layer(h, batch.edge_index, edge_attr)
            if self.interactions is not None and lm_state is not None and context_index is not None:
                lm_state, ctx = self.interactions[i](lm_state, h[context_index])
                h = h.index_copy(0, context_index, ctx)
        h = self.norm(h)
        pooled = self.pool(h, batch.batch, batch.num_graphs, lm_state)
        return h, pooled, lm_state

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(node_dim={self.node_dim}, relations={self.n_relations}, hidden={self.hidden}, "
                f"layers={len(self.layers)}, interaction={self.interactions is not None})")


class MultipleChoiceAdapter(nn.Module):
    """QA-GNN style scorer of (question, choice) pairs from frozen LM features and a concept subgraph.

    The score is ``head(lm_state) + gate * graph_head([lm_state, pooled graph, context node])``. The
    graph term is a residual on the LM score whose gate starts at zero: an untrained graph branch
    leaves the LM scorer as it is, and training opens the gate only as far as the graph helps
    (without it, the graph model trained to a lower accuracy than the encoder alone).

    Args:
        lm_dim: Width of the LM features of a pair.
        node_dim: Width of the concept node features.
        n_relations: Edge relation vocabulary (graph relations, their inverses, context links).
        hidden: Hidden width.
        layers: GNN layers.
        heads: Attention heads.
        dropout: Dropout rate.
        use_graph: False gives the baseline: the same LM projection and head, no graph branch.
        interaction: GreaseLM-style interaction layers.

    Shapes:
        - lm: ``(B, lm_dim)``, one row per pair; batch: ``B`` graphs (ignored when ``use_graph`` is False)
        - output: scores ``(B,)``
    """

    def __init__(self, lm_dim: int, node_dim: int, n_relations: int, *, hidden: int = 128, layers: int = 2,
                 heads: int = 4, dropout: float = 0.2, use_graph: bool = True, interaction: bool = False) -> None:
        super().__init__()
        self.lm_dim, self.hidden, self.use_graph = lm_dim, hidden, use_graph
        self.lm_proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(lm_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        self.gnn = GraphEncoder(node_dim, n_relations, hidden=hidden, layers=layers, heads=heads, dropout=dropout,
                                interaction=interaction) if use_graph else None
        if use_graph:
            self.context = nn.Linear(hidden, hidden)
            self.graph_head = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                            nn.Linear(hidden, 1))
            self.graph_gate = nn.Parameter(torch.zeros(1))

    def forward(self, lm: Tensor, batch=None) -> Tensor:  # noqa: ANN001
        state = self.lm_proj(lm)
        score = self.head(state).squeeze(-1)
        if self.gnn is None or batch is None:
            return score
        ctx_index = batch.ptr[:-1]
        h, pooled, lm_state = self.gnn(batch, context=self.context(state), lm_state=state, context_index=ctx_index)
        graph = self.graph_head(torch.cat([lm_state, pooled, h[ctx_index]], dim=-1)).squeeze(-1)
        return score + self.graph_gate * graph

    def __repr__(self) -> str:
        graph = repr(self.gnn) if self.gnn is not None else "None"
        return f"{type(self).__name__}(lm_dim={self.lm_dim}, hidden={self.hidden}, gnn={graph})"


class GraphSoftPrompt(nn.Module):
    """G-Retriever style fusion: graph tokens prepended to a frozen causal LM's input embeddings.

    Args:
        lm: A Hugging Face causal LM (``get_input_embeddings()``, accepts ``inputs_embeds``); frozen here.
        node_dim: Width of the node features.
        n_relations: Edge relation vocabulary.
        num_tokens: Graph tokens prepended to every prompt.
        hidden: GNN width.
        layers: GNN layers.
        heads: Attention heads.

    Shapes:
        - input_ids, attention_mask: ``(B, T)``; batch: ``B`` graphs; labels: ``(B, T)`` or None
        - graph tokens: ``(B, num_tokens, lm_hidden)``; logits: ``(B, num_tokens + T, vocab)``
    """

    def __init__(self, lm: Any, node_dim: int, n_relations: int, *, num_tokens: int = 4, hidden: int = 128,
                 layers: int = 2, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        hf_lm: Any = lm  # a transformers PreTrainedModel
        self.lm = hf_lm
        for p in hf_lm.parameters():
            p.requires_grad_(False)
        self.num_tokens = num_tokens
        self.lm_hidden = int(hf_lm.get_input_embeddings().embedding_dim)
        self.gnn = GraphEncoder(node_dim, n_relations, hidden=hidden, layers=layers, heads=heads, dropout=dropout)
        self.project = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(),
                                     nn.Linear(2 * hidden, num_tokens * self.lm_hidden))

    def graph_tokens(self, batch) -> Tensor:  # noqa: ANN001
        _, pooled, _ = self.gnn(batch)
        tokens = self.project(pooled).view(-1, self.num_tokens, self.lm_hidden)
        return tokens.to(self.lm.get_input_embeddings().weight.dtype)

    def _inputs(self, input_ids: Tensor, attention_mask: Tensor | None, batch) -> tuple[Tensor, Tensor]:  # noqa: ANN001
        tokens = self.graph_tokens(batch)
        embeds = torch.cat([tokens, self.lm.get_input_embeddings()(input_ids)], dim=1)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = torch.cat([attention_mask.new_ones(input_ids.size(0), self.num_tokens), attention_mask], dim=1)
        return embeds, mask

    def forward(self, input_ids: Tensor, batch, attention_mask: Tensor | None = None,  # noqa: ANN001
                labels: Tensor | None = None):  # noqa: ANN201 - a transformers ModelOutput
        """Run the LM on graph tokens + prompt; ``labels`` (``-100`` = ignored) give ``.loss``."""
        embeds, mask = self._inputs(input_ids, attention_mask, batch)
        if labels is not None:
            labels = torch.cat([labels.new_full((labels.size(0), self.num_tokens), -100), labels], dim=1)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels)

    @torch.no_grad()
    def generate(self, input_ids: Tensor, batch, attention_mask: Tensor | None = None, **kwargs) -> Tensor:  # noqa: ANN001
        """Generate continuations conditioned on the graph tokens (returns the new token ids)."""
        embeds, mask = self._inputs(input_ids, attention_mask, batch)
        return self.lm.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(lm={type(self.lm).__name__}, num_tokens={self.num_tokens}, "
                f"lm_hidden={self.lm_hidden}, gnn={self.gnn!r})")
