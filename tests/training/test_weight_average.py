"""The moving average of the trained weights (weight_average.py) and train.py's --ema_decay / --label_smoothing."""

from __future__ import annotations

import json

import pytest
import torch
import train
from safetensors.torch import load_file
from weight_average import ExponentialMovingAverage

from .conftest import Channels, train_in_process


def _parameters(*values: list[float]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.tensor(value)) for value in values]


def test_the_decay_rises_to_its_value() -> None:
    average = ExponentialMovingAverage(_parameters([0.0]), decay=0.99)
    seen = []
    for _ in range(1000):
        seen.append(average.current_decay())
        average.update()
    assert seen[0] == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    assert seen == sorted(seen)
    assert seen[-1] == 0.99


def test_update_moves_the_average_towards_the_parameters() -> None:
    (weight,) = parameters = _parameters([0.0, 10.0])
    average = ExponentialMovingAverage(parameters, decay=0.5)
    with torch.no_grad():
        weight.copy_(torch.tensor([4.0, 2.0]))
    average.update()  # decay min(0.5, 1/10) = 0.1: shadow = 0.1 * old + 0.9 * new
    assert average.shadow[0].tolist() == pytest.approx([3.6, 2.8])
    average.update()  # decay min(0.5, 2/11)
    expected = [3.6 + (4.0 - 3.6) * (1 - 2 / 11), 2.8 + (2.0 - 2.8) * (1 - 2 / 11)]
    assert average.shadow[0].tolist() == pytest.approx(expected)


def test_swapped_in_puts_the_average_in_and_the_trained_weights_back() -> None:
    (weight,) = parameters = _parameters([1.0, 1.0])
    average = ExponentialMovingAverage(parameters, decay=0.5)
    with torch.no_grad():
        weight.copy_(torch.tensor([3.0, 5.0]))
    with average.swapped_in():
        assert weight.tolist() == [1.0, 1.0]
    assert weight.tolist() == [3.0, 5.0]
    with pytest.raises(RuntimeError, match="boom"), average.swapped_in():
        raise RuntimeError("boom")
    assert weight.tolist() == [3.0, 5.0]
    average.copy_to_model()
    assert weight.tolist() == [1.0, 1.0]


def test_bf16_parameters_are_averaged_in_fp32() -> None:
    parameters = [torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))]
    average = ExponentialMovingAverage(parameters, decay=0.9)
    assert average.shadow[0].dtype == torch.float32
    average.copy_to_model()
    assert parameters[0].dtype == torch.bfloat16


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_a_decay_outside_the_open_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay must be in"):
        ExponentialMovingAverage(_parameters([0.0]), decay=decay)


@pytest.mark.parametrize("flag", ["--ema_decay", "--label_smoothing"])
@pytest.mark.parametrize("value", ["1", "-0.1"])
def test_train_refuses_values_outside_zero_to_one(flag: str, value: str) -> None:
    with pytest.raises(SystemExit, match=f"{flag} must be in"):
        train.parse_args([flag, value])


def test_train_saves_the_averaged_weights(
    channels: Channels, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --ema_decay the saved model holds the average, not the last step's weights."""
    recorded: dict[str, list[torch.Tensor]] = {}

    class Recording(ExponentialMovingAverage):
        def copy_to_model(self) -> None:
            recorded["trained"] = [p.detach().float().clone() for p in self.parameters]
            recorded["average"] = [s.clone() for s in self.shadow]
            super().copy_to_model()

    monkeypatch.setattr(train, "ExponentialMovingAverage", Recording)
    model_dir = train_in_process(
        channels,
        tmp_path,
        "--epochs 1 --train_steps_per_epoch 3 --learning_rate 1e-3 --freeze_bert_layer 5 --ema_decay 0.9 "
        "--label_smoothing 0.1",
    )

    assert recorded, "the last epoch was the best: the average is copied into the model before saving"
    saved = load_file(str(model_dir / "model.safetensors"))
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert summary["hyperparameters"]["ema_decay"] == 0.9
    assert summary["hyperparameters"]["label_smoothing"] == 0.1
    # the head trains, so its last weights and their average differ; the file holds the average
    head = [name for name in saved if name.startswith("classifier") and name.endswith("weight")]
    assert head, sorted(saved)[:5]
    shapes = {tuple(t.shape): i for i, t in enumerate(recorded["average"])}
    index = shapes[tuple(saved[head[0]].shape)]
    assert not torch.allclose(recorded["trained"][index], recorded["average"][index])
    torch.testing.assert_close(saved[head[0]].float(), recorded["average"][index])
