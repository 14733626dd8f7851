"""Reading template.yaml in the template tests: resources by type, IAM statements, rule patterns, sample events."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from reviewtune.cfn_yaml import condition_holds as cfn_condition_holds
from reviewtune.cfn_yaml import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
EVENTS_DIR = ROOT / "events"

FUNCTIONS = {
    # logical id -> (folder under functions/, event name, dead-letter queue logical id)
    "StartTuningFunction": ("start_tuning", "ObjectCreated", "StartTuningDeadLetterQueue"),
    "StartEvaluationFunction": ("start_evaluation", "TuningJobStateChange", "StartEvaluationDeadLetterQueue"),
    "RecordResultsFunction": ("record_results", "ProcessingJobStateChange", "RecordResultsDeadLetterQueue"),
}

_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


@cache
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def resources() -> dict[str, Any]:
    return template()["Resources"]


def properties(logical_id: str) -> dict[str, Any]:
    return resources()[logical_id].get("Properties", {})


def parameter_defaults() -> dict[str, str]:
    """Every parameter's default as the string CloudFormation would substitute."""
    return {name: str(spec.get("Default", "")) for name, spec in template()["Parameters"].items()}


def function_environment() -> dict[str, Any]:
    return template()["Globals"]["Function"]["Environment"]["Variables"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Statement:
    """One IAM statement and where it was written."""

    owner: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[Any, ...]
    condition: Mapping[str, Any]
    sid: str


def _statements_of(owner: str, document: Mapping[str, Any]) -> Iterator[Statement]:
    for raw in as_list(document.get("Statement", [])):
        yield Statement(
            owner=owner,
            effect=raw["Effect"],
            actions=tuple(as_list(raw.get("Action", []))),
            resources=tuple(as_list(raw.get("Resource", []))),
            condition=raw.get("Condition", {}),
            sid=raw.get("Sid", ""),
        )


def iam_statements() -> list[Statement]:
    """Every policy statement of the template: roles, function policies, bucket and queue policies."""
    found: list[Statement] = []
    for logical_id, resource in resources().items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                found.extend(_statements_of(logical_id, policy["PolicyDocument"]))
        elif kind == "AWS::Serverless::Function":
            for policy in props.get("Policies", []):
                assert isinstance(policy, dict) and "Statement" in policy, (
                    f"{logical_id}: only inline statements are used, so every permission is visible here"
                )
                found.extend(_statements_of(logical_id, policy))
        elif kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            found.extend(_statements_of(logical_id, props["PolicyDocument"]))
        elif kind == "AWS::KMS::Key":
            found.extend(_statements_of(logical_id, props["KeyPolicy"]))
    return found


def principals(logical_id: str, sid: str) -> Any:
    """The Principal of the statement ``sid`` of a resource policy (bucket, queue, topic or key policy)."""
    props = properties(logical_id)
    document = props.get("PolicyDocument") or props["KeyPolicy"]
    return next(raw["Principal"] for raw in as_list(document["Statement"]) if raw.get("Sid") == sid)


def condition_holds(name: str, values: Mapping[str, str]) -> bool:
    """Evaluate the template condition ``name`` (Equals / Not / And / Or / Condition over Ref) with ``values``."""
    return cfn_condition_holds(template(), name, lambda node: values[node["Ref"]] if isinstance(node, dict) and "Ref" in node else node)


def resolve_conditions(node: Any, values: Mapping[str, str]) -> Any:
    """``node`` with every Fn::If decided by ``values`` and AWS::NoValue removed (list items and keys)."""
    no_value = object()

    def walk(item: Any) -> Any:
        if isinstance(item, dict):
            if set(item) == {"Fn::If"}:
                name, when_true, when_false = item["Fn::If"]
                return walk(when_true if condition_holds(name, values) else when_false)
            if item == {"Ref": "AWS::NoValue"}:
                return no_value
            walked = {key: walk(value) for key, value in item.items()}
            return {key: value for key, value in walked.items() if value is not no_value}
        if isinstance(item, list):
            return [value for value in (walk(v) for v in item) if value is not no_value]
        return item

    return walk(node)


def resolve(node: Any, values: Mapping[str, str]) -> Any:
    """Substitute Ref and simple Fn::Sub in ``node`` (enough for the rules' event patterns)."""
    if isinstance(node, list):
        return [resolve(item, values) for item in node]
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return values[node["Ref"]]
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return _SUB_VARIABLE.sub(lambda match: values[match.group(1)], node["Fn::Sub"])
        return {key: resolve(value, values) for key, value in node.items()}
    return node


def rule_event(function_id: str) -> dict[str, Any]:
    _, event_name, _ = FUNCTIONS[function_id]
    return properties(function_id)["Events"][event_name]


def rule_pattern(function_id: str, bucket: str) -> dict[str, Any]:
    """The function's EventBridge pattern with the parameter defaults and ``bucket`` as DataBucket."""
    values = {**parameter_defaults(), "DataBucket": bucket}
    return resolve(rule_event(function_id)["Properties"]["Pattern"], values)


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """EventBridge matching, by moto's implementation of it."""
    from moto.events.models import EventPattern

    return bool(EventPattern.load(json.dumps(pattern)).matches_event(dict(event)))
