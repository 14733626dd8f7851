"""The learning-rate schedule that follows steps or seconds, whichever is further, the seconds being what the job's
time limit (train.py's max_train_seconds) leaves its steps."""

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


def test_the_rest_of_the_job_shrinks_the_time_its_steps_have() -> None:
    """A 100-second job that spent 40 s starting before its first step, with two validation passes and 5 s of saving
    ahead: its steps get what is left, and a measured pass replaces the estimate of the passes left."""
    clock = ManualClock()
    clock.now = 40.0
    progress = TrainingProgress(100, epochs=1, max_seconds=100.0, clock=clock, job_started=0.0, validations=2,
                                validation_steps=5.0, save_seconds=5.0)
    progress.start()
    clock.now += 1.0
    progress.step_done()
    # before a pass ran, each is estimated as 5 steps at the 1 s a step so far
    assert progress.seconds_ahead() == 15.0
    assert progress.step_seconds_allowed == pytest.approx(100 - 40 - 15)
    progress.pause()
    progress.validation_started()
    clock.now += 20.0  # a pass four times slower than estimated
    progress.validation_ended()
    progress.start()
    clock.now += 1.0
    progress.step_done()
    assert progress.validations_left == 1 and progress.seconds_ahead() == 25.0  # 20 s + saving
    assert progress.step_seconds_allowed == pytest.approx(100 - 60 - 25)
    assert progress.fraction() == pytest.approx(2 / 15)  # the clock is further than the 2 of 100 steps
    assert progress.job_seconds() == 62.0


def test_an_epoch_ends_when_its_steps_have_had_their_share_of_what_the_job_leaves_them() -> None:
    """A 60-second job with 20 s of start-up and 10 s of saving ahead: 30 s for the steps of two epochs, one second a
    step, so each epoch ends after 15 steps; without start-up and saving counted it would have run 30."""
    clock = ManualClock()
    clock.now = 20.0
    progress = TrainingProgress(50, epochs=2, max_seconds=60.0, clock=clock, job_started=0.0, save_seconds=10.0)
    ended = []
    for epoch in (1, 2):
        progress.start()
        for step in range(1, 51):
            clock.now += 1.0
            progress.step_done()
            if progress.epoch_over(epoch):
                ended.append(step)
                break
        progress.pause()
        progress.end_epoch(epoch)
    assert ended == [15, 15]
    assert progress.job_seconds() + 10.0 == 60.0  # saving ends the job at its limit


def test_the_rate_never_rises_when_faster_steps_shrink_the_estimate_of_the_passes_ahead() -> None:
    """A slow first step (10 s) makes the two passes ahead look like 200 s, so the steps have 100 of the 300 s and are
    10 % into them; a fast second step halves that estimate and the steps have 199 s, of which 10.1 s are 5 %. The
    schedule stays at the 10 % it reached instead of raising the rate again."""
    clock = ManualClock()
    optimizer = _optimizer()
    progress = TrainingProgress(100, epochs=2, max_seconds=300.0, clock=clock, validations=2, validation_steps=10.0)
    scheduler = build_scheduler(optimizer, "linear", 0.0, progress)
    progress.start()
    rates = []
    for seconds in (10.0, 0.1):
        clock.now += seconds
        optimizer.step()
        progress.step_done()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert progress.step_seconds_allowed == pytest.approx(199.0)
    assert rates == pytest.approx([0.9e-3, 0.9e-3])  # 10 % of the way: not 94.9 % of the peak at 5 %


def test_the_rate_never_rises_again_when_a_measured_pass_frees_time() -> None:
    """Before a validation pass ran, each is estimated at 20 steps' worth (20 s): epoch 1's steps get 50 of the 100 s and
    it ends after 25 steps. The pass takes 1 s, so epoch 2's steps have 88 s: the share of them the 25 steps done
    are (28 %) is lower than the 50 % reached, and the rate goes on from where epoch 1 left it."""
    clock = ManualClock()
    clock.now = 10.0
    optimizer = _optimizer()
    progress = TrainingProgress(100, epochs=2, max_seconds=100.0, clock=clock, job_started=0.0, validations=2,
                                validation_steps=20.0)
    scheduler = build_scheduler(optimizer, "linear", 0.1, progress)
    ended, rates = [], []
    for epoch in (1, 2):
        progress.start()
        for step in range(1, 101):
            clock.now += 1.0
            optimizer.step()
            progress.step_done()
            scheduler.step()
            rates.append(optimizer.param_groups[0]["lr"])
            if progress.epoch_over(epoch):
                ended.append(step)
                break
        progress.pause()
        progress.end_epoch(epoch)
        progress.validation_started()
        clock.now += 1.0
        progress.validation_ended()
    assert ended == [25, 63]  # (25 + 63) / 88 s: the second epoch's steps use what the short pass left them
    after_warmup = rates[rates.index(max(rates)):]
    assert all(later <= earlier for earlier, later in zip(after_warmup, after_warmup[1:], strict=False))
    # epoch 2 starts where epoch 1 ended (its planned steps count as done: 101 of 200), not at the 28 % of the time
    assert rates[25] == pytest.approx(1e-3 * lr_multiplier("linear", 101 / 200, 0.1))
    assert rates[-1] == 0.0


