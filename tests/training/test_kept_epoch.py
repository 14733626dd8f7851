"""Which epoch train.py saves (kept_epoch.py, --keep_epoch), and that the tuner's objective is that model's."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from kept_epoch import KeptEpoch
from modeling import choose_precision, load_for_inference
from review_data import read_reviews, tokenize
from safetensors.torch import load_file

from .conftest import ACC_LINE, VAL_LINE, Channels, TrainedModel, train_in_process


def _copies(values: list[dict]) -> Callable[[], dict]:
    def copy() -> dict:
        values.append({"copied": True})
        return values[-1]

    return copy


def test_last_keeps_the_final_epoch_and_copies_nothing() -> None:
    kept, copies = KeptEpoch("last", epochs=3), []
    for epoch, accuracy in ((1, 80.0), (2, 70.0), (3, 60.0)):
        kept.after_epoch(epoch, accuracy, 0.5, _copies(copies))
    assert (kept.epoch, kept.val_acc) == (3, 60.0)
    assert copies == []
    assert kept.restore(lambda state: pytest.fail("nothing to restore")) is False


def test_best_keeps_an_earlier_epoch_and_restores_its_weights() -> None:
    model = torch.nn.Linear(2, 3)
    kept = KeptEpoch("best", epochs=3)
    kept.after_epoch(1, 70.0, 0.6, lambda: {k: v.clone() for k, v in model.state_dict().items()})
    first = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    kept.after_epoch(2, 69.0, 0.5, lambda: pytest.fail("a worse epoch is not copied"))
    kept.after_epoch(3, 65.0, 0.4, lambda: pytest.fail("a worse epoch is not copied"))

    assert (kept.epoch, kept.val_acc) == (1, 70.0)
    assert kept.restore(model.load_state_dict) is True
    assert all(torch.equal(model.state_dict()[k], first[k]) for k in first)
    assert kept.restore(model.load_state_dict) is False  # once


def test_best_breaks_an_accuracy_tie_by_the_lower_loss() -> None:
    kept, copies = KeptEpoch("best", epochs=3), []
    kept.after_epoch(1, 70.0, 0.60, _copies(copies))
    kept.after_epoch(2, 70.0, 0.55, _copies(copies))
    kept.after_epoch(3, 70.0, 0.58, lambda: pytest.fail("not kept"))
    assert (kept.epoch, kept.val_loss) == (2, 0.55)
    assert len(copies) == 2


def test_best_gives_a_full_tie_to_the_later_epoch_and_needs_no_copy_of_the_last() -> None:
    kept, copies = KeptEpoch("best", epochs=2), []
    kept.after_epoch(1, 70.0, 0.5, _copies(copies))
    kept.after_epoch(2, 70.0, 0.5, _copies(copies))
    assert kept.epoch == 2
    assert len(copies) == 1  # epoch 1's, dropped when epoch 2 ties it
    assert kept.restore(lambda state: pytest.fail("the final weights are the kept ones")) is False


def test_without_validation_best_is_the_last_epoch() -> None:
    kept = KeptEpoch("best", epochs=2)
    for epoch in (1, 2):
        kept.after_epoch(epoch, None, None, lambda: pytest.fail("nothing to compare"))
    assert (kept.epoch, kept.val_acc) == (2, None)


def test_an_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_epoch must be one of last, best"):
        KeptEpoch("first", epochs=2)


def _saved_model_validation_loss(model_dir: Path, validation: Path) -> float:
    """The saved model's mean loss on the validation rows, as train.py's validate computes it."""
    import train

    model, tokenizer, pooling = load_for_inference(model_dir)
    summary = json.loads((model_dir / "training_summary.json").read_text())
    args = argparse.Namespace(**summary["hyperparameters"])
    reviews = read_reviews(validation)
    ids = tokenize(tokenizer, reviews.texts, args.max_seq_length)
    precision = choose_precision(args.precision, torch.device("cpu"))
    loss, _ = train.validate(model, ids, reviews.label_ids, args, tokenizer.pad_token_id, precision, torch.device("cpu"))
    return loss


@pytest.mark.slow
def test_by_default_the_last_epoch_is_saved_and_is_the_objective(trained_cls_model: TrainedModel, channels: Channels) -> None:
    summary = json.loads((trained_cls_model.model_dir / "training_summary.json").read_text())
    last = summary["epochs"][-1]
    assert (summary["saved_epoch"], summary["saved_val_acc"]) == (2, last["val_acc"])
    assert float(re.findall(ACC_LINE, trained_cls_model.result.stdout)[-1]) == pytest.approx(last["val_acc"], abs=0.01)
    loss = _saved_model_validation_loss(trained_cls_model.model_dir, channels.validation)
    assert loss == pytest.approx(last["val_loss"], abs=1e-3)


def test_best_restores_an_earlier_epoch_and_prints_its_accuracy_last(
    channels: Channels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real training loop with validation results scripted (epoch 1 the best): the file holds epoch 1's
    weights, and the last metric line (the tuner's objective) is epoch 1's."""
    import train

    scripted = iter([(0.50, 80.0), (0.60, 70.0), (0.55, 75.0)])
    weights_at: list[dict[str, torch.Tensor]] = []

    def scripted_validate(model: torch.nn.Module, *args: object) -> tuple[float, float]:
        weights_at.append({k: v.detach().float().clone() for k, v in model.state_dict().items()})
        return next(scripted)

    monkeypatch.setattr(train, "validate", scripted_validate)
    model_dir = train_in_process(
        channels,
        tmp_path,
        "--epochs 3 --train_steps_per_epoch 2 --learning_rate 1e-3 --freeze_bert_layer 5 --keep_epoch best",
    )

    stdout = capsys.readouterr().out
    assert [float(v) for v in re.findall(ACC_LINE, stdout)] == [80.0, 70.0, 75.0, 80.0]
    assert [float(v) for v in re.findall(VAL_LINE, stdout)] == [0.5, 0.6, 0.55, 0.5]
    *_, last = (line for line in stdout.splitlines() if "val_acc" in line)
    assert last.startswith(f"{train.KEPT_EPOCH_PREFIX} 1 - ")  # the local service counts no epoch for it
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert (summary["saved_epoch"], summary["saved_val_acc"]) == (1, 80.0)
    saved = load_file(str(model_dir / "model.safetensors"))
    head = next(name for name in saved if name.startswith("classifier") and name.endswith("weight"))
    assert not torch.equal(weights_at[0][head], weights_at[2][head])  # the head trained on after epoch 1
    torch.testing.assert_close(saved[head].float(), weights_at[0][head])


def test_the_local_service_knows_the_kept_epoch_line_by_train_py_s_prefix() -> None:
    import train

    from reviewtune.local.sagemaker import training

    assert training.KEPT_EPOCH_PREFIX == train.KEPT_EPOCH_PREFIX
