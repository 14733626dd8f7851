"""An exponential moving average of the trainable weights, for validating and saving a smoother model than the last
step's (train.py's ``--ema_decay``).

Only the parameters that train are averaged (with the bottom layers frozen, about a third of all-mpnet-base-v2), in
fp32, on the parameters' device: ``torch.optim.swa_utils.AveragedModel`` would copy the whole model, frozen layers
included (438 MB more for all-mpnet-base-v2, whose jobs must stay under 5 GB). The decay starts low and rises to ``decay`` (``(1 + t) / (10 + t)``, as timm's and
TensorFlow's EMA do), so that the first steps, far from the pretrained weights' optimum, do not dominate the average.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch


class ExponentialMovingAverage:
    def __init__(self, parameters: Sequence[torch.nn.Parameter], decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.parameters = list(parameters)
        self.shadow = [p.detach().float().clone() for p in self.parameters]
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the parameters after an optimizer step."""
        weight = 1.0 - self.current_decay()
        self.updates += 1
        for shadow, parameter in zip(self.shadow, self.parameters, strict=True):
            shadow.lerp_(parameter.detach().float(), weight)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The averaged weights in the model for the block (validation, a snapshot), the trained ones back after."""
        with torch.no_grad():
            backup = [p.detach().clone() for p in self.parameters]
            self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for parameter, saved in zip(self.parameters, backup, strict=True):
                    parameter.copy_(saved)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Leave the averaged weights in the model (after the last step)."""
        for parameter, shadow in zip(self.parameters, self.shadow, strict=True):
            parameter.copy_(shadow)
