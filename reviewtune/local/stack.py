"""Create the stack's resources in moto from template.yaml itself, so the local stack cannot drift from the cloud one.

The SAM template is translated to CloudFormation offline with ``samtranslator``, made local (the Lambda resources are
left out and every EventBridge rule target that points at a function delivers to an SQS "inbox" queue of that
function instead) and created as a CloudFormation stack in moto, which resolves parameters, Ref, Sub and GetAtt.
What the functions need at run time (their environment, timeout, inbox and dead-letter queues) is resolved by
moto as well, through extra stack outputs, so no second resolver of intrinsic functions exists here.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reviewtune.local import language_extensions

logger = logging.getLogger(__name__)

DEFAULT_STACK_NAME = "reviewtune-local"
SERVERLESS_TRANSFORM = "AWS::Serverless-2016-10-31"
INBOX_SUFFIX = "LocalInbox"
LAMBDA_DEFAULT_TIMEOUT = 3
LAMBDA_DEFAULT_MEMORY = 128
LAMBDA_DEFAULT_RETRIES = 2
_PROBE_PREFIX = "ReviewtuneLocalProbe"
# Properties moto's CloudFormation does not apply; the service APIs apply them after the stack is created.
_IGNORED_BY_MOTO = {
    "AWS::S3::Bucket": (
        "VersioningConfiguration",
        "PublicAccessBlockConfiguration",
        "OwnershipControls",
        "NotificationConfiguration",
    ),
    "AWS::DynamoDB::Table": ("TimeToLiveSpecification",),
}
_CODE_BUCKET = "reviewtune-local-code"

# Resources the local runtime replaces with its own router (or that only make sense next to real Lambda).
DROPPED_TYPES = frozenset(
    {
        "AWS::Lambda::Function",
        "AWS::Lambda::Permission",
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::LayerVersionPermission",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Lambda::Version",
        "AWS::Lambda::Alias",
        "AWS::Lambda::Url",
    }
)

ClientFactory = Callable[[str], Any]


class StackError(RuntimeError):
    """The template cannot be deployed into the local runtime."""


@dataclass(frozen=True)
class RuleTarget:
    """An EventBridge rule target that delivered to a function and now delivers to its inbox queue."""

    rule_logical_id: str
    rule_name: str
    event_pattern: dict[str, Any] | None
    dead_letter_queue_url: str | None

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether this rule's pattern matches ``event`` (moto's own matcher)."""
        if self.event_pattern is None:
            return False
        from moto.events.models import EventPattern

        return bool(EventPattern.load(json.dumps(self.event_pattern)).matches_event(dict(event)))


@dataclass(frozen=True)
class FunctionSpec:
    """One function of the stack as the router runs it."""

    logical_id: str
    function_name: str
    function_arn: str
    handler_file: Path
    handler_name: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    environment: dict[str, str]
    timeout: int
    memory_size: int
    inbox_queue_url: str
    rules: tuple[RuleTarget, ...] = ()
    # The function's own async failure destinations (DeadLetterQueue, EventInvokeConfig OnFailure) when SQS.
    failure_queue_urls: tuple[str, ...] = ()
    maximum_retry_attempts: int = LAMBDA_DEFAULT_RETRIES
    # ScheduleExpressions of the EventBridge Scheduler schedules that invoke it (the local scheduler runs them).
    schedules: tuple[str, ...] = ()

    def dead_letter_queue_urls(self, event: Mapping[str, Any]) -> tuple[str, ...]:
        """Where an event goes once every attempt failed: the function's own failure destinations, else the
        dead-letter queue of the rule(s) that matched the event."""
        if self.failure_queue_urls:
            return self.failure_queue_urls
        with_dlq = [rule for rule in self.rules if rule.dead_letter_queue_url]
        matched = [rule for rule in with_dlq if rule.matches(event)] or with_dlq[:1]
        return tuple(
            dict.fromkeys(rule.dead_letter_queue_url for rule in matched if rule.dead_letter_queue_url)
        )


