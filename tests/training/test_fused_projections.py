"""fused_projections: one product for an attention layer's query, key and value, the same outputs and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from fused_projections import SharedInputProjections, fuse_projections
from modeling import load_for_training
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    MPNetConfig,
    MPNetForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from .conftest import MODEL

SMALL = {"vocab_size": 120, "num_labels": 3}
# a tiny random model of each family train.py fine-tunes: the layers' module names differ by family
FAMILIES = {
    "bert": lambda: BertForSequenceClassification(
        BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, **SMALL)
    ),
    "roberta": lambda: RobertaForSequenceClassification(
        RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **SMALL)
    ),
    "mpnet": lambda: MPNetForSequenceClassification(
        MPNetConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, **SMALL)
    ),
    "distilbert": lambda: DistilBertForSequenceClassification(
        DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, **SMALL)
    ),
}


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 120, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0  # padding, as a batch of different lengths has
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.tensor([0, 1, 2])}


def _loss_and_grads(model: nn.Module, autocast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(**_batch())
    out.loss.backward()
    return out.logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_attention_layer_gives_the_same_logits_and_gradients(family: str) -> None:
    torch.manual_seed(1)
    model = FAMILIES[family]().eval()  # no dropout: the two passes compare exactly
    plain = copy.deepcopy(model)
    names = set(model.state_dict())

    assert fuse_projections(model) == model.config.num_hidden_layers

    assert set(model.state_dict()) == names  # the weights stay in their own modules
    logits, grads = _loss_and_grads(model, autocast=False)
    expected_logits, expected_grads = _loss_and_grads(plain, autocast=False)
    torch.testing.assert_close(logits, expected_logits)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], msg=name)


def test_under_bf16_autocast_the_real_model_trains_alike_and_gradients_stay_fp32() -> None:
    torch.manual_seed(2)
    model, _ = load_for_training(MODEL, "mean", {0: "-1", 1: "0", 2: "1"}, {"-1": 0, "0": 1, "1": 2})
    model.eval()
    plain = copy.deepcopy(model)
    assert fuse_projections(model) == model.config.num_hidden_layers

    logits, grads = _loss_and_grads(model, autocast=True)
    expected_logits, expected_grads = _loss_and_grads(plain, autocast=True)
    # bf16 products, summed in another order: close, not equal
    torch.testing.assert_close(logits, expected_logits, atol=2e-2, rtol=2e-2)
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert grads[query].dtype == torch.float32
    for name in (query, "bert.encoder.layer.5.attention.self.value.weight", "bert.embeddings.word_embeddings.weight"):
        cosine = nn.functional.cosine_similarity(grads[name].flatten(), expected_grads[name].flatten(), dim=0)
        assert cosine > 0.99, (name, cosine)


def test_a_fused_model_saves_and_loads_as_a_plain_one(tmp_path) -> None:
    torch.manual_seed(3)
    model = FAMILIES["mpnet"]().eval()
    fuse_projections(model)
    model.save_pretrained(tmp_path)
    loaded = MPNetForSequenceClassification.from_pretrained(tmp_path).eval()
    batch = _batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)


def _shared() -> tuple[SharedInputProjections, list[nn.Linear], list[int]]:
    torch.manual_seed(4)
    linears = [nn.Linear(8, 8) for _ in range(3)]
    shared = SharedInputProjections(linears)
    products: list[int] = []
    compute = shared._compute
    shared._compute = lambda x, dtype: products.append(1) or compute(x, dtype)
    return shared, linears, products


def test_the_three_calls_for_one_input_share_one_product_and_hold_nothing_after() -> None:
    shared, linears, products = _shared()
    x = torch.randn(2, 5, 8)
    outputs = [shared.project(index, x) for index in range(3)]

    assert len(products) == 1
    for output, linear in zip(outputs, linears, strict=True):
        torch.testing.assert_close(output, linear(x))
    assert shared._key is None and shared._outputs == ()  # neither the input nor the outputs kept


def test_another_input_a_repeated_call_or_another_mode_computes_afresh() -> None:
    shared, linears, products = _shared()
    x, y = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    torch.testing.assert_close(shared.project(0, x), linears[0](x))
    torch.testing.assert_close(shared.project(1, y), linears[1](y))  # another input
    torch.testing.assert_close(shared.project(1, y), linears[1](y))  # the same projection twice
    with torch.no_grad():
        assert not shared.project(2, y).requires_grad  # another grad mode: not the grad-tracking output
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert shared.project(0, y).dtype == torch.bfloat16
    assert len(products) == 5


def test_layers_whose_projections_differ_are_left_as_they_are() -> None:
    model = FAMILIES["bert"]()
    first = model.bert.encoder.layer[0].attention.self
    first.key.weight.requires_grad_(False)  # frozen alone: its product cannot share the others' gradient mode
    second = model.bert.encoder.layer[1].attention.self
    second.value = nn.Identity()

    assert fuse_projections(model) == model.config.num_hidden_layers - 2
    assert "forward" not in vars(first.query) and "forward" not in vars(second.query)
    assert "forward" in vars(model.bert.encoder.layer[2].attention.self.query)
