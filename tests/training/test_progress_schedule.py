"""The learning-rate schedule that follows steps or seconds, whichever is further (train.py's max_train_seconds)."""

from __future__ import annotations

import json

import pytest
import torch
from progress_schedule import TrainingProgress, build_scheduler, lr_multiplier

from .conftest import Channels, train_in_process


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _optimizer(rate: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=rate)


@pytest.mark.parametrize(("schedule", "hf_name"), [("linear", "linear"), ("cosine", "cosine"),
                                                    ("constant", "constant_with_warmup")])
@pytest.mark.parametrize("steps_per_epoch", [20, 8, 17, 2])  # warm-up 4, 1.6 -> 2, 3.4 -> 3, 0.4 -> 0 steps
def test_without_a_time_limit_it_is_the_usual_per_step_schedule(schedule: str, hf_name: str, steps_per_epoch: int) -> None:
    from transformers import get_scheduler

    total = 2 * steps_per_epoch
    ours, theirs = _optimizer(), _optimizer()
    progress = TrainingProgress(steps_per_epoch, epochs=2)
    scheduler = build_scheduler(ours, schedule, 0.1, progress)
    reference = get_scheduler(hf_name, theirs, num_warmup_steps=int(round(0.1 * total)), num_training_steps=total)
    rates = []
    for _ in range(total):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], abs=1e-12)
        rates.append(ours.param_groups[0]["lr"])
        ours.step(), theirs.step()
        progress.step_done()
        scheduler.step()
        reference.step()
    assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], abs=1e-12)
    assert max(rates) == pytest.approx(1e-3)
    assert not any(progress.epoch_over(epoch) for epoch in (1, 2))  # no time limit: epochs end by their steps


def test_a_slower_machine_decays_the_rate_by_the_clock_and_ends_each_epoch_at_its_share_of_the_time() -> None:
    clock = ManualClock()
    optimizer = _optimizer()
    progress = TrainingProgress(50, epochs=2, max_seconds=10.0, clock=clock)
    scheduler = build_scheduler(optimizer, "linear", 0.1, progress)
    progress.start()
    ended = []
    for step in range(1, 101):
        clock.now += 1.0  # one second a step: 10 steps use the time 100 steps were planned to take
        optimizer.step()
        progress.step_done()
        scheduler.step()
        if progress.epoch_over(1) and not ended:
            ended.append(step)
        if progress.epoch_over(2):
            break
    assert ended == [5] and step == 10
    assert progress.fraction() == 1.0 and progress.steps / progress.total_steps == 0.1  # the clock set it
    assert optimizer.param_groups[0]["lr"] == 0.0  # decayed to zero when the time is up, as the plan meant
    assert lr_multiplier("linear", 0.05, 0.1) == pytest.approx(0.5)  # warm-up follows the same progress


def test_an_epoch_ended_by_the_clock_counts_as_done_so_a_faster_one_after_it_still_ends_at_zero() -> None:
    """Epoch 1 at one second a step is ended by the clock after 50 of 100 steps; epoch 2 runs five times faster and
    trains all its steps before the time is up: its last step still brings the rate to zero."""
    clock = ManualClock()
    optimizer = _optimizer()
    progress = TrainingProgress(100, epochs=2, max_seconds=100.0, clock=clock)
    scheduler = build_scheduler(optimizer, "linear", 0.1, progress)
    for epoch, seconds_a_step in ((1, 1.0), (2, 0.2)):
        progress.start()
        for _ in range(100):
            clock.now += seconds_a_step
            optimizer.step()
            progress.step_done()
            scheduler.step()
            if progress.epoch_over(epoch):
                break
        progress.pause()
        progress.end_epoch(epoch)
    assert progress.trained == 150 and progress.seconds == pytest.approx(70.0)
    assert optimizer.param_groups[0]["lr"] == 0.0
    assert progress.trained_share(2) == 75.0  # 150 of the 200 planned steps


def test_a_trial_stopped_after_whole_epochs_trained_all_of_their_steps() -> None:
    progress = TrainingProgress(10, epochs=3)
    for epoch in (1, 2):  # then the tuner stops it (early stopping): epoch 3 never runs
        for _ in range(10):
            progress.step_done()
        progress.end_epoch(epoch)
    assert progress.trained_share(2) == 100.0


def test_time_outside_the_steps_is_not_counted() -> None:
    clock = ManualClock()
    progress = TrainingProgress(10, epochs=1, max_seconds=100.0, clock=clock)
    progress.start()
    clock.now = 2.0
    progress.step_done()
    progress.pause()
    clock.now = 50.0  # validation, saving
    progress.start()
    clock.now = 53.0
    progress.step_done()
    progress.pause()
    assert progress.seconds == 5.0 and progress.steps == 2
    assert progress.fraction() == pytest.approx(0.2)  # the steps are further than the 5 % of the time


def test_bad_settings_fail_before_training() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        build_scheduler(_optimizer(), "step", 0.1, TrainingProgress(10, 1))
    with pytest.raises(ValueError, match="max_seconds"):
        TrainingProgress(10, 1, max_seconds=-1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        TrainingProgress(0, 1)


def test_train_py_ends_epochs_by_the_time_limit_and_saves(channels: Channels, tmp_path, monkeypatch, capsys) -> None:
    """train.py with a clock that makes every step one second: 60 rows are 8 steps of 8 an epoch, 16 planned; six
    seconds allowed end each of the two epochs after three steps, and the saved summary says so."""
    import train

    class OneSecondSteps(TrainingProgress):
        def __init__(self, *args, **kwargs) -> None:
            self.clock = ManualClock()
            super().__init__(*args, clock=self.clock, **kwargs)

        def step_done(self) -> None:
            self.clock.now += 1.0
            super().step_done()

    monkeypatch.setattr(train, "TrainingProgress", OneSecondSteps)
    model_dir = train_in_process(channels, tmp_path, "--epochs 2 --max_train_seconds 6 --validation_batch_size 8")
    out = capsys.readouterr().out
    assert "time_limit: epoch 1 ends after step 3 of 8 - train_seconds: 3.0 of 6" in out
    assert "time_limit: epoch 2 ends after step 3 of 8 - train_seconds: 6.0 of 6" in out
    assert out.count("val_acc:") == 2 and "planned_steps_pct: 37.5" in out  # 6 of 16 steps
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert [e["time_limited"] for e in summary["epochs"]] == [True, True]
    assert all(16 < e["train_examples"] <= 24 for e in summary["epochs"])  # three batches of at most 8
    assert summary["train_step_seconds"] == 6.0 and summary["hyperparameters"]["max_train_seconds"] == 6.0
    assert (model_dir / "model.safetensors").is_file()