@dataclass(frozen=True)
class LocalStack:
    """The stack as created in moto."""

    stack_name: str
    stack_id: str
    region: str
    account_id: str
    parameters: dict[str, str]
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    functions: list[FunctionSpec] = field(default_factory=list)

    def function(self, logical_id: str) -> FunctionSpec:
        for spec in self.functions:
            if spec.logical_id == logical_id:
                return spec
        known = ", ".join(spec.logical_id for spec in self.functions)
        raise KeyError(f"no function {logical_id!r} in stack {self.stack_name} (functions: {known})")


# ---------------------------------------------------------------------------------------------------------------
# Loading and translating


def load_template(path: Path) -> dict[str, Any]:
    """Read a SAM / CloudFormation template (YAML with short-form tags, or JSON)."""
    from reviewtune.cfn_yaml import load_template as load_yaml_template

    try:
        template = load_yaml_template(path)
    except (OSError, yaml.YAMLError) as error:
        raise StackError(f"cannot read template {path}: {error}") from error
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise StackError(f"{path} is not a CloudFormation template: it has no Resources mapping")
    return template


def _parameter_string(value: object, parameter_type: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple) and "List" in parameter_type:
        return ",".join(str(item) for item in value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def effective_parameters(
    template: Mapping[str, Any], overrides: Mapping[str, object] | None = None
) -> dict[str, str]:
    """The template's parameter defaults overridden by ``overrides``, as the strings CloudFormation takes."""
    declared: dict[str, Any] = template.get("Parameters") or {}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise StackError(
            f"parameter(s) {', '.join(unknown)} not declared in the template; declared: {', '.join(sorted(declared))}"
        )
    values: dict[str, str] = {}
    for name, spec in declared.items():
        parameter_type = str(spec.get("Type", "String"))
        if name in overrides:
            values[name] = _parameter_string(overrides[name], parameter_type)
        elif "Default" in spec:
            values[name] = _parameter_string(spec["Default"], parameter_type)
        else:
            raise StackError(f"parameter {name} has no Default in the template: pass a value for it")
        _check_parameter(name, spec, values[name])
    return values


def _check_parameter(name: str, spec: Mapping[str, Any], value: str) -> None:
    """CloudFormation's parameter constraints (moto does not check them)."""
    problems: list[str] = []
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [_parameter_string(item, "String") for item in allowed]:
        problems.append(f"must be one of {', '.join(map(str, allowed))}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        problems.append(
            f"must match {pattern}"
            + (f" ({spec['ConstraintDescription']})" if "ConstraintDescription" in spec else "")
        )
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        problems.append(f"must have at least {spec['MinLength']} characters")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        problems.append(f"must have at most {spec['MaxLength']} characters")
    if str(spec.get("Type", "String")) == "Number":
        try:
            number = float(value)
        except ValueError:
            problems.append("must be a number")
        else:
            if "MinValue" in spec and number < float(spec["MinValue"]):
                problems.append(f"must be at least {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                problems.append(f"must be at most {spec['MaxValue']}")
    if problems:
        raise StackError(f"parameter {name}={value!r} {'; '.join(problems)}")


def _transforms(template: Mapping[str, Any]) -> list[str]:
    transform = template.get("Transform") or []
    return [transform] if isinstance(transform, str) else list(transform)


def to_cloudformation(
    template: Mapping[str, Any], parameters: Mapping[str, str], region: str
) -> dict[str, Any]:
    """Translate a SAM template to CloudFormation offline (no AWS call: bundled managed-policy map), after
    AWS::LanguageExtensions where the template names it first, as CloudFormation runs them."""
    transforms = _transforms(template)
    if transforms[:1] == [language_extensions.NAME]:
        try:
            template = language_extensions.apply(template, parameters, region)
        except language_extensions.LanguageExtensionError as error:
            raise StackError(str(error)) from error
        transforms = transforms[1:]
    if not transforms:
        return copy.deepcopy(dict(template))
    unsupported = [name for name in transforms if name != SERVERLESS_TRANSFORM]
    if unsupported:
        raise StackError(
            f"template transform(s) {', '.join(map(str, unsupported))} cannot be applied locally"
        )

    import boto3
    from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    metrics = Metrics("ServerlessTransform", DummyMetricsPublisher())
    translator = Translator(
        None, Parser(), boto_session=boto3.session.Session(region_name=region), metrics=metrics
    )
    try:
        return translator.translate(
            copy.deepcopy(dict(template)), parameter_values=dict(parameters), get_managed_policy_map=dict
        )
    except InvalidDocumentException as error:
        causes = "; ".join(cause.message for cause in error.causes) or str(error)
        raise StackError(f"the SAM template is invalid: {causes}") from error
    finally:
        metrics.publish()


@dataclass(frozen=True)
class _CodeLocation:
    code_dir: Path
    layer_dirs: tuple[Path, ...]


def _code_locations(template: dict[str, Any], base_dir: Path) -> dict[str, _CodeLocation]:
    """Each SAM function's code folder and layer folders; their URIs in ``template`` become dummy S3 URIs,
    because SAM translates only functions whose code is in S3."""
    resources = template["Resources"]
    global_function = (template.get("Globals") or {}).get("Function") or {}
    locations: dict[str, _CodeLocation] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.setdefault("Properties", {})
        code_uri = properties.get("CodeUri", global_function.get("CodeUri"))
        if "InlineCode" in properties or not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            raise StackError(
                f"function {logical_id}: CodeUri must be a local folder to run locally, got {code_uri!r}"
            )
        layer_dirs: list[Path] = []
        for layer in [*(global_function.get("Layers") or []), *(properties.get("Layers") or [])]:
            layer_id = layer.get("Ref") if isinstance(layer, dict) else None
            layer_resource = resources.get(layer_id) if isinstance(layer_id, str) else None
            content_uri = (layer_resource or {}).get("Properties", {}).get("ContentUri")
            if isinstance(content_uri, str) and not content_uri.startswith("s3://"):
                layer_dir = (base_dir / content_uri).resolve()
                layer_dirs.append(layer_dir / "python" if (layer_dir / "python").is_dir() else layer_dir)
            else:
                logger.warning(
                    "function %s: layer %r has no local folder; it is not on the path", logical_id, layer
                )
        locations[logical_id] = _CodeLocation((base_dir / code_uri).resolve(), tuple(layer_dirs))
        properties["CodeUri"] = f"s3://{_CODE_BUCKET}/{logical_id}.zip"
    if "CodeUri" in global_function:
        global_function["CodeUri"] = f"s3://{_CODE_BUCKET}/function.zip"
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            resource.setdefault("Properties", {})["ContentUri"] = f"s3://{_CODE_BUCKET}/{logical_id}.zip"
    return locations


# ---------------------------------------------------------------------------------------------------------------
# Making the CloudFormation template local


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


def _referenced_ids(node: Any) -> set[str]:
    """Logical ids (and parameter names) referenced by Ref, GetAtt and Sub anywhere in ``node``."""
    found: set[str] = set()
    for item in _walk(node):
        if not isinstance(item, dict) or len(item) != 1:
            continue
        ((key, value),) = item.items()
        if key == "Ref" and isinstance(value, str):
            found.add(value)
        elif key == "Fn::GetAtt":
            target = value.split(".", 1)[0] if isinstance(value, str) else value[0]
            if isinstance(target, str):
                found.add(target)
        elif key == "Fn::Sub":
            text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
            for name in _SUB_VARIABLE.findall(text):
                base = name.split(".", 1)[0]
                if base not in variables:
                    found.add(base)
    return found


def _getatt(value: Any) -> tuple[str, str] | None:
    if isinstance(value, dict) and len(value) == 1 and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        parts = target.split(".", 1) if isinstance(target, str) else list(target)
        if len(parts) == 2 and all(isinstance(part, str) for part in parts):
            return parts[0], parts[1]
    return None


def _replace_function_refs(node: Any, names: Mapping[str, Any], arns: Mapping[str, Any]) -> Any:
    """Replace Ref / GetAtt Arn / ``${Fn}`` of functions left out of the local stack by their name and ARN."""
    if isinstance(node, list):
        return [_replace_function_refs(item, names, arns) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref" and value in names:
            return copy.deepcopy(names[value])
        getatt = _getatt(node)
        if getatt and getatt[0] in arns and getatt[1] == "Arn":
            return copy.deepcopy(arns[getatt[0]])
        if key == "Fn::Sub":
            text, variables = (value, {}) if isinstance(value, str) else (value[0], dict(value[1]))
            variables = {name: _replace_function_refs(item, names, arns) for name, item in variables.items()}
            for name in set(_SUB_VARIABLE.findall(text)):
                base, _, attribute = name.partition(".")
                if base in variables or base not in names or attribute not in ("", "Arn"):
                    continue
                local_name = f"{base}Local{attribute or 'Name'}"
                variables[local_name] = copy.deepcopy(arns[base] if attribute else names[base])
                text = text.replace("${" + name + "}", "${" + local_name + "}")
            return {"Fn::Sub": [text, variables] if variables else text}
    return {key: _replace_function_refs(value, names, arns) for key, value in node.items()}


def _function_target(arn: Any, resources: Mapping[str, Any]) -> str | None:
    """The function logical id a rule target ``Arn`` points at (GetAtt Arn or Ref of a function, alias or version)."""
    getatt = _getatt(arn)
    target = getatt[0] if getatt and getatt[1] == "Arn" else None
    if target is None and isinstance(arn, dict) and set(arn) == {"Ref"}:
        target = arn["Ref"]
    resource = resources.get(target) if isinstance(target, str) else None
    if resource is None:
        return None
    if resource.get("Type") in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
        name = resource.get("Properties", {}).get("FunctionName")
        return _function_target(name, resources)
    return target if resource.get("Type") == "AWS::Lambda::Function" else None


@dataclass
class _Probes:
    """Extra stack outputs whose values moto resolves for the local runtime."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, key: tuple[str, ...], value: Any, condition: str | None = None) -> None:
        output_id = f"{_PROBE_PREFIX}{len(self.outputs)}"
        output: dict[str, Any] = {"Value": value}
        if condition:
            output["Condition"] = condition
        self.outputs[output_id] = output
        self.keys[output_id] = key


@dataclass
class LocalPlan:
    """A CloudFormation template moto can create, and how to read back what the router needs."""

    template: dict[str, Any]
    probes: _Probes
    functions: dict[str, dict[str, Any]]  # logical id -> translated AWS::Lambda::Function resource
    rule_targets: dict[str, list[str]]  # function -> rule logical ids
    dropped: set[str]


def localize(cfn: Mapping[str, Any], stack_name: str = DEFAULT_STACK_NAME) -> LocalPlan:
    """Make a CloudFormation template creatable in moto and prepare the probes of what the router needs."""
    template = copy.deepcopy(dict(cfn))
    template.pop("Transform", None)
    resources: dict[str, Any] = template["Resources"]
    functions = {lid: res for lid, res in resources.items() if res.get("Type") == "AWS::Lambda::Function"}
    dropped = {lid for lid, res in resources.items() if res.get("Type") in DROPPED_TYPES}

    # 1. Rule targets that invoke a function deliver to the function's inbox queue.
    rule_targets: dict[str, list[str]] = {lid: [] for lid in functions}
    target_dlqs: dict[str, list[tuple[str, Any]]] = {lid: [] for lid in functions}
    for rule_id, resource in resources.items():
        if resource.get("Type") != "AWS::Events::Rule":
            continue
        for target in resource.get("Properties", {}).get("Targets") or []:
            function_id = _function_target(target.get("Arn"), resources)
            if function_id is None:
                continue
            target["Arn"] = {"Fn::GetAtt": [f"{function_id}{INBOX_SUFFIX}", "Arn"]}
            rule_targets[function_id].append(rule_id)
            target_dlqs[function_id].append((rule_id, (target.get("DeadLetterConfig") or {}).get("Arn")))

    # 1b. Scheduler schedules that invoke a function are run by the local scheduler instead (moto has none).
    schedules: dict[str, list[tuple[str, Any]]] = {lid: [] for lid in functions}
    for schedule_id, resource in resources.items():
        if resource.get("Type") != "AWS::Scheduler::Schedule":
            continue
        properties = resource.get("Properties", {})
        function_id = _function_target((properties.get("Target") or {}).get("Arn"), resources)
        if function_id is not None:
            schedules[function_id].append((schedule_id, properties.get("ScheduleExpression")))
            dropped.add(schedule_id)

    # 2. Every function gets an inbox queue.
    for function_id, resource in functions.items():
        inbox: dict[str, Any] = {"Type": "AWS::SQS::Queue", "Properties": {}}
        if "Condition" in resource:
            inbox["Condition"] = resource["Condition"]
        resources[f"{function_id}{INBOX_SUFFIX}"] = inbox

    # 3. References to the functions become their (local) name and ARN.
    names: dict[str, Any] = {}
    arns: dict[str, Any] = {}
    for function_id, resource in functions.items():
        name = resource.get("Properties", {}).get("FunctionName") or f"{stack_name}-{function_id}"[:64]
        names[function_id] = name
        arns[function_id] = {
            "Fn::Sub": [
                "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Name}",
                {"Name": name},
            ]
        }
    for resource_id in list(resources):
        if resource_id not in dropped:
            resources[resource_id] = _replace_function_refs(resources[resource_id], names, arns)
    template["Outputs"] = _replace_function_refs(template.get("Outputs") or {}, names, arns)

    # 4. What the router needs, resolved by moto as outputs.
    probes = _Probes()
    invoke_configs = {
        _function_target(res.get("Properties", {}).get("FunctionName"), resources): res.get("Properties", {})
        for res in resources.values()
        if res.get("Type") == "AWS::Lambda::EventInvokeConfig"
    }
    for function_id, resource in functions.items():
        properties = _replace_function_refs(resource.get("Properties", {}), names, arns)
        condition = resource.get("Condition")
        probes.add((function_id, "name"), names[function_id], condition)
        probes.add((function_id, "arn"), arns[function_id], condition)
        probes.add((function_id, "inbox"), {"Ref": f"{function_id}{INBOX_SUFFIX}"}, condition)
        for key in ("Timeout", "MemorySize"):
            if key in properties:
                probes.add((function_id, key), {"Fn::Join": ["", [properties[key]]]}, condition)
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        for variable, value in variables.items():
            probes.add((function_id, "env", variable), value, condition)
        dead_letter = (properties.get("DeadLetterConfig") or {}).get("TargetArn")
        if dead_letter:
            probes.add((function_id, "failure", "dead-letter"), dead_letter, condition)
        invoke_config = invoke_configs.get(function_id) or {}
        on_failure = ((invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        if on_failure:
            probes.add((function_id, "failure", "on-failure"), on_failure, condition)
        if "MaximumRetryAttempts" in invoke_config:
            retries = {"Fn::Join": ["", [invoke_config["MaximumRetryAttempts"]]]}
            probes.add((function_id, "retries"), retries, condition)
        for schedule_id, expression in schedules[function_id]:
            probes.add((function_id, "schedule", schedule_id), expression, resources[schedule_id].get("Condition"))
        for rule_id, dlq in target_dlqs[function_id]:
            rule_condition = resources[rule_id].get("Condition")
            probes.add((function_id, "rule", rule_id), {"Fn::GetAtt": [rule_id, "Arn"]}, rule_condition)
            if dlq:
                probes.add((function_id, "rule-dlq", rule_id), dlq, rule_condition)

    for resource_id, resource in resources.items():
        properties = resource.get("Properties") or {}
        for name in _IGNORED_BY_MOTO.get(resource.get("Type", ""), ()):
            if name in properties:
                value = {"Fn::ToJsonString": properties[name]}
                probes.add((resource_id, "setting", name), value, resource.get("Condition"))

    # 5. Leave out the Lambda resources and whatever still depends on them.
    removed = set(dropped)
    while True:
        newly = {
            lid
            for lid, res in resources.items()
            if lid not in removed
            and _referenced_ids({k: v for k, v in res.items() if k != "DependsOn"}) & removed
        }
        if not newly:
            break
        logger.warning("left out of the local stack (they need Lambda): %s", ", ".join(sorted(newly)))
        removed |= newly
    for lid in removed:
        resources.pop(lid, None)
    for resource in resources.values():
        depends_on = resource.get("DependsOn")
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        if depends_on is not None:
            kept = [lid for lid in depends_on if lid not in removed]
            if kept:
                resource["DependsOn"] = kept
            else:
                resource.pop("DependsOn")
    outputs = template["Outputs"]
    for output_id in [oid for oid, out in outputs.items() if _referenced_ids(out) & removed]:
        logger.warning("output %s left out of the local stack: it needs a Lambda resource", output_id)
        del outputs[output_id]
    for output_id in [oid for oid, out in probes.outputs.items() if _referenced_ids(out) & removed]:
        logger.warning(
            "local runtime setting %s left out: it needs a Lambda resource", probes.keys[output_id]
        )
        del probes.outputs[output_id]
    outputs.update(probes.outputs)
    if not outputs:
        template.pop("Outputs")

    return LocalPlan(template, probes, functions, rule_targets, removed)


# ---------------------------------------------------------------------------------------------------------------
# Deploying


def _queue_url(sqs: Any, arn_or_url: str) -> str:
    """The moto URL of a queue given by ARN or by URL (CloudFormation gives ``https://sqs.<region>...`` URLs)."""
    if arn_or_url.startswith(("https://", "http://")):
        return sqs.get_queue_url(QueueName=arn_or_url.rstrip("/").rsplit("/", 1)[1])["QueueUrl"]
    parts = arn_or_url.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise StackError(
            f"failure destination {arn_or_url} is not an SQS queue ARN; only SQS is supported locally"
        )
    return sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]


def _enabled(value: object) -> bool:
    return str(value).lower() == "true"


def _apply_ignored_settings(
    clients: ClientFactory, resources: Mapping[str, str], probed: Mapping[tuple[str, ...], Any]
) -> None:
    """Apply the properties moto's CloudFormation ignores (``_IGNORED_BY_MOTO``) through the service APIs."""
    s3 = clients("s3")
    for key, value in probed.items():
        if len(key) != 3 or key[1] != "setting" or value is None or key[0] not in resources:
            continue
        physical_id, name, setting = resources[key[0]], key[2], json.loads(value)
        if name == "TimeToLiveSpecification":
            specification = {
                "AttributeName": setting["AttributeName"],
                "Enabled": _enabled(setting["Enabled"]),
            }
            clients("dynamodb").update_time_to_live(
                TableName=physical_id, TimeToLiveSpecification=specification
            )
        elif name == "VersioningConfiguration":
            s3.put_bucket_versioning(
                Bucket=physical_id, VersioningConfiguration={"Status": setting["Status"]}
            )
        elif name == "PublicAccessBlockConfiguration":
            block = {field: _enabled(flag) for field, flag in setting.items()}
            s3.put_public_access_block(Bucket=physical_id, PublicAccessBlockConfiguration=block)
        elif name == "OwnershipControls":
            s3.put_bucket_ownership_controls(
                Bucket=physical_id, OwnershipControls={"Rules": setting["Rules"]}
            )
        elif name == "NotificationConfiguration":
            others = sorted(set(setting) - {"EventBridgeConfiguration"})
            if others:
                logger.warning("bucket %s: %s not applied locally", key[0], ", ".join(others))
            if _enabled((setting.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled")):
                configuration = s3.get_bucket_notification_configuration(Bucket=physical_id)
                configuration.pop("ResponseMetadata", None)
                configuration["EventBridgeConfiguration"] = {}
                s3.put_bucket_notification_configuration(
                    Bucket=physical_id, NotificationConfiguration=configuration
                )


def _rule_pattern(events: Any, rule_arn: str) -> tuple[str, dict[str, Any] | None]:
    path = rule_arn.split(":", 5)[5].removeprefix("rule/")
    bus, _, name = path.rpartition("/")
    rule = events.describe_rule(Name=name, EventBusName=bus or "default")
    pattern = rule.get("EventPattern")
    return name, json.loads(pattern) if pattern else None


def _failure_reason(cloudformation: Any, stack_name: str) -> str:
    try:
        events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
    except Exception:  # noqa: BLE001 - only for the error message
        return "no stack events"
    reasons = [
        f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason')}"
        for event in events
        if event.get("ResourceStatus", "").endswith("FAILED")
    ]
    return "; ".join(reasons) or "no failed resource reported"


def _stack_made_by_an_earlier_try(cloudformation: Any, stack_name: str, wait_s: float = 600.0) -> str | None:
    """The id of stack ``stack_name`` once it leaves CREATE_IN_PROGRESS, or None when there is no such stack."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except Exception:  # no such stack: the error was not a retried request
            return None
        if not stacks:
            return None
        if stacks[0]["StackStatus"] != "CREATE_IN_PROGRESS" or time.monotonic() > deadline:
            return stacks[0]["StackId"]
        time.sleep(1.0)


def deploy_stack(
    template_path: Path,
    *,
    clients: ClientFactory,
    parameters: Mapping[str, object] | None = None,
    region: str = "us-east-1",
    stack_name: str = DEFAULT_STACK_NAME,
) -> LocalStack:
    """Create the resources of the SAM template at ``template_path`` in moto and describe its functions.

    ``clients(service)`` returns a boto3 client of the moto server. ``parameters`` override the template's
    parameter defaults (values that are not strings are converted: lists / dicts to JSON)."""
    template_path = Path(template_path)
    sam = load_template(template_path)
    values = effective_parameters(sam, parameters)
    locations = _code_locations(sam, template_path.resolve().parent)
    plan = localize(to_cloudformation(sam, values, region), stack_name)

    cloudformation = clients("cloudformation")
    try:
        created = cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(plan.template),
            Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack_id = created["StackId"]
    except Exception as error:
        # moto creates the stack within the CreateStack request; on a busy machine that request can outlast the
        # client's read timeout, and botocore's retry then finds the stack (or one of its resources) already
        # there. The first request still completes: wait for the stack it makes.
        stack_id = _stack_made_by_an_earlier_try(cloudformation, stack_name)
        if stack_id is None:
            raise StackError(f"moto could not create stack {stack_name} from {template_path}: {error}") from error
    stack = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        reason = _failure_reason(cloudformation, stack_name)
        raise StackError(f"stack {stack_name} ended {stack['StackStatus']}: {reason}")

    resources = {
        item["LogicalResourceId"]: item["PhysicalResourceId"]
        for item in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
        if "LogicalResourceId" in item  # moto lists the resource types it skipped without ids
    }
    skipped = sorted(
        f"{lid} ({res.get('Type')})"
        for lid, res in plan.template["Resources"].items()
        if lid not in resources and "Condition" not in res
    )
    if skipped:
        logger.info("moto does not create (no effect locally): %s", ", ".join(skipped))
    outputs: dict[str, str] = {}
    probed: dict[tuple[str, ...], Any] = {}
    for output in stack.get("Outputs") or []:
        key = output["OutputKey"]
        if key in plan.probes.keys:
            probed[plan.probes.keys[key]] = output.get("OutputValue")
        else:
            outputs[key] = output.get("OutputValue")

    _apply_ignored_settings(clients, resources, probed)

    account_id = clients("sts").get_caller_identity()["Account"]
    functions = _function_specs(plan, locations, probed, clients)
    return LocalStack(stack_name, stack["StackId"], region, account_id, values, outputs, resources, functions)


def _function_specs(
    plan: LocalPlan,
    locations: Mapping[str, _CodeLocation],
    probed: Mapping[tuple[str, ...], Any],
    clients: ClientFactory,
) -> list[FunctionSpec]:
    sqs = clients("sqs")
    events = clients("events")
    specs: list[FunctionSpec] = []
    for function_id, resource in plan.functions.items():
        if (function_id, "inbox") not in probed:
            continue  # its Condition is false
        location = locations.get(function_id)
        if location is None:
            raise StackError(
                f"function {function_id} is not an AWS::Serverless::Function: its code cannot be found"
            )
        handler = resource.get("Properties", {}).get("Handler")
        if not isinstance(handler, str) or "." not in handler:
            raise StackError(f"function {function_id}: Handler must look like 'app.handler', got {handler!r}")
        module, handler_name = handler.rsplit(".", 1)
        handler_file = location.code_dir / (module.replace(".", "/") + ".py")
        if not handler_file.is_file():
            raise StackError(
                f"function {function_id}: handler file {handler_file} does not exist (Handler {handler})"
            )
        environment = {
            key[2]: str(value)
            for key, value in probed.items()
            if key[:2] == (function_id, "env") and value is not None
        }
        rules: list[RuleTarget] = []
        for rule_id in plan.rule_targets.get(function_id, []):
            if (function_id, "rule", rule_id) not in probed:
                continue  # its Condition is false
            rule_name, pattern = _rule_pattern(events, probed[(function_id, "rule", rule_id)])
            dlq = probed.get((function_id, "rule-dlq", rule_id))
            rules.append(RuleTarget(rule_id, rule_name, pattern, _queue_url(sqs, dlq) if dlq else None))
        schedules = tuple(
            str(value)
            for key, value in probed.items()
            if key[:2] == (function_id, "schedule") and value is not None
        )
        failure_arns = [probed.get((function_id, "failure", kind)) for kind in ("dead-letter", "on-failure")]
        failure_urls = tuple(dict.fromkeys(_queue_url(sqs, arn) for arn in failure_arns if arn))
        specs.append(
            FunctionSpec(
                logical_id=function_id,
                function_name=str(probed[(function_id, "name")]),
                function_arn=str(probed[(function_id, "arn")]),
                handler_file=handler_file,
                handler_name=handler_name,
                code_dir=location.code_dir,
                layer_dirs=location.layer_dirs,
                environment=environment,
                timeout=int(probed.get((function_id, "Timeout")) or LAMBDA_DEFAULT_TIMEOUT),
                memory_size=int(probed.get((function_id, "MemorySize")) or LAMBDA_DEFAULT_MEMORY),
                inbox_queue_url=_queue_url(sqs, str(probed[(function_id, "inbox")])),
                rules=tuple(rules),
                failure_queue_urls=failure_urls,
                maximum_retry_attempts=int(probed.get((function_id, "retries")) or LAMBDA_DEFAULT_RETRIES),
                schedules=schedules,
            )
        )
    return specs
