"""fast_dropout: the same distribution as nn.Dropout from a quarter of the random draws, and its use in a model."""

from __future__ import annotations

import pytest
import torch
from fast_dropout import FastDropout, keep_mask, use_fast_dropout
from modeling import load_for_training
from torch import nn

from .conftest import MODEL


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_every_lane_of_a_draw_drops_at_the_rate_asked(p: float) -> None:
    torch.manual_seed(0)
    keep = keep_mask((4000, 1000), p)
    assert keep.shape == (4000, 1000) and keep.dtype == torch.bool
    by_lane = keep.view(-1, 4).float().mean(dim=0)  # the four 16-bit lanes of each 64-bit draw
    # 1e6 elements a lane: the standard error of a rate is below 5e-4
    assert torch.allclose(by_lane, torch.full((4,), 1 - p), atol=3e-3), by_lane


@pytest.mark.parametrize("p", [0.99999, 0.9999999])
def test_a_probability_next_to_1_drops_nearly_everything(p: float) -> None:
    torch.manual_seed(4)
    assert keep_mask((1_000_000,), p).sum().item() < 100  # 1e6 x (1 - 65535/65536): about 15 kept


def test_a_mask_of_any_size_and_neighbours_independent() -> None:
    torch.manual_seed(1)
    keep = keep_mask((7, 13, 3), 0.5)  # 273 elements: not a whole number of draws
    assert keep.shape == (7, 13, 3)
    big = keep_mask((2_000_000,), 0.5).float()
    both = (big[:-1] * big[1:]).mean().item()  # next to each other, in a lane or across
    assert abs(both - 0.25) < 3e-3


def test_seeded_masks_repeat_and_differ_between_calls() -> None:
    torch.manual_seed(5)
    first, second = keep_mask((64, 64), 0.1), keep_mask((64, 64), 0.1)
    torch.manual_seed(5)
    assert torch.equal(keep_mask((64, 64), 0.1), first)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_a_probability_outside_0_to_1_is_refused(p: float) -> None:
    with pytest.raises(ValueError, match="dropout probability"):
        keep_mask((4,), p)
    with pytest.raises(ValueError, match="dropout probability"):
        FastDropout(p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_zeroes_some_and_scales_the_rest_and_the_gradient_alike(dtype: torch.dtype) -> None:
    torch.manual_seed(2)
    x = (torch.rand(32, 50, 16) + 1).to(dtype).requires_grad_()
    dropout = FastDropout(0.2).train()
    out = dropout(x)
    assert out.dtype == dtype
    kept = out != 0
    assert 0.7 < kept.float().mean().item() < 0.9
    torch.testing.assert_close(out[kept], (x[kept] / 0.8).to(dtype))
    weights = torch.rand_like(out)
    (out * weights).sum().backward()
    torch.testing.assert_close(x.grad, (weights * kept / 0.8).to(dtype))


def test_evaluation_and_zero_probability_pass_the_input_through() -> None:
    x = torch.rand(4, 8)
    assert FastDropout(0.3).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x


def test_a_model_gets_one_per_dropout_module_and_still_trains_and_evaluates_alike() -> None:
    torch.manual_seed(3)
    model, tokenizer = load_for_training(MODEL, "mean", {0: "-1", 1: "0", 2: "1"}, {"-1": 0, "0": 1, "1": 2})
    before = sum(type(module) is nn.Dropout for module in model.modules())
    batch = tokenizer(["love it, perfect fit", "awful, returned it"], padding=True, return_tensors="pt")
    model.eval()
    with torch.inference_mode():
        expected = model(**batch).logits

    assert before > 0
    assert use_fast_dropout(model) == before
    assert not any(type(module) is nn.Dropout for module in model.modules())
    assert sum(isinstance(module, FastDropout) for module in model.modules()) == before
    probabilities = {module.p for module in model.modules() if isinstance(module, FastDropout)}
    assert probabilities == {model.config.hidden_dropout_prob}

    with torch.inference_mode():
        torch.testing.assert_close(model(**batch).logits, expected)  # no dropout in evaluation
    model.train()
    first = model(**batch, labels=torch.tensor([2, 0])).logits
    second = model(**batch, labels=torch.tensor([2, 0])).logits
    assert not torch.allclose(first, second)  # dropout draws a new mask each pass
    model(**batch, labels=torch.tensor([2, 0])).loss.backward()
    assert all(p.grad is not None for p in model.classifier.parameters())


def test_in_a_bert_training_step_every_dropout_but_the_attention_s_draws_the_mask() -> None:
    """BERT's attention (transformers 5) reads its dropout module's probability and applies PyTorch's dropout in the
    attention function: the module docstring and README say so; the rest of the model calls its modules."""
    torch.manual_seed(6)
    model, tokenizer = load_for_training(
        MODEL, "mean", {0: "-1", 1: "0", 2: "1"}, {"-1": 0, "0": 1, "1": 2}, attn_implementation="eager"
    )
    use_fast_dropout(model)
    called: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, FastDropout):
            module.register_forward_hook(lambda module, args, out, name=name: called.add(name))
    model.train()
    batch = tokenizer(["love it, perfect fit", "awful, returned it"], padding=True, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(**batch, labels=torch.tensor([2, 0])).loss.backward()

    replaced = {name for name, module in model.named_modules() if isinstance(module, FastDropout)}
    attention = {name for name in replaced if name.endswith(".attention.self.dropout")}
    assert len(attention) == model.config.num_hidden_layers
    assert called == replaced - attention


def test_an_in_place_dropout_is_left_as_it_is() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1, inplace=True), nn.Dropout(0.2))
    assert use_fast_dropout(model) == 1
    assert type(model[1]) is nn.Dropout and isinstance(model[2], FastDropout)
