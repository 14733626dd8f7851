"""Cost estimates from billable seconds and the dated price table."""

from __future__ import annotations

import pytest

from reviewtune.core import prices
from reviewtune.core.costs import run_cost

TRIALS = [
    {"name": "t-001", "billable_seconds": 1800, "training_seconds": 1800},
    {"name": "t-002", "billable_seconds": 1800, "training_seconds": 1800},
]


def test_training_cost_is_billable_hours_times_the_hourly_price():
    cost = run_cost(TRIALS, training_instance_type="ml.g5.xlarge")

    assert cost.billable_seconds == 3600
    assert cost.training_cost == pytest.approx(prices.TRAINING_PER_HOUR["ml.g5.xlarge"])
    assert [t.cost for t in cost.trials] == pytest.approx([prices.TRAINING_PER_HOUR["ml.g5.xlarge"] / 2] * 2)
    assert cost.total == cost.training_cost
    assert cost.spot_savings is None
    assert cost.prices_as_of == prices.AS_OF


def test_instance_count_multiplies_and_evaluation_is_added():
    cost = run_cost(
        TRIALS,
        training_instance_type="ml.m5.xlarge",
        instance_count=2,
        processing_instance_type="ml.m5.xlarge",
        processing_seconds=360,
    )

    hourly = prices.TRAINING_PER_HOUR["ml.m5.xlarge"]
    assert cost.training_cost == pytest.approx(2 * hourly)
    assert cost.processing_cost == pytest.approx(0.1 * prices.PROCESSING_PER_HOUR["ml.m5.xlarge"])
    assert cost.total == pytest.approx(cost.training_cost + cost.processing_cost)


def test_spot_saving_is_the_unbilled_training_time():
    trials = [{"name": "t-001", "billable_seconds": 900, "training_seconds": 3600}]

    cost = run_cost(trials, training_instance_type="ml.g5.xlarge", spot=True)

    hourly = prices.TRAINING_PER_HOUR["ml.g5.xlarge"]
    assert cost.training_cost == pytest.approx(hourly / 4)
    assert cost.spot_savings == pytest.approx(hourly * 3 / 4)


def test_unknown_instance_type_is_named_not_guessed():
    cost = run_cost(TRIALS, training_instance_type="ml.x99.huge")

    assert cost.training_cost is None and cost.total is None
    assert cost.unpriced == ("ml.x99.huge",)


def test_trial_without_billable_seconds_counts_zero_and_negative_is_refused():
    cost = run_cost([{"name": "failed", "billable_seconds": None}], training_instance_type="ml.g5.xlarge")
    assert cost.training_cost == 0

    with pytest.raises(ValueError, match="must not be negative"):
        run_cost([{"name": "x", "billable_seconds": -1}], training_instance_type="ml.g5.xlarge")


def test_template_defaults_are_priced():
    from reviewtune.cfn_yaml import load_template
    from tests.support.aws import TEMPLATE

    parameters = load_template(TEMPLATE)["Parameters"]
    assert parameters["TrainingInstanceType"]["Default"] in prices.TRAINING_PER_HOUR
    assert parameters["ProcessingInstanceType"]["Default"] in prices.PROCESSING_PER_HOUR


def test_the_evaluation_job_is_priced_from_its_event_or_its_description():
    from datetime import UTC, datetime

    from reviewtune.core.costs import evaluation_cost
    from tests.support.aws import load_event

    detail = load_event("processing_job_completed.json")["detail"]  # 387 s on 1 x ml.m5.xlarge (US$ 0.23 an hour)
    assert evaluation_cost(detail) == {"seconds": 387, "instance_type": "ml.m5.xlarge", "instance_count": 1,
                                       "cost": round(387 * 0.23 / 3600, 4), "currency": "USD"}
    described = {**detail, "ProcessingStartTime": datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
                 "ProcessingEndTime": datetime(2026, 11, 30, 12, 10, tzinfo=UTC)}
    assert evaluation_cost(described)["seconds"] == 600
    unpriced = {**detail, "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.x99.huge", "InstanceCount": 2}}}
    assert evaluation_cost(unpriced)["cost"] is None
    for missing in ("ProcessingStartTime", "ProcessingEndTime", "ProcessingResources"):
        assert evaluation_cost({k: v for k, v in detail.items() if k != missing}) is None
    assert evaluation_cost({**detail, "ProcessingEndTime": detail["ProcessingStartTime"] - 1}) is None
