"""The functions' IAM roles against what their code really calls.

The functional tests' scenarios are recorded with every AWS call made by a function's code (tests/template/api_calls.py:
inside a handler, or inside the reconciler's pass; a test's own set-up is not recorded), the in-memory SageMaker's
calls included: as they ran in this session when it ran them all before these tests (``make test``), else run once
more in a subprocess. Each call must be allowed by its function's role as deployed (template.yaml translated by SAM: the
inline statements plus what SAM adds) on the ARN it touched, matched with IAM's wildcards; and each granted action
must be one some scenario calls, or be listed in KEPT_WITHOUT_A_RECORDED_CALL with the reason it stays.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws import ACCOUNT, REGION, Stack
from tests.template import api_calls
from tests.template.helpers import ROOT, as_list, parameter_defaults, resources, template

# The names tests/support/aws.py gives the stack's resources.
STACK = Stack(
    bucket=f"reviewtune-data-{ACCOUNT}",
    runs_table="runs",
    idempotency_table="idempotency",
    topic_arn=f"arn:aws:sns:{REGION}:{ACCOUNT}:reviewtune-notifications",
    subscriber_queue_url="",
    role_arn=f"arn:aws:iam::{ACCOUNT}:role/reviewtune-sagemaker",
    start_dead_letter_queue_url=f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/StartTuningDeadLetterQueue",
)
PREFIX = STACK.env()["JOB_NAME_PREFIX"]
SAGEMAKER = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
TOPIC_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/notification-key"

_DEAD_LETTERS = (
    "Lambda, not the function's code, sends an asynchronous event that failed every retry to the function's own "
    "dead-letter queue, with the function's role (SAM adds it for DeadLetterQueue)"
)
_NO_SUCH_KEY = (
    "lets S3 answer a read of a missing object with NoSuchKey (404: a clear error and message) instead of "
    "AccessDenied; no call needs it"
)
_UNVERSIONED_TAGS = (
    "rejecting a file its event names without a version (a bucket without versioning) copies the current "
    "version's tags; the stack's bucket is versioned, so the scenarios copy a named version"
)
# Granted, called by no recorded scenario, and why each stays: (function, action) -> reason.
KEPT_WITHOUT_A_RECORDED_CALL: dict[tuple[str, str], str] = {
    **{
        (function_id, "sqs:SendMessage"): _DEAD_LETTERS
        for function_id in ("StartTuningFunction", "StartEvaluationFunction", "RecordResultsFunction", "ReconcileFunction")
    },
    # (StartTuning lists the parents' split folders before it reuses them for an identical-data warm start)
    **{(function_id, "s3:ListBucket"): _NO_SUCH_KEY for function_id in ("RecordResultsFunction", "ReconcileFunction")},
    # start_evaluation checks with HeadObject that the champion's model and training hashes still exist: ListBucket
    # makes a missing one answer 404 (the champion is then not measured) instead of 403
    ("StartEvaluationFunction", "s3:ListBucket"): _NO_SUCH_KEY,
    ("StartTuningFunction", "s3:GetObjectTagging"): _UNVERSIONED_TAGS,
    ("ReconcileFunction", "s3:GetObjectTagging"): _UNVERSIONED_TAGS,
}
# The AWS managed policies SAM attaches, and why.
MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": "the function's log stream",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": "Tracing: Active (Powertools' Tracer sends segments)",
}


# ------------------------------------------------------------------------------------------------ matching


def _wildcard(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """IAM's wildcards: ``*`` any run of characters (``/`` and ``:`` included), ``?`` exactly one; nothing else
    (``[`` included) is special."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), flags)


def arn_matches(pattern: str, arn: str) -> bool:
    return _wildcard(pattern, re.DOTALL).fullmatch(arn) is not None


def action_matches(pattern: str, action: str) -> bool:
    return _wildcard(pattern, re.IGNORECASE).fullmatch(action) is not None


# ------------------------------------------------------------------------------------------------ the roles


def _arn_of(logical_id: str) -> str:
    kind = resources()[logical_id]["Type"]
    return {
        "AWS::S3::Bucket": lambda: f"arn:aws:s3:::{STACK.bucket}",
        "AWS::DynamoDB::Table": lambda: f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{_name_of(logical_id)}",
        "AWS::SNS::Topic": lambda: STACK.topic_arn,
        "AWS::KMS::Key": lambda: TOPIC_KEY,
        "AWS::IAM::Role": lambda: STACK.role_arn,
        "AWS::SQS::Queue": lambda: f"arn:aws:sqs:{REGION}:{ACCOUNT}:{logical_id}",
    }[kind]()


def _name_of(logical_id: str) -> str:
    """What Ref gives for the stack's resources (the names the functional tests use)."""
    kind = resources()[logical_id]["Type"]
    if kind == "AWS::S3::Bucket":
        return STACK.bucket
    if kind == "AWS::DynamoDB::Table":
        return {"RunsTable": STACK.runs_table, "IdempotencyTable": STACK.idempotency_table}[logical_id]
    return _arn_of(logical_id)  # a topic's Ref is its ARN; a key stands for its ARN in a policy


def resolve(node: Any) -> str:
    """A policy Resource as the deployed stack would have it (Ref, GetAtt .Arn, Sub; parameters at their defaults
    but the job-name prefix the tests use)."""
    values = {
        **parameter_defaults(),
        "JobNamePrefix": PREFIX,
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
    }
    if isinstance(node, str):
        return node
    ((key, arg),) = node.items()
    if key == "Ref":
        return values[arg] if arg in values else _name_of(arg)
    if key == "Fn::GetAtt":
        logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        assert attribute == "Arn", node
        return _arn_of(logical_id)
    if key == "Fn::Sub" and isinstance(arg, str):

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.endswith(".Arn"):
                return _arn_of(name.removesuffix(".Arn"))
            return values[name] if name in values else _name_of(name)

        return re.sub(r"\$\{([^}!]+)\}", variable, arg)
    raise AssertionError(f"cannot resolve {node}")


@dataclass(frozen=True)
class Grant:
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Mapping[str, Any]
    sid: str

    def allows(self, action: str, arn: str, context: Mapping[str, str]) -> bool:
        return (
            any(action_matches(pattern, action) for pattern in self.actions)
            and any(arn_matches(pattern, arn) for pattern in self.resources)
            and _condition_holds(self.condition, context)
        )


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """StringEquals / StringLike on the request's context keys; any other operator is not met (conservative)."""
    for operator, tests in condition.items():
        if operator not in ("StringEquals", "StringLike"):
            return False
        for key, expected in tests.items():
            value = context.get(key)
            if value is None or not any(
                value == e if operator == "StringEquals" else arn_matches(e, value) for e in as_list(expected)
            ):
                return False
    return True


@functools.cache
def deployed_template() -> dict[str, Any]:
    """template.yaml as SAM deploys it (code locations replaced: SAM translates only code in S3)."""
    from reviewtune.local.stack import to_cloudformation

    sam = copy.deepcopy(template())
    for logical_id, resource in sam["Resources"].items():
        key = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}.get(
            resource["Type"]
        )
        if key:
            resource["Properties"][key] = f"s3://code/{logical_id}.zip"
    return to_cloudformation(sam, {}, REGION)


