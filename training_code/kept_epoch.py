"""Which epoch's weights train.py saves, and the metric line that keeps the tuner's objective that model's.

SageMaker's tuner reads a trial's objective as the *latest* value the job printed
(FinalHyperParameterTuningJobObjectiveMetric), and the best trial's model is what gets evaluated and registered.
So whatever epoch is saved, the last ``val_acc`` line must be that epoch's:

- ``last`` (default): the weights at the end of the schedule (the learning rate decays to zero there); the last
  epoch's line is already the latest one;
- ``best``: the epoch with the highest validation accuracy (among equals, the lowest validation loss; then the
  later epoch); when that is an earlier epoch, its weights are kept in memory and restored at the end, and its
  line is printed once more.

On ~300 validation rows one review moves accuracy by 0.3 points, so ``best`` mostly picks between epochs by noise
and can keep a model taken mid-schedule, at a high learning rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KEEP_RULES = ("last", "best")


class KeptEpoch:
    """Follows the epochs' validation accuracy and holds a copy of the weights to restore, when one is needed."""

    def __init__(self, rule: str, epochs: int) -> None:
        if rule not in KEEP_RULES:
            raise ValueError(f"keep_epoch must be one of {', '.join(KEEP_RULES)}, got {rule!r}")
        self.rule = rule
        self.epochs = epochs
        self.epoch: int | None = None  # the epoch whose weights will be saved
        self.val_acc: float | None = None  # its validation accuracy
        self.val_loss: float | None = None  # and loss
        self.state: dict[str, Any] | None = None  # its weights, while they are not the model's current ones

    def after_epoch(
        self,
        epoch: int,
        val_acc: float | None,
        val_loss: float | None,
        copy_state: Callable[[], dict[str, Any]],
    ) -> None:
        """Records epoch ``epoch`` (accuracy and loss None without validation); ``copy_state`` copies the model's
        current weights and is called only for an epoch before the last that ``best`` keeps."""
        if self.rule == "best" and val_acc is not None and val_loss is not None:
            if self.val_acc is not None and (val_acc, -val_loss) < (self.val_acc, -self.val_loss):
                return
            self.state = copy_state() if epoch < self.epochs else None
        else:
            self.state = None
        self.epoch, self.val_acc, self.val_loss = epoch, val_acc, val_loss

    def restore(self, load_state: Callable[[dict[str, Any]], object]) -> bool:
        """Puts the kept weights back into the model; True when an earlier epoch's weights were restored."""
        if self.state is None:
            return False
        load_state(self.state)
        self.state = None
        return True
