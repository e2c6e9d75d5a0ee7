"""The adapter layers on tiny graphs: shapes, reprs, gradients, the no-graph baseline, soft prompts."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from torch_geometric.data import Batch, Data
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from kgllm.fusion.adapter import (
    GraphEncoder,
    GraphSoftPrompt,
    InteractionLayer,
    MultipleChoiceAdapter,
    RelationalGATLayer,
)

NODE_DIM, N_REL = 8, 6


def _graph(seed: int, n: int = 5) -> Data:
    """A small QA-like graph: node 0 is the context node, the rest are concepts of types 1-3."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.arange(n - 1)
    edge_index = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], dim=1)
    return Data(x=torch.randn(n, NODE_DIM, generator=gen), node_type=torch.tensor([0] + [1, 2, 3, 3][: n - 1]),
                relevance=torch.rand(n, generator=gen), edge_index=edge_index,
                edge_type=torch.randint(0, N_REL, (edge_index.size(1),), generator=gen), num_nodes=n)


def test_relational_gat_layer_shapes_and_repr() -> None:
    layer = RelationalGATLayer(16, heads=4)
    x, edge_index, attr = torch.randn(4, 16), torch.tensor([[0, 1, 2], [1, 2, 3]]), torch.randn(3, 16)
    assert layer(x, edge_index, attr).shape == (4, 16)
    assert repr(layer) == "RelationalGATLayer(dim=16, heads=4)"
    with pytest.raises(ValueError, match="divisible"):
        RelationalGATLayer(10, heads=4)


def test_interaction_layer_mixes_both_states() -> None:
    layer = InteractionLayer(8)
    lm, ctx = torch.randn(3, 8), torch.randn(3, 8)
    new_lm, new_ctx = layer(lm, ctx)
    assert new_lm.shape == new_ctx.shape == (3, 8)
    # changing the context state changes the LM state: information flows across modalities
    other_lm, _ = layer(lm, ctx + 1.0)
    assert not torch.allclose(new_lm, other_lm)


@pytest.mark.parametrize("interaction", [False, True])
def test_adapter_scores_and_gradients_reach_the_gnn(interaction: bool) -> None:
    torch.manual_seed(0)
    model = MultipleChoiceAdapter(12, NODE_DIM, N_REL, hidden=16, layers=2, heads=2, dropout=0.0,
                                  interaction=interaction)
    with torch.no_grad():
        model.graph_gate.fill_(0.5)  # as after training: the gate starts closed (see the next test)
    batch = Batch.from_data_list([_graph(i) for i in range(3)])
    scores = model(torch.randn(3, 12), batch)
    assert scores.shape == (3,)
    scores.sum().backward()
    gnn_grads = [p.grad for n, p in model.named_parameters() if n.startswith("gnn.layers")]
    assert gnn_grads and all(g is not None for g in gnn_grads)
    assert sum(float(g.abs().sum()) for g in gnn_grads) > 0
    assert "layers=2" in repr(model) and f"interaction={interaction}" in repr(model)


def test_scores_depend_on_the_graph_only_with_use_graph() -> None:
    torch.manual_seed(0)
    lm = torch.randn(2, 12)
    a, b = Batch.from_data_list([_graph(1), _graph(2)]), Batch.from_data_list([_graph(3), _graph(4)])
    with_graph = MultipleChoiceAdapter(12, NODE_DIM, N_REL, hidden=16, heads=2).eval()
    # the graph term's gate starts at zero: an untrained graph branch leaves the LM score unchanged
    assert with_graph.graph_gate.detach().item() == 0.0 and torch.equal(with_graph(lm, a), with_graph(lm, None))
    with torch.no_grad():
        with_graph.graph_gate.fill_(1.0)
    assert not torch.allclose(with_graph(lm, a), with_graph(lm, b))
    assert not torch.allclose(with_graph(lm, a), with_graph(lm, None))
    baseline = MultipleChoiceAdapter(12, NODE_DIM, N_REL, hidden=16, heads=2, use_graph=False).eval()
    assert baseline.gnn is None and "gnn=None" in repr(baseline)
    assert torch.allclose(baseline(lm, a), baseline(lm, b))


def test_context_only_graph_still_scores() -> None:
    """A pair with no grounded concept has just the context node; the model falls back to the LM."""
    model = MultipleChoiceAdapter(12, NODE_DIM, N_REL, hidden=16, heads=2).eval()
    lonely = Data(x=torch.zeros(1, NODE_DIM), node_type=torch.tensor([0]), relevance=torch.ones(1),
                  edge_index=torch.zeros(2, 0, dtype=torch.long), edge_type=torch.zeros(0, dtype=torch.long),
                  num_nodes=1)
    scores = model(torch.randn(2, 12), Batch.from_data_list([lonely, _graph(0)]))
    assert torch.isfinite(scores).all()


def test_graph_encoder_pools_each_graph() -> None:
    enc = GraphEncoder(NODE_DIM, N_REL, hidden=16, heads=2)
    batch = Batch.from_data_list([_graph(0, 3), _graph(1, 5)])
    h, pooled, lm_state = enc(batch)
    assert h.shape == (8, 16) and pooled.shape == (2, 16) and lm_state is None


def _tiny_lm() -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast]:
    words = ["<pad>", "<unk>", "<eos>", "the", "graph", "says", "red", "blue", ":"]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_embd=32, n_layer=2, n_head=2, n_positions=32,
                                    bos_token_id=2, eos_token_id=2, pad_token_id=0,
                                    initializer_range=0.5))  # large weights: a random LM with a usable output range
    return lm, tok


def test_soft_prompt_trains_the_adapter_and_leaves_the_lm_frozen() -> None:
    lm, tok = _tiny_lm()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    model = GraphSoftPrompt(lm, NODE_DIM, N_REL, num_tokens=2, hidden=16, heads=2, dropout=0.0)
    assert "num_tokens=2" in repr(model) and "lm_hidden=32" in repr(model)
    # two graphs, two answers: only the graph tells them apart
    graphs = [_graph(10), _graph(11)]
    graphs[1].x = graphs[1].x + 3.0
    prompts = tok(["the graph says : red", "the graph says : blue"], return_tensors="pt")
    labels = prompts.input_ids.clone()
    labels[:, :-1] = -100  # learn the answer word only
    batch = Batch.from_data_list(graphs)
    assert model.graph_tokens(batch).shape == (2, 2, 32)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        out = model(prompts.input_ids, batch, attention_mask=prompts.attention_mask, labels=labels)
        assert out.logits.shape == (2, 2 + prompts.input_ids.size(1), len(tok))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in lm.parameters())
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in before.items())
    prefix = tok(["the graph says :"] * 2, return_tensors="pt")
    new = model.generate(prefix.input_ids, batch, attention_mask=prefix.attention_mask, max_new_tokens=1,
                         do_sample=False, pad_token_id=0)
    assert tok.batch_decode(new[:, -1:]) == ["red", "blue"]
