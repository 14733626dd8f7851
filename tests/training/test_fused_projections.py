"""fused_projections: one product for an attention layer's query, key and value, the same outputs and gradients."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref

import pytest
import torch
from fused_projections import SharedInputProjections, fuse_projections
from modeling import load_for_training
from torch import nn
from torch.nn import functional as F
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
        BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, **SMALL)
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


class _counted:
    """Counts the shared products computed (and their dtypes) while it is entered."""

    def __enter__(self) -> list[torch.dtype]:
        self.products: list[torch.dtype] = []
        self.compute = SharedInputProjections._compute
        products, compute = self.products, self.compute

        def counted(shared, x, dtype):
            outputs = compute(shared, x, dtype)
            products.append(outputs[0].dtype)
            return outputs

        SharedInputProjections._compute = counted
        return self.products

    def __exit__(self, *exc) -> None:
        SharedInputProjections._compute = self.compute


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
    with _counted() as products:
        logits, grads = _loss_and_grads(model, autocast=False)
    assert len(products) == model.config.num_hidden_layers  # one product per layer, not three
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

    with _counted() as products:
        logits, grads = _loss_and_grads(model, autocast=True)
    assert products == [torch.bfloat16] * model.config.num_hidden_layers  # one bf16 product per layer
    expected_logits, expected_grads = _loss_and_grads(plain, autocast=True)
    # bf16 products, summed in another order: close, not equal
    torch.testing.assert_close(logits, expected_logits, atol=2e-2, rtol=2e-2)
    query = "bert.encoder.layer.0.attention.self.query.weight"
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


def test_a_fused_model_copied_or_pickled_shares_its_own_modules_products() -> None:
    torch.manual_seed(5)
    model = FAMILIES["mpnet"]().eval()
    fuse_projections(model)
    batch = _batch()
    with torch.no_grad():
        expected = model(**batch).logits
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        attention = twin.mpnet.encoder.layer[0].attention.attn
        shared = attention.q.forward.shared
        assert shared is attention.k.forward.shared is attention.v.forward.shared
        assert shared.linears == [attention.q, attention.k, attention.v]  # the copy's, not the original's
        with torch.no_grad(), _counted() as products:
            torch.testing.assert_close(twin(**batch).logits, expected)
        assert len(products) == twin.config.num_hidden_layers


def test_a_fused_model_is_freed_without_waiting_for_the_cycle_collector() -> None:
    model = FAMILIES["bert"]()
    fuse_projections(model)
    gone = weakref.ref(model.bert.encoder.layer[0].attention.self.query)
    gc.disable()
    try:
        del model
        assert gone() is None
    finally:
        gc.enable()


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


def test_a_key_or_value_of_another_input_or_out_of_order_is_its_own_product() -> None:
    shared, linears, products = _shared()
    x, y = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    torch.testing.assert_close(shared.project(0, x), linears[0](x))
    torch.testing.assert_close(shared.project(1, y), linears[1](y))  # cross-attention: another input
    torch.testing.assert_close(shared.project(2, y), linears[2](y))
    assert len(products) == 1 and shared._key is None  # only the query's; nothing held after
    torch.testing.assert_close(shared.project(2, x), linears[2](x))  # the value first
    torch.testing.assert_close(shared.project(0, x), linears[0](x))
    torch.testing.assert_close(shared.project(1, x), linears[1](x))
    torch.testing.assert_close(shared.project(1, x), linears[1](x))  # the key twice: the second its own
    assert len(products) == 2


def test_another_grad_or_autocast_mode_is_not_served_the_query_s_outputs() -> None:
    shared, linears, products = _shared()
    x = torch.randn(2, 5, 8)
    shared.project(0, x)
    with torch.no_grad():
        assert not shared.project(1, x).requires_grad
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert shared.project(2, x).dtype == torch.bfloat16
        assert shared.project(0, x).dtype == torch.bfloat16
    assert len(products) == 2


def test_layers_whose_projections_differ_are_left_as_they_are() -> None:
    model = FAMILIES["bert"]()
    first = model.bert.encoder.layer[0].attention.self
    first.key.weight.requires_grad_(False)  # frozen alone: its product cannot share the others' gradient mode
    second = model.bert.encoder.layer[1].attention.self
    second.value = nn.Identity()
    third = model.bert.encoder.layer[2].attention.self
    third.is_cross_attention = True  # its key and value read another input than the query's

    assert fuse_projections(model) == model.config.num_hidden_layers - 3
    assert not any("forward" in vars(layer.query) for layer in (first, second, third))
    assert "forward" in vars(model.bert.encoder.layer[3].attention.self.query)


def test_a_decoder_s_cross_attention_is_left_alone_and_its_self_attention_fused() -> None:
    torch.manual_seed(7)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        is_decoder=True, add_cross_attention=True, **SMALL)
    model = BertForSequenceClassification(config).eval()
    plain = copy.deepcopy(model)
    assert fuse_projections(model) == 2  # each layer's self-attention only
    for layer in model.bert.encoder.layer:
        assert "forward" in vars(layer.attention.self.query)
        assert not any("forward" in vars(module) for module in layer.crossattention.modules())
    batch = _batch()
    encoder = torch.randn(3, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=batch["input_ids"], encoder_hidden_states=encoder).logits,
                                   plain(input_ids=batch["input_ids"], encoder_hidden_states=encoder).logits)


def test_a_query_whose_key_or_value_is_gone_computes_its_own_product() -> None:
    torch.manual_seed(8)
    model = FAMILIES["bert"]().eval()
    fuse_projections(model)
    attention = model.bert.encoder.layer[0].attention.self
    x = torch.randn(2, 5, 32)
    alone = copy.deepcopy(attention.query)  # its key and value copies are not kept by anything
    torch.testing.assert_close(alone(x), F.linear(x, attention.query.weight, attention.query.bias))
    attention.key = nn.Linear(32, 32)  # replaced while the model lives
    gc.collect()
    with torch.no_grad(), _counted() as products:
        torch.testing.assert_close(attention.query(x), F.linear(x, attention.query.weight, attention.query.bias))
        model(**{k: v for k, v in _batch().items() if k != "labels"})
    assert len(products) == model.config.num_hidden_layers - 1  # every layer but that one still shared
