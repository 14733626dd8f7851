"""The local scheduler: the template's EventBridge Scheduler schedules fire into their function's inbox."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from reviewtune.local.router import package_root
from reviewtune.local.runtime import LocalRuntime
from reviewtune.local.scheduler import LocalScheduler, rate_seconds
from reviewtune.local.stack import FunctionSpec
from tests.local_runtime.conftest import FakeSageMaker

TEMPLATE = package_root() / "template.yaml"


@pytest.mark.parametrize(
    ("expression", "seconds"), [("rate(5 minutes)", 300), ("rate(1 minute)", 60), ("rate(2 hours)", 7200)]
)
def test_rate_expressions_give_their_period(expression, seconds):
    assert rate_seconds(expression) == seconds


def test_cron_expressions_need_a_local_period():
    with pytest.raises(ValueError, match="only rate"):
        rate_seconds("cron(0 12 * * ? *)")


class RecordingSqs:
    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def send_message(self, QueueUrl: str, MessageBody: str) -> dict:  # noqa: N803
        self.sent.append((QueueUrl, json.loads(MessageBody)))
        return {}


def spec(schedules: tuple[str, ...]) -> FunctionSpec:
    return FunctionSpec(
        logical_id="ReconcileFunction",
        function_name="reconcile",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:reconcile",
        handler_file=Path("app.py"),
        handler_name="handler",
        code_dir=Path("."),
        layer_dirs=(),
        environment={},
        timeout=300,
        memory_size=512,
        inbox_queue_url="http://sqs/inbox",
        schedules=schedules,
    )


def test_each_schedule_puts_a_scheduler_event_into_the_inbox_every_period():
    sqs = RecordingSqs()
    scheduler = LocalScheduler([spec(("rate(5 minutes)",)), spec(())], sqs_client=sqs, period_s=0.05)
    assert scheduler.periods == {"ReconcileFunction": 0.05}
    scheduler.start()
    try:
        for _ in range(200):
            if len(sqs.sent) >= 2:
                break
            time.sleep(0.05)
    finally:
        scheduler.stop()
    assert len(sqs.sent) >= 2
    queue, event = sqs.sent[0]
    assert queue == "http://sqs/inbox" and event["source"] == "aws.scheduler"
    assert event["detail"] == {"schedule": "rate(5 minutes)"}


@pytest.mark.skipif(not TEMPLATE.is_file(), reason="template.yaml is not in the repository")
def test_the_local_runtime_runs_the_reconciler_on_the_template_s_schedule(tmp_path):
    with LocalRuntime(
        workdir=tmp_path, template=TEMPLATE, sagemaker_factory=FakeSageMaker, schedule_period_s=1
    ) as runtime:
        assert runtime.scheduler.periods == {"ReconcileFunction": 1}
        passes = []
        for _ in range(240):
            passes = [i for i in runtime.router.invocations if i.function == "ReconcileFunction"]
            if passes:
                break
            time.sleep(0.5)
    assert passes, "the reconciler was never invoked"
    assert passes[0].outcome.value == "succeeded", passes[0].error
    assert passes[0].result["checked"] == 0 and passes[0].result["stuck"] == 0
