"""The metric line format of train.py and the SageMaker MetricDefinitions made from it (one place)."""

from __future__ import annotations

import re

OBJECTIVE_METRIC = "validation:accuracy"
OBJECTIVE_TYPE = "Maximize"

# train.py prints, after every epoch: "val_loss: 0.6123 - val_acc: 73.05" (accuracy in percent).
METRIC_DEFINITIONS = (
    {"Name": "validation:loss", "Regex": r"val_loss: ([0-9.]+)"},
    {"Name": "validation:accuracy", "Regex": r"val_acc: ([0-9.]+)"},
    {"Name": "train:loss", "Regex": r"train_loss: ([0-9.]+)"},
    {"Name": "train:epoch", "Regex": r"\bepoch: ([0-9]+)"},  # "epoch: 2": its final value is the epochs run
    # the share of the job's planned steps trained so far: its final value is under 100 when a time limit cut them
    {"Name": "train:planned_steps_pct", "Regex": r"planned_steps_pct: ([0-9.]+)"},
)
EPOCH_METRIC = "train:epoch"
PLANNED_STEPS_METRIC = "train:planned_steps_pct"


def metric_definitions() -> list[dict[str, str]]:
    return [dict(definition) for definition in METRIC_DEFINITIONS]


def printed_values(log: str, metric: str) -> list[float]:
    """Every value of ``metric`` a training log printed, in order (what SageMaker's regex would read)."""
    regex = next(d["Regex"] for d in METRIC_DEFINITIONS if d["Name"] == metric)
    return [float(value) for value in re.findall(regex, log)]
