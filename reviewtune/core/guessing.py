"""The accuracy a model needs to beat to have learnt anything: always answering the test split's most common class.

A third for balanced classes, more for a split where one class dominates. A model at or below it is no better than
that constant answer, whatever its accuracy looks like: it never becomes champion on its own (``champion.plan_challenge``)
and its message warns (``messages``); a person may still promote it by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from reviewtune.core import display
from reviewtune.core.dataset import LABEL_NAMES, LABELS


@dataclass(frozen=True)
class MostCommonClass:
    """The test split's most common class (-1, 0 or 1) and its share of the test reviews (0..1); ``tied``: the other
    classes as common."""

    label: int
    share: float
    tied: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """``negative``; ``negative or neutral`` for two classes as common; ``any one class`` for three."""
        labels = (self.label, *self.tied)
        if len(labels) == len(LABELS):
            return "any one class"
        return " or ".join(LABEL_NAMES[label] for label in labels)

    def beaten_by(self, accuracy: float | Decimal) -> bool:
        """Whether ``accuracy`` (0..1) is above the share (rounded to 1e-9: 1/3 as a float is not below itself)."""
        return round(float(accuracy) - self.share, 9) > 0

    def text(self) -> str:
        """``no better than always answering neutral (38.89 % of the test reviews)``."""
        return f"no better than always answering {self.name} ({display.percent(self.share)} of the test reviews)"


def most_common_class(metrics: Any) -> MostCommonClass | None:
    """From evaluation.json's ``metrics`` (``per_class.<label>.support``): None unless every class's support is a
    number >= 0 and they add up to more than none (an evaluation that did not say cannot be judged)."""
    per_class = metrics.get("per_class") if isinstance(metrics, Mapping) else None
    if not isinstance(per_class, Mapping):
        return None
    supports: dict[int, float] = {}
    for label in LABELS:
        scores = per_class.get(str(label))
        support = display.number(scores.get("support")) if isinstance(scores, Mapping) else None
        if support is None or support < 0:
            return None
        supports[label] = support
    total = sum(supports.values())
    if not total:
        return None
    label = max(LABELS, key=lambda name: supports[name])  # a tie: the first of -1, 0, 1, the others named too
    tied = tuple(other for other in LABELS if other != label and supports[other] == supports[label])
    return MostCommonClass(label, supports[label] / total, tied)
