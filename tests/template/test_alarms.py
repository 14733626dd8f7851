"""template.yaml alarms: every dead-letter queue and the reconciler's StuckRuns and MissedDrops metrics tell the
notification topic
when they fire and when they clear, and CloudWatch may publish to that (KMS-encrypted) topic."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.template.helpers import (
    FUNCTIONS,
    ROOT,
    function_environment,
    iam_statements,
    principals,
    properties,
    resources,
    template,
)

TOPIC = {"Ref": "NotificationTopic"}
STUCK_RUNS_SERVICE = "reconcile"


def _queue_of(arn: Any) -> str | None:
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        logical_id, attribute = arn["Fn::GetAtt"]
        if attribute == "Arn" and resources()[logical_id]["Type"] == "AWS::SQS::Queue":
            return logical_id
    return None


def dead_letter_queues() -> dict[str, str]:
    """queue logical id -> the function whose failed invocations or undelivered events end there."""
    found = {}
    for function_id, resource in resources().items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        targets = [(props.get("DeadLetterQueue") or {}).get("TargetArn")]
        for event in (props.get("Events") or {}).values():
            targets.append((event.get("Properties", {}).get("DeadLetterConfig") or {}).get("Arn"))
        for target in targets:
            queue = _queue_of(target)
            if queue:
                found[queue] = function_id
    return found


def alarms() -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in resources().items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_function_s_dead_letter_queue_is_found():
    found = dead_letter_queues()
    for function_id, (_, _, queue) in FUNCTIONS.items():
        assert found[queue] == function_id


@pytest.mark.parametrize("queue", sorted(dead_letter_queues()))
def test_each_dead_letter_queue_alarms_as_soon_as_one_message_waits(queue):
    watching = {
        lid: alarm
        for lid, alarm in alarms().items()
        if alarm.get("Namespace") == "AWS/SQS"
        and {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}} in alarm.get("Dimensions", [])
    }
    assert len(watching) == 1, f"{queue} needs exactly one alarm (one more <Queue>Alarm block, like the others)"
    (alarm,) = watching.values()
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    assert alarm["Statistic"] == "Maximum"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 0
    assert alarm["EvaluationPeriods"] == 1
    assert alarm["Period"] <= 300
    # SQS stops sending metrics for a queue idle for hours: a missing datapoint must not clear the alarm.
    assert alarm["TreatMissingData"] == "ignore"


RECONCILER_METRICS = ("StuckRuns", "MissedDrops", "LateMessages", "ReconcileErrors")


def test_errors_the_reconciler_goes_on_from_alarm_only_when_they_persist():
    (alarm,) = (a for a in alarms().values() if a.get("MetricName") == "ReconcileErrors")
    # a pass that cannot list the runs counts no stuck run: errors in three 15-minute periods in a row alarm
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (900, 3, 3)
    others = [a for a in alarms().values() if a.get("MetricName") in RECONCILER_METRICS[:3]]
    assert all(a["EvaluationPeriods"] == 1 for a in others)


@pytest.mark.parametrize("metric", RECONCILER_METRICS)
def test_the_reconciler_s_alarms_watch_its_metric_in_the_functions_namespace(metric):
    (alarm,) = (a for a in alarms().values() if a.get("MetricName") == metric)
    assert alarm["Namespace"] == function_environment()["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": STUCK_RUNS_SERVICE}]
    assert alarm["Statistic"] == "Sum"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 0
    # No datapoint: no reconciler pass reported a stuck run.
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("metric", RECONCILER_METRICS)
def test_powertools_emits_the_reconciler_s_metrics_with_exactly_the_alarm_s_namespace_and_dimensions(monkeypatch, metric):
    """CloudWatch matches a metric on its full dimension set: the one Powertools Metrics writes for a function
    whose service name is the alarm's must be the alarm's."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    (alarm,) = (a for a in alarms().values() if a.get("MetricName") == metric)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", STUCK_RUNS_SERVICE)
    namespace = function_environment()["POWERTOOLS_METRICS_NAMESPACE"]["Fn::Sub"]
    assert alarm["Namespace"] == {"Fn::Sub": namespace}
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", namespace.replace("${AWS::StackName}", "team-stack"))
    metrics = Metrics()
    try:
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
        blob = metrics.serialize_metric_set()
    finally:
        metrics.clear_metrics()
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "reviewtune/team-stack"  # the alarm's, in a stack of that name
    assert [m["Name"] for m in directive["Metrics"]] == [metric]
    assert [[{"Name": name, "Value": blob[name]} for name in dimensions] for dimensions in directive["Dimensions"]] == [
        alarm["Dimensions"]
    ]


