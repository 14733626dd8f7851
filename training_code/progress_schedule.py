"""A learning-rate schedule driven by how far training is, in steps or in seconds, whichever is further.

A job planned to fit a time budget (``--max_train_seconds``: the seconds of the whole training job, from its start to
its saved model) may run on a machine slower than the plan assumed. Its steps then get the time the rest of the job
leaves them: the limit less what the job spent besides its steps (start-up, tokenization, validation) and what it
still has to do after them (the validation passes left, as long as the last one took or, before one has run, as
estimated from the steps' own speed, and saving the model). Its progress is the larger of the steps done over the
steps planned and the seconds of steps spent over the seconds they have: warm-up and decay follow that progress, each
epoch ends when the progress reaches its share (epoch e of E ends at e / E) and the last ends at 1, with the rate
decayed to zero as the plan meant. On a machine as fast as planned the steps are ahead and nothing changes; without
a time limit it is the usual per-step schedule (warm-up over ``warmup_ratio`` of the steps, then linear or cosine
decay, or constant).
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
    job's time limit (``max_seconds`` from ``job_started``, a ``clock`` value; 0 = no limit).

    The seconds the steps may take are what the limit leaves once the rest of the job is counted: the time spent so
    far besides the steps, then ``validations`` passes (one after each epoch) as long as the last one measured
    (:meth:`validation_started` / :meth:`validation_ended`) or, before one ran, ``validation_steps`` training steps'
    worth each (a pass over the validation rows costs about that many steps), and ``save_seconds``. They are
    computed after each step (:meth:`step_done`).

    An epoch the time limit ended counts as done for the schedule (:meth:`end_epoch`), so a later epoch that runs
    faster than the clock still ends with the rate decayed to zero; :attr:`trained` counts the steps really trained.
    """

    def __init__(self, steps_per_epoch: int, epochs: int, max_seconds: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter, *, job_started: float | None = None,
                 validations: int = 0, validation_steps: float = 0.0, save_seconds: float = 0.0) -> None:
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
        self.seconds = 0.0  # of training steps
        self._clock = clock
        self._since: float | None = None
        self.job_started = clock() if job_started is None else job_started
        self.validations_left = validations
        self._validation_steps = validation_steps
        self._validation_seconds: float | None = None  # the last pass, measured
        self._validation_since: float | None = None
        self._save_seconds = save_seconds
        self.step_seconds_allowed = max_seconds  # recomputed after each step
        self._time_done = 0.0  # the furthest share of their seconds the steps have reached: never goes back

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
        if self.max_seconds > 0:
            self._measure(now)

    def pause(self) -> None:
        """Stop counting time until the next :meth:`start` (validation, saving)."""
        if self._since is not None:
            self.seconds += self._clock() - self._since
        self._since = None

    def validation_started(self) -> None:
        self._validation_since = self._clock()

    def validation_ended(self) -> None:
        """A validation pass is over: the passes left are expected to take as long as it did."""
        if self._validation_since is not None:
            self._validation_seconds = self._clock() - self._validation_since
        self._validation_since = None
        self.validations_left = max(0, self.validations_left - 1)

    def job_seconds(self) -> float:
        return self._clock() - self.job_started

    def seconds_ahead(self) -> float:
        """What the job is expected to spend after its steps: the validation passes left and saving the model."""
        if self._validation_seconds is not None:
            per_pass = self._validation_seconds
        else:
            per_pass = self._validation_steps * self.seconds / self.trained if self.trained else 0.0
        return self.validations_left * per_pass + self._save_seconds

    def _measure(self, now: float) -> None:
        """The seconds the steps have as of ``now``, and how far they are into them. The seconds may grow (a pass
        shorter than estimated, one fewer left) or shrink; the share reached is kept, so the rate never rises again
        and an epoch ended by the clock stays ended."""
        besides_steps = (now - self.job_started) - self.seconds
        self.step_seconds_allowed = max(0.0, self.max_seconds - besides_steps - self.seconds_ahead())
        share = self.seconds / self.step_seconds_allowed if self.step_seconds_allowed > 0 else 1.0
        self._time_done = max(self._time_done, share)

    def time_up(self) -> bool:
        """No seconds are left for more steps (asked before an epoch starts: start-up or validation took them)."""
        if self.max_seconds <= 0:
            return False
        self._measure(self._clock())
        return self._time_done >= 1.0

    def end_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (from 1) is over: the schedule counts its planned steps as done, trained or not."""
        self.steps = max(self.steps, epoch * self.steps_per_epoch)

    def trained_share(self, epochs_run: int) -> float:
        """The share of the planned steps of the epochs run that were trained, in percent (100 unless the time limit
        ended an epoch early; a trial stopped after an epoch trained all of that epoch's steps). For a job the time
        limit ended before its last epochs, pass every planned epoch."""
        return 100.0 * self.trained / (self.steps_per_epoch * max(1, epochs_run))

    def fraction(self) -> float:
        return min(max(self.steps / self.total_steps, self._time_done), 1.0)

    def epoch_over(self, epoch: int) -> bool:
        """Epoch ``epoch`` (from 1) has had its share of the time: it ends now even if steps are left."""
        return self.max_seconds > 0 and self._time_done >= epoch / self.epochs


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup_ratio: float,
                    progress: TrainingProgress) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler whose ``step()`` sets each group's rate from ``progress`` (call it after ``progress.step_done``)."""
    lr_multiplier(schedule, 0.0, warmup_ratio)  # an unknown schedule fails here, not at the first step
    warmup = round(warmup_ratio * progress.total_steps) / progress.total_steps  # whole steps, as per-step schedules
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda _step: lr_multiplier(schedule, progress.fraction(), warmup)
    )
