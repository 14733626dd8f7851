"""What a run cost, estimated from billable seconds and the dated on-demand price table (``prices.py``).

Training: each trial bills ``BillableTimeInSeconds`` x InstanceCount at the instance type's hourly price
(per-second billing). With managed spot training SageMaker bills less time than the job trained; the
difference, ``TrainingTimeInSeconds - BillableTimeInSeconds``, priced the same way, is the spot saving.
Processing: the evaluation job's run time (end - start) x InstanceCount at its hourly price.
An instance type missing from the table gives no amount; it is named in ``unpriced`` instead of guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reviewtune.core import prices
from reviewtune.core.events import sagemaker_time

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class TrialCost:
    name: str
    billable_seconds: int
    training_seconds: int | None
    cost: float | None
    spot_savings: float | None


@dataclass(frozen=True)
class RunCost:
    """A run's estimated cost: trials, their total, the evaluation job, and where the prices came from."""

    trials: tuple[TrialCost, ...]
    training_instance_type: str
    instance_count: int
    spot: bool
    billable_seconds: int
    training_cost: float | None
    spot_savings: float | None
    processing_instance_type: str | None
    processing_seconds: int | None
    processing_cost: float | None
    unpriced: tuple[str, ...]
    prices_as_of: str = prices.AS_OF
    currency: str = prices.CURRENCY
    region: str = prices.REGION
    note: str = prices.NOTE

    @property
    def total(self) -> float | None:
        parts = [self.training_cost, self.processing_cost if self.processing_seconds is not None else 0.0]
        return None if any(part is None for part in parts) else round(sum(parts), 4)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "total": self.total,
            "training": self.training_cost,
            "processing": self.processing_cost,
            "spot_savings": self.spot_savings,
            "billable_seconds": self.billable_seconds,
            "training_instance_type": self.training_instance_type,
            "instance_count": self.instance_count,
            "spot": self.spot,
            "processing_instance_type": self.processing_instance_type,
            "processing_seconds": self.processing_seconds,
            "unpriced": list(self.unpriced),
            "prices_as_of": self.prices_as_of,
            "region": self.region,
            "note": self.note,
            "trials": [
                {
                    "name": t.name,
                    "billable_seconds": t.billable_seconds,
                    "training_seconds": t.training_seconds,
                    "cost": t.cost,
                    "spot_savings": t.spot_savings,
                }
                for t in self.trials
            ],
        }


def hourly_price(instance_type: str, table: Mapping[str, float]) -> float | None:
    return table.get(instance_type)


def _amount(seconds: float, count: int, per_hour: float | None) -> float | None:
    if per_hour is None:
        return None
    return round(seconds * count * per_hour / SECONDS_PER_HOUR, 4)


def _seconds(value: Any, what: str) -> int | None:
    if value is None:
        return None
    seconds = int(value)
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return seconds


def run_cost(
    trials: Iterable[Mapping[str, Any]],
    *,
    training_instance_type: str,
    instance_count: int = 1,
    spot: bool = False,
    processing_instance_type: str | None = None,
    processing_seconds: float | None = None,
    processing_instance_count: int = 1,
    training_prices: Mapping[str, float] = prices.TRAINING_PER_HOUR,
    processing_prices: Mapping[str, float] = prices.PROCESSING_PER_HOUR,
) -> RunCost:
    """Estimate a run's cost from its trials (``name``, ``billable_seconds``, ``training_seconds``, as the
    run item's ``tuning.trials`` hold them) and, optionally, its evaluation job's run time."""
    if instance_count < 1 or processing_instance_count < 1:
        raise ValueError("instance counts must be at least 1")
    per_hour = hourly_price(training_instance_type, training_prices)
    unpriced = [] if per_hour is not None else [training_instance_type]
    costs = []
    for trial in trials:
        billable = _seconds(trial.get("billable_seconds"), f"billable_seconds of {trial.get('name')}") or 0
        trained = _seconds(trial.get("training_seconds"), f"training_seconds of {trial.get('name')}")
        saved = None
        if spot and trained is not None:
            saved = _amount(max(trained - billable, 0), instance_count, per_hour)
        costs.append(
            TrialCost(
                name=str(trial.get("name")),
                billable_seconds=billable,
                training_seconds=trained,
                cost=_amount(billable, instance_count, per_hour),
                spot_savings=saved,
            )
        )
    billable_total = sum(c.billable_seconds for c in costs)
    savings = [c.spot_savings for c in costs if c.spot_savings is not None]
    processing_cost = None
    seconds = _seconds(processing_seconds, "processing_seconds")
    if seconds is not None:
        if not processing_instance_type:
            raise ValueError("processing_seconds needs processing_instance_type")
        processing_per_hour = hourly_price(processing_instance_type, processing_prices)
        if processing_per_hour is None:
            unpriced.append(processing_instance_type)
        processing_cost = _amount(seconds, processing_instance_count, processing_per_hour)
    return RunCost(
        trials=tuple(costs),
        training_instance_type=training_instance_type,
        instance_count=instance_count,
        spot=spot,
        billable_seconds=billable_total,
        training_cost=_amount(billable_total, instance_count, per_hour),
        spot_savings=round(sum(savings), 4) if spot and savings and per_hour is not None else None,
        processing_instance_type=processing_instance_type,
        processing_seconds=seconds,
        processing_cost=processing_cost,
        unpriced=tuple(unpriced),
    )


def evaluation_cost(job: Mapping[str, Any], table: Mapping[str, float] = prices.PROCESSING_PER_HOUR
                    ) -> dict[str, Any] | None:
    """The evaluation job's estimated cost from its event's detail or its description: its run time
    (ProcessingEndTime - ProcessingStartTime) x InstanceCount at the instance type's hourly price (``cost`` None
    where the table has no price for it); None when the job does not say how long it ran or on what."""
    start, end = sagemaker_time(job.get("ProcessingStartTime")), sagemaker_time(job.get("ProcessingEndTime"))
    cluster = (job.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    instance_type, count = cluster.get("InstanceType"), cluster.get("InstanceCount")
    if start is None or end is None or end < start or not isinstance(instance_type, str) or not instance_type:
        return None
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return None
    seconds = round((end - start).total_seconds())
    return {
        "seconds": seconds,
        "instance_type": instance_type,
        "instance_count": count,
        "cost": _amount(seconds, count, hourly_price(instance_type, table)),
        "currency": prices.CURRENCY,
    }