def _service_name(function_id: str, app_source: str) -> str:
    """The service dimension Powertools Metrics gives the function: Metrics(service=...) in its code, else its
    POWERTOOLS_SERVICE_NAME (the function's own variable, else the Globals one)."""
    in_code = re.search(r"Metrics\([^)]*service=\"([^\"]+)\"", app_source)
    if in_code:
        return in_code.group(1)
    own = (properties(function_id).get("Environment") or {}).get("Variables") or {}
    return own.get("POWERTOOLS_SERVICE_NAME", function_environment()["POWERTOOLS_SERVICE_NAME"])


@pytest.mark.parametrize("metric", RECONCILER_METRICS)
def test_the_function_that_reports_the_reconciler_s_metrics_has_the_alarm_s_service_name(metric):
    emitters = {}
    for function_id, resource in resources().items():
        if resource["Type"] == "AWS::Serverless::Function":
            app = ROOT / resource["Properties"]["CodeUri"] / "app.py"
            source = app.read_text(encoding="utf-8") if app.exists() else ""
            if f'"{metric}"' in source:
                emitters[function_id] = _service_name(function_id, source)
    assert emitters, f"no function of the template reports {metric}"
    assert set(emitters.values()) == {STUCK_RUNS_SERVICE}, (
        f"{emitters}: set POWERTOOLS_SERVICE_NAME: {STUCK_RUNS_SERVICE} in the reconciler's Environment"
    )


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears():
    assert len(alarms()) >= len(FUNCTIONS) + 1
    for logical_id, alarm in alarms().items():
        assert alarm["AlarmActions"] == [TOPIC], logical_id
        assert alarm["OKActions"] == [TOPIC], logical_id
        assert alarm.get("ActionsEnabled", True) is True, logical_id
        assert "AlarmName" not in alarm, f"{logical_id}: CloudFormation names alarms, so stacks never collide"


def test_cloudwatch_may_publish_to_the_topic_for_this_account_s_alarms_only():
    policy = properties("NotificationTopicPolicy")
    assert policy["Topics"] == [TOPIC]
    statements = [s for s in iam_statements() if s.owner == "NotificationTopicPolicy"]
    (publish,) = statements
    assert principals("NotificationTopicPolicy", publish.sid) == {"Service": "cloudwatch.amazonaws.com"}
    assert (publish.effect, publish.actions, publish.resources) == ("Allow", ("sns:Publish",), (TOPIC,))
    assert publish.condition == {
        "ArnLike": {
            "aws:SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"}
        },
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    }


def test_the_topic_s_key_is_the_stack_s_own_and_lets_cloudwatch_encrypt_messages():
    assert properties("NotificationTopic")["KmsMasterKeyId"] == {"Ref": "NotificationKey"}
    key = properties("NotificationKey")
    assert key["EnableKeyRotation"] is True
    services = {
        s.sid: s
        for s in iam_statements()
        if s.owner == "NotificationKey" and principals("NotificationKey", s.sid) == {"Service": "cloudwatch.amazonaws.com"}
    }
    (statement,) = services.values()
    assert statement.effect == "Allow"
    assert set(statement.actions) == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert template()["Resources"]["NotificationKey"]["Type"] == "AWS::KMS::Key"