def test_a_job_whose_start_up_used_its_whole_time_ends_its_epochs_after_one_step() -> None:
    clock = ManualClock()
    clock.now = 100.0
    progress = TrainingProgress(10, epochs=2, max_seconds=50.0, clock=clock, job_started=0.0)
    progress.start()
    clock.now += 1.0
    progress.step_done()
    assert progress.step_seconds_allowed == 0.0 and progress.fraction() == 1.0
    assert progress.epoch_over(1) and progress.epoch_over(2)


def test_bad_settings_fail_before_training() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        build_scheduler(_optimizer(), "step", 0.1, TrainingProgress(10, 1))
    with pytest.raises(ValueError, match="max_seconds"):
        TrainingProgress(10, 1, max_seconds=-1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        TrainingProgress(0, 1)


def _steps_of_one_second(monkeypatch, validation_seconds: float) -> None:
    """train.py's clock, patched: the job started one second before its progress was set up, each step takes one
    second and each validation pass ``validation_seconds``; saving is allowed 2 s."""
    import train

    class Clocked(TrainingProgress):
        def __init__(self, *args, **kwargs) -> None:
            self.clock = ManualClock()
            super().__init__(*args, **{**kwargs, "clock": self.clock, "job_started": -1.0})

        def step_done(self) -> None:
            self.clock.now += 1.0
            super().step_done()

        def validation_started(self) -> None:
            super().validation_started()
            self.clock.now += validation_seconds

    monkeypatch.setattr(train, "TrainingProgress", Clocked)
    monkeypatch.setattr(train, "SAVE_SECONDS_BASE", 2.0)
    monkeypatch.setattr(train, "SAVE_BYTES_PER_SECOND", float("inf"))


def test_train_py_ends_epochs_by_the_time_limit_and_saves(channels: Channels, tmp_path, monkeypatch, capsys) -> None:
    """train.py with a clock that makes every step one second, the job's start-up one second before it and each
    validation pass half a second; saving is allowed 2 s. 60 rows are 8 steps of 8 an epoch, 16 planned. A 10-second
    job leaves its steps 5.75 s in epoch 1 (two passes of 15 rows estimated at 0.625 steps each), so epoch 1 ends after
    3 steps; once a pass measured 0.5 s they have 6 s, and epoch 2 ends after 3 more. The saved summary says so."""
    _steps_of_one_second(monkeypatch, validation_seconds=0.5)
    model_dir = train_in_process(channels, tmp_path, "--epochs 2 --max_train_seconds 10 --validation_batch_size 8")
    out = capsys.readouterr().out
    assert "time_limit: epoch 1 ends after step 3 of 8 - step_seconds: 3.0 of 5.8 - job_seconds: 4.0 of 10" in out
    assert "time_limit: epoch 2 ends after step 3 of 8 - step_seconds: 6.0 of 6.0 - job_seconds: 7.5 of 10" in out
    assert out.count("val_acc:") == 2 and "planned_steps_pct: 37.5" in out  # 6 of 16 steps
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert [e["time_limited"] for e in summary["epochs"]] == [True, True]
    assert all(16 < e["train_examples"] <= 24 for e in summary["epochs"])  # three batches of at most 8
    assert summary["train_step_seconds"] == 6.0 and summary["hyperparameters"]["max_train_seconds"] == 10.0
    assert summary["job_seconds"] == 8.0  # and 2 s of saving allowed: the job ends within its 10
    assert (model_dir / "model.safetensors").is_file()


def test_train_py_trains_no_epoch_its_time_has_gone_to_validation(channels: Channels, tmp_path, monkeypatch,
                                                                 capsys) -> None:
    """The steps as above, but the first validation pass takes 10 s: the 10-second job has no time left for epoch 2, so
    it saves epoch 1's model and reports the share of all planned steps it trained (3 of 16)."""
    _steps_of_one_second(monkeypatch, validation_seconds=10.0)
    model_dir = train_in_process(channels, tmp_path, "--epochs 2 --max_train_seconds 10 --validation_batch_size 8")
    out = capsys.readouterr().out
    assert "time_limit: no time left for epoch 2 - job_seconds: 14.0 of 10" in out
    assert out.count("val_acc:") == 1 and out.rstrip().count("planned_steps_pct: 18.8") == 1
    assert out.index("planned_steps_pct: 18.8") > out.index("planned_steps_pct: 37.5")  # epoch 1's 3 of 8, then 3 of 16
    summary = json.loads((model_dir / "training_summary.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [1] and summary["saved_epoch"] == 1


def test_the_job_clock_starts_before_torch_loads(monkeypatch) -> None:
    """main() hands train() the time train.py started, so start-up counts against --max_train_seconds."""
    import train

    seen = {}
    monkeypatch.setattr(train, "train", lambda args, env, job_started=None: seen.update(job_started=job_started))
    monkeypatch.setattr(train.STOP, "install", lambda: None)
    assert train.main(["--max_train_seconds", "60"]) == 0
    assert seen["job_started"] == train.JOB_STARTED


def test_train_py_estimates_a_validation_pass_as_the_local_plan_does() -> None:
    """training_code cannot import reviewtune: the two copies of the forward-pass speed-up are kept equal here."""
    import train

    from reviewtune import budget

    assert train.INFERENCE_SPEEDUP == budget.INFERENCE_SPEEDUP
