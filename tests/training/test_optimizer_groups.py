"""train.py's optimizer: the layer-wise learning rates and the head's multiplier, built on the real MiniLM model."""

from __future__ import annotations

import pytest
import train
from modeling import load_for_training

from .conftest import MODEL

LABELS = {0: "negative", 1: "neutral", 2: "positive"}


@pytest.fixture(scope="module")
def model():
    classifier, _ = load_for_training(MODEL, "mean", LABELS, {v: k for k, v in LABELS.items()})
    return classifier


def _rates(optimizer) -> dict[int, float]:
    """Each trainable parameter's learning rate, by the parameter's id."""
    return {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}


def test_defaults_give_every_parameter_the_learning_rate(model) -> None:
    optimizer = train.build_optimizer(model, 3e-5, 0.01)
    assert set(_rates(optimizer).values()) == {3e-5}
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, parameter in model.named_parameters():
        assert (id(parameter) in decayed) == (parameter.ndim >= 2 and "norm" not in name.lower()), name


def test_layer_decay_and_head_multiplier(model) -> None:
    optimizer = train.build_optimizer(model, 1e-4, 0.01, head_lr_multiplier=10, layer_lr_decay=0.5)
    rates = _rates(optimizer)
    layers = len(model.base_model.encoder.layer)  # 6 in all-MiniLM-L6-v2
    named = dict(model.named_parameters())
    prefix = model.base_model_prefix
    top = f"{prefix}.encoder.layer.{layers - 1}.attention.self.query.weight"
    bottom = f"{prefix}.encoder.layer.0.attention.self.query.weight"
    embeddings = f"{prefix}.embeddings.word_embeddings.weight"
    assert rates[id(named[top])] == pytest.approx(1e-4)
    assert rates[id(named[bottom])] == pytest.approx(1e-4 * 0.5 ** (layers - 1))
    assert rates[id(named[embeddings])] == pytest.approx(1e-4 * 0.5**layers)
    head = [name for name in named if not name.startswith(f"{prefix}.")]
    assert head, "the classification head has parameters outside the base model"
    for name in head:
        assert rates[id(named[name])] == pytest.approx(1e-3), name
    assert len(rates) == sum(1 for p in model.parameters() if p.requires_grad)


def test_frozen_parameters_are_left_out(model) -> None:
    for parameter in model.base_model.embeddings.parameters():
        parameter.requires_grad_(False)
    try:
        rates = _rates(train.build_optimizer(model, 1e-4, 0.01, layer_lr_decay=0.9))
        assert all(id(p) not in rates for p in model.base_model.embeddings.parameters())
    finally:
        for parameter in model.base_model.embeddings.parameters():
            parameter.requires_grad_(True)


@pytest.mark.parametrize("flag", ["--head_lr_multiplier", "--layer_lr_decay"])
def test_non_positive_multipliers_are_refused(flag: str) -> None:
    with pytest.raises(SystemExit, match=f"{flag} must be positive"):
        train.parse_args([flag, "0"])