def functions() -> dict[str, str]:
    """Logical id -> folder under functions/, for every function of the template."""
    return {
        logical_id: resource["Properties"]["CodeUri"].rstrip("/").split("/")[-1]
        for logical_id, resource in resources().items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def role(function_id: str) -> dict[str, Any]:
    cloudformation = deployed_template()["Resources"]
    reference = cloudformation[function_id]["Properties"]["Role"]
    assert reference == {"Fn::GetAtt": [f"{function_id}Role", "Arn"]}, reference
    return cloudformation[f"{function_id}Role"]["Properties"]


def grants(function_id: str) -> list[Grant]:
    found = []
    for policy in role(function_id).get("Policies", []):
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
            found.append(
                Grant(
                    actions=tuple(as_list(statement["Action"])),
                    resources=tuple(resolve(r) for r in as_list(statement["Resource"])),
                    condition=statement.get("Condition", {}),
                    sid=statement.get("Sid", policy["PolicyName"]),
                )
            )
    return found


# ------------------------------------------------------------------------------------------------ the calls


@functools.cache
def recorded_calls() -> dict[str, list[dict[str, Any]]]:
    calls = api_calls.scenario_calls()
    if calls is None:  # this session did not run (and pass) every recorded scenario before these tests
        calls = _calls_from_a_subprocess()
    by_function: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ids = {folder: function_id for function_id, folder in functions().items()}
    for call in calls:
        by_function[ids[call["function"]]].append(call)
    return by_function


def _calls_from_a_subprocess() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="api_calls-") as folder:  # one per process: xdist workers, two checkouts
        out = Path(folder) / "api_calls.json"
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *api_calls.RECORDED_TESTS],
            cwd=ROOT,
            env={**os.environ, "REVIEWTUNE_API_CALLS": str(out), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return json.loads(out.read_text())["calls"]


def _sagemaker_arn(call: dict[str, Any]) -> str:
    """The ARN a SageMaker call acts on (SageMaker writes resource names in lower case in its ARNs)."""
    if "ModelPackageArn" in call:
        return call["ModelPackageArn"]
    if call["operation"] == "DescribeModelPackage":  # its ModelPackageName is the version's ARN
        return call["ModelPackageName"]
    if call["operation"] == "CreateModelPackage":
        return call.get("created") or f"{SAGEMAKER}:model-package/{call['ModelPackageGroupName'].lower()}/1"
    for parameter, kind in (
        ("HyperParameterTuningJobName", "hyper-parameter-tuning-job"),
        ("TrainingJobName", "training-job"),
        ("ProcessingJobName", "processing-job"),
        ("ModelPackageGroupName", "model-package-group"),
    ):
        if parameter in call:
            return f"{SAGEMAKER}:{kind}/{call[parameter].lower()}"
    return call["ResourceArn"]


def needs(call: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(IAM action, ARN, request context) for each permission the call needs."""
    service, operation = call["service"], call["operation"]
    if service == "s3":
        obj = f"arn:aws:s3:::{call['Bucket']}/{call['Key']}" if "Key" in call else ""
        if operation in ("GetObject", "HeadObject"):
            yield ("s3:GetObjectVersion" if call["version"] else "s3:GetObject"), obj, {}
        elif operation == "CopyObject":
            source = f"arn:aws:s3:::{call['Bucket']}/{call['SourceKey']}"
            yield "s3:PutObject", obj, {}
            yield ("s3:GetObjectVersion" if call["source_version"] else "s3:GetObject"), source, {}
            if call["copies_tags"]:
                yield ("s3:GetObjectVersionTagging" if call["source_version"] else "s3:GetObjectTagging"), source, {}
                yield "s3:PutObjectTagging", obj, {}
        elif operation == "ListObjectsV2":
            yield "s3:ListBucket", f"arn:aws:s3:::{call['Bucket']}", {}
        elif operation == "ListObjectVersions":
            yield "s3:ListBucketVersions", f"arn:aws:s3:::{call['Bucket']}", {"s3:prefix": call.get("Prefix", "")}
        else:
            yield f"s3:{operation}", obj, {}
            if call["tags"]:
                yield "s3:PutObjectTagging", obj, {}
    elif service == "dynamodb" and operation == "BatchGetItem":  # each table read needs the action
        for table_name in call["tables"]:
            yield "dynamodb:BatchGetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table_name}", {}
    elif service == "dynamodb" and operation == "TransactWriteItems":  # each part needs its own action
        for kind, table_name in call["parts"]:
            action = "ConditionCheckItem" if kind == "ConditionCheck" else f"{kind}Item"
            yield f"dynamodb:{action}", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table_name}", {}
    elif service == "dynamodb":
        table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{call['TableName']}"
        yield f"dynamodb:{operation}", table + (f"/index/{call['IndexName']}" if "IndexName" in call else ""), {}
    elif service == "sns":
        yield "sns:Publish", call["TopicArn"], {}
        if call["TopicArn"] == STACK.topic_arn:  # encrypted with the stack's key (KmsMasterKeyId)
            yield "kms:GenerateDataKey", TOPIC_KEY, {}
            yield "kms:Decrypt", TOPIC_KEY, {}
    elif service == "sqs":  # a queue URL ends with the queue's name
        yield f"sqs:{operation}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{call['QueueUrl'].rsplit('/', 1)[-1]}", {}
    elif service == "sagemaker":
        arn = _sagemaker_arn(call)
        yield f"sagemaker:{operation}", arn, {}
        if call["tags"]:
            yield "sagemaker:AddTags", arn, {}
    else:
        raise AssertionError(f"no rule for the permissions of {service}:{operation}")
    for role_arn in call.get("roles", []):
        yield "iam:PassRole", role_arn, {"iam:PassedToService": "sagemaker.amazonaws.com"}


# ------------------------------------------------------------------------------------------------ the tests


def test_iam_wildcards_match_anywhere_in_a_resource_and_nothing_else_is_special():
    bucket = "arn:aws:s3:::data"
    assert arn_matches(f"{bucket}/runs/*/evaluation/input/*", f"{bucket}/runs/reviewtune-1/evaluation/input/run.json")
    assert not arn_matches(f"{bucket}/runs/*/evaluation/input/*", f"{bucket}/runs/reviewtune-1/data/train.tsv")
    assert arn_matches(f"{bucket}/runs/*", f"{bucket}/runs/a/b/c")  # * crosses "/"
    assert arn_matches(f"{bucket}/code/?/x", f"{bucket}/code/a/x")
    assert not arn_matches(f"{bucket}/code/?/x", f"{bucket}/code/ab/x")
    assert arn_matches(f"{bucket}/[a]/*", f"{bucket}/[a]/b") and not arn_matches(f"{bucket}/[a]/*", f"{bucket}/a/b")
    assert not arn_matches(f"{bucket}/runs/*", f"{bucket}/runsx") and not arn_matches(bucket, f"{bucket}/x")
    assert action_matches("kms:GenerateDataKey*", "kms:GenerateDataKey") and action_matches("S3:GetObject", "s3:GetObject")


def test_only_calls_made_by_a_function_s_code_while_it_runs_are_recorded():
    from tests.support.faults import Failing

    def from_function_code(call):  # code compiled from a file of reviewtune/, as the function's code is
        return eval(compile("call()", str(ROOT / "reviewtune" / "core" / "any.py"), "eval"), {"call": call})

    put = functools.partial(api_calls._record, "s3", "PutObject", {"Bucket": "b", "Key": "runs/r/data/train.tsv"})

    def test_hook():  # a test's own code that a handler runs (a monkeypatched step)
        return put()

    recorded = len(api_calls._calls)
    try:
        # GIVEN calls from the function's code, from its entry (its decorators), through a fault-injecting wrapper,
        # and from a test hook inside the function
        through_wrapper = Failing(type("Client", (), {"put": staticmethod(put)})(), "put", "Throttling", failures=0)
        # THEN only the function's own calls while it runs are recorded, as the innermost function running
        assert from_function_code(put) is None  # no function is running
        assert api_calls._as_function("start_tuning", lambda: from_function_code(test_hook))() is None
        assert api_calls._as_function("start_tuning", lambda: from_function_code(put))()["function"] == "start_tuning"
        assert api_calls._as_function("start_evaluation", put)()["function"] == "start_evaluation"
        wrapped = api_calls._as_function("reconcile", lambda: from_function_code(through_wrapper.put))()
        assert wrapped["function"] == "reconcile"
        inner = api_calls._as_function("record_results", lambda: from_function_code(put))
        assert api_calls._as_function("start_tuning", inner)()["function"] == "record_results"
        assert len(api_calls._calls) == recorded + 4
    finally:
        del api_calls._calls[recorded:]


@pytest.mark.parametrize("function_id", sorted(functions()))
def test_every_call_a_function_makes_is_allowed_on_what_it_touches(function_id):
    calls = recorded_calls()[function_id]
    assert calls, f"the recorded scenarios made no AWS call from {function_id}"
    role_grants = grants(function_id)
    refused = sorted(
        {
            (action, arn)
            for call in calls
            for action, arn, context in needs(call)
            if not any(grant.allows(action, arn, context) for grant in role_grants)
        }
    )
    assert refused == []


@pytest.mark.parametrize("function_id", sorted(functions()))
def test_every_granted_action_is_called_or_kept_for_a_stated_reason(function_id):
    called = {action for call in recorded_calls()[function_id] for action, _, _ in needs(call)}
    granted = {action for grant in grants(function_id) for action in grant.actions}
    assert not any("*" in action for action in granted), "no action wildcard in a function's role"
    kept = {action for (owner, action) in KEPT_WITHOUT_A_RECORDED_CALL if owner == function_id}
    assert granted - called == kept


@pytest.mark.parametrize("function_id", sorted(functions()))
def test_sam_adds_only_the_logs_tracing_and_dead_letter_permissions(function_id):
    assert sorted(role(function_id).get("ManagedPolicyArns", [])) == sorted(MANAGED_POLICIES)
    dead_letters = [g for g in grants(function_id) if "sqs:SendMessage" in g.actions]
    queue = template()["Resources"][function_id]["Properties"]["DeadLetterQueue"]["TargetArn"]
    assert [(g.actions, g.resources) for g in dead_letters] == [(("sqs:SendMessage",), (resolve(queue),))]
