"""What a training job's description says about one trial beyond its objective: epochs run, last loss, early stop;
and the description itself, which a deleted training job no longer has.

SageMaker keeps only each metric's final value per training job (FinalMetricDataList); train.py prints
``epoch: N`` after every epoch, so the final ``train:epoch`` value is the number of epochs the trial ran.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from reviewtune.core import aws_errors
from reviewtune.core.metrics import EPOCH_METRIC, OBJECTIVE_METRIC, PLANNED_STEPS_METRIC

VALIDATION_LOSS_METRIC = "validation:loss"
DELETED_TRAINING_JOB = "SageMaker no longer knows the training job (deleted?)"


def describe_training_job(sagemaker: Any, name: str) -> dict[str, Any] | None:
    """DescribeTrainingJob's answer; None when SageMaker says there is no such job: a person deleted it
    (DeleteTrainingJob forgets a job that ended; its model stays in S3, and the tuning job may still list it)."""
    try:
        return sagemaker.describe_training_job(TrainingJobName=name)
    except ClientError as exc:
        if aws_errors.not_found(exc):
            return None
        raise


def final_metrics(description: dict[str, Any]) -> dict[str, float]:
    """``{metric name: final value}`` of a DescribeTrainingJob response."""
    return {m["MetricName"]: m["Value"] for m in description.get("FinalMetricDataList") or []}


def epochs_run(description: dict[str, Any]) -> int | None:
    value = final_metrics(description).get(EPOCH_METRIC)
    return None if value is None else int(value)


def planned_steps_pct(description: dict[str, Any]) -> float | None:
    """The share of its planned steps a trial trained, in percent: under 100 when its time limit
    (train.py's max_train_seconds) ended its training early."""
    return final_metrics(description).get(PLANNED_STEPS_METRIC)


def time_limited_share(value: float | None) -> float | None:
    """A recorded ``planned_steps_pct`` when the trial's time limit cut its steps (under 100), else None (the whole
    plan trained, or no figure)."""
    return float(value) if value is not None and float(value) < 100 else None


def latest_epoch(description: dict[str, Any]) -> tuple[int, float | None]:
    """The epochs a trial has run so far and the last one's validation accuracy (``None`` before the first)."""
    metrics = final_metrics(description)
    return int(metrics.get(EPOCH_METRIC, 0)), metrics.get(OBJECTIVE_METRIC)


def early_stopped(training_status: str, tuning_status: str, secondary_status: str | None = None) -> bool:
    """A trial stopped while its tuning job was not stopped was stopped early by the tuner, unless its own time
    limit stopped it (SecondaryStatus MaxRuntimeExceeded: MaxRuntimeInSeconds, a hung trial; MaxWaitTimeExceeded:
    a spot trial's MaxWaitTimeInSeconds)."""
    return (training_status == "Stopped" and tuning_status not in ("Stopping", "Stopped")
            and secondary_status not in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"))


def trial_extras(description: dict[str, Any]) -> dict[str, Any]:
    """The fields a recorded trial adds from its DescribeTrainingJob response."""
    return {
        "epochs": epochs_run(description),
        "val_loss": final_metrics(description).get(VALIDATION_LOSS_METRIC),
        "planned_steps_pct": planned_steps_pct(description),
    }
