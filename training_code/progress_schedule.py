"""A learning-rate schedule driven by how far training is, in steps or in seconds, whichever is further.

A job planned to fit a time budget (``--max_train_seconds``) may run on a machine slower than the plan assumed. Its
progress is then the larger of the steps done over the steps planned and the seconds of training steps spent over
the seconds allowed: warm-up and decay follow that progress, each epoch ends when the progress reaches its share
(epoch e of E ends at e / E) and the last ends at 1, with the rate decayed to zero as the plan meant. On a machine as
fast as planned the steps are ahead and nothing changes; without a time limit it is the usual per-step schedule
(warm-up over ``warmup_ratio`` of the steps, then linear or cosine decay, or constant).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

SCHEDULES = ("linear", "cosine", "constant")


def lr_multiplier(schedule: str, progress: float, warmup_ratio: float) -> float:
    """The share of the peak learning rate at ``progress`` (0..1) of training."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup_ratio:
        return progress / warmup_ratio
    if schedule == "constant":
        return 1.0
    after_warmup = (progress - warmup_ratio) / (1.0 - warmup_ratio) if warmup_ratio < 1 else 1.0
    if schedule == "linear":
        return max(0.0, 1.0 - after_warmup)
    return 0.5 * (1.0 + math.cos(math.pi * after_warmup))


class TrainingProgress:
    """Steps done and seconds of training steps spent, against the plan (``steps_per_epoch`` x ``epochs``) and the
    time limit (``max_seconds``; 0 = none). Validation is not counted: only the steps' own time.

    An epoch the time limit ended counts as done for the schedule (:meth:`end_epoch`), so a later epoch that runs
    faster than the clock still ends with the rate decayed to zero; :attr:`trained` counts the steps really trained.
    """

    def __init__(self, steps_per_epoch: int, epochs: int, max_seconds: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if steps_per_epoch < 1 or epochs < 1:
            raise ValueError("steps_per_epoch and epochs must be at least 1")
        if max_seconds < 0:
            raise ValueError(f"max_seconds must be 0 (no limit) or positive, got {max_seconds}")
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.total_steps = steps_per_epoch * epochs
        self.max_seconds = max_seconds
        self.steps = 0  # where the schedule is, in steps
        self.trained = 0  # steps really trained
        self.seconds = 0.0
        self._clock = clock
        self._since: float | None = None

    def start(self) -> None:
        """Steps are being trained from now (call again after a pause, such as validation)."""
        self._since = self._clock()

    def step_done(self) -> None:
        now = self._clock()
        if self._since is not None:
            self.seconds += now - self._since
        self._since = now
        self.steps += 1
        self.trained += 1

    def pause(self) -> None:
        """Stop counting time until the next :meth:`start` (validation, saving)."""
        if self._since is not None:
            self.seconds += self._clock() - self._since
        self._since = None

    def end_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (from 1) is over: the schedule counts its planned steps as done, trained or not."""
        self.steps = max(self.steps, epoch * self.steps_per_epoch)

    def trained_share(self, epochs_run: int) -> float:
        """The share of the planned steps of the epochs run that were trained, in percent (100 unless the time limit
        ended an epoch early; a trial stopped after an epoch trained all of that epoch's steps)."""
        return 100.0 * self.trained / (self.steps_per_epoch * max(1, epochs_run))

    def fraction(self) -> float:
        done = self.steps / self.total_steps
        if self.max_seconds > 0:
            done = max(done, self.seconds / self.max_seconds)
        return min(done, 1.0)

    def epoch_over(self, epoch: int) -> bool:
        """Epoch ``epoch`` (from 1) has had its share of the time: it ends now even if steps are left."""
        return self.max_seconds > 0 and self.seconds / self.max_seconds >= epoch / self.epochs


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup_ratio: float,
                    progress: TrainingProgress) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler whose ``step()`` sets each group's rate from ``progress`` (call it after ``progress.step_done``)."""
    lr_multiplier(schedule, 0.0, warmup_ratio)  # an unknown schedule fails here, not at the first step
    warmup = round(warmup_ratio * progress.total_steps) / progress.total_steps  # whole steps, as per-step schedules
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda _step: lr_multiplier(schedule, progress.fraction(), warmup)
    )
