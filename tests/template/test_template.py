"""template.yaml: the resources, their security settings, the rules and the IAM policies the functions rely on."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest

from bench.cold_start import template_environment
from reviewtune.console import audit
from reviewtune.console import dead_letters as dead_letters_command
from reviewtune.core import champion, config, containers, names, runs
from tests.template.helpers import (
    FUNCTIONS,
    ROOT,
    as_list,
    function_environment,
    iam_statements,
    parameter_defaults,
    principals,
    properties,
    resolve_conditions,
    resources,
    rule_event,
    template,
)

EXPECTED_TYPES = {
    "DataBucket": "AWS::S3::Bucket",
    "DataBucketPolicy": "AWS::S3::BucketPolicy",
    "RunsTable": "AWS::DynamoDB::Table",
    "IdempotencyTable": "AWS::DynamoDB::Table",
    "NotificationTopic": "AWS::SNS::Topic",
    "NotificationSubscription": "AWS::SNS::Subscription",
    "SageMakerExecutionRole": "AWS::IAM::Role",
    "CoreLayer": "AWS::Serverless::LayerVersion",
    "StartTuningFunction": "AWS::Serverless::Function",
    "StartEvaluationFunction": "AWS::Serverless::Function",
    "RecordResultsFunction": "AWS::Serverless::Function",
    "StartTuningDeadLetterQueue": "AWS::SQS::Queue",
    "StartEvaluationDeadLetterQueue": "AWS::SQS::Queue",
    "RecordResultsDeadLetterQueue": "AWS::SQS::Queue",
    "ReconcileFunction": "AWS::Serverless::Function",
    "ReconcileDeadLetterQueue": "AWS::SQS::Queue",
}

SAGEMAKER_ROLE = {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
BUCKET_ARN = {"Fn::GetAtt": ["DataBucket", "Arn"]}
RUNS_TABLE_ARN = {"Fn::GetAtt": ["RunsTable", "Arn"]}
IDEMPOTENCY_TABLE_ARN = {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
TOPIC = {"Ref": "NotificationTopic"}
RUNS_INDEXES = {"Fn::Sub": "${RunsTable.Arn}/index/*"}
TOPIC_KEY_ARN = {"Fn::GetAtt": ["NotificationKey", "Arn"]}
TOPIC_KEY_ACTIONS = {"kms:GenerateDataKey", "kms:Decrypt"}
MODEL_REGISTRY_ACTIONS = {
    "sagemaker:CreateModelPackageGroup",
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:CreateModelPackage",
    "sagemaker:UpdateModelPackage",
    "sagemaker:DescribeModelPackage",
}
IDEMPOTENCY_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}


def _objects(prefix: str) -> dict[str, str]:
    return {"Fn::Sub": f"${{DataBucket.Arn}}/{prefix}*"}


def _job_arn(kind: str) -> dict[str, str]:
    return {
        "Fn::Sub": f"arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:{kind}/${{JobNamePrefix}}-*"
    }


def _grants(function_id: str) -> dict[str, list]:
    """action -> resources it is allowed on, for one function's policy."""
    granted: dict[str, list] = {}
    for statement in iam_statements():
        if statement.owner == function_id and statement.effect == "Allow":
            for action in statement.actions:
                granted.setdefault(action, []).extend(statement.resources)
    return granted


# ------------------------------------------------------------------------------------------------ shape


def test_the_template_is_a_sam_template_for_python_3_11():
    assert template()["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    globals_ = template()["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.11"
    assert set(globals_["Architectures"]) <= {"arm64", "x86_64"}
    assert globals_["Handler"] == "app.handler"
    assert globals_["Tracing"] == "Active"
    assert globals_["Layers"] == [{"Ref": "CoreLayer"}]


def test_the_logical_ids_the_local_runtime_relies_on_exist_with_their_types():
    actual = {
        logical_id: resources()[logical_id]["Type"]
        for logical_id in EXPECTED_TYPES
        if logical_id in resources()
    }
    assert actual == EXPECTED_TYPES


def test_outputs_name_every_resource_the_tools_look_up():
    outputs = template()["Outputs"]
    expected = {
        "DataBucketName": {"Ref": "DataBucket"},
        "RunsTableName": {"Ref": "RunsTable"},
        "IdempotencyTableName": {"Ref": "IdempotencyTable"},
        "NotificationTopicArn": {"Ref": "NotificationTopic"},
        "SageMakerRoleArn": SAGEMAKER_ROLE,
        "StartTuningFunctionName": {"Ref": "StartTuningFunction"},
        "StartEvaluationFunctionName": {"Ref": "StartEvaluationFunction"},
        "RecordResultsFunctionName": {"Ref": "RecordResultsFunction"},
    }
    assert {name: outputs[name]["Value"] for name in expected if name in outputs} == expected


@pytest.mark.parametrize(("function", "output"), sorted(dead_letters_command.QUEUES.items()))
def test_each_output_the_dead_letters_command_reads_is_its_function_s_dead_letter_queue(function, output):
    queue = template()["Outputs"][output]["Value"]["Ref"]
    assert resources()[queue]["Type"] == "AWS::SQS::Queue"
    target = {"Type": "SQS", "TargetArn": {"Fn::GetAtt": [queue, "Arn"]}}
    assert properties(f"{function}Function")["DeadLetterQueue"] == target


# ------------------------------------------------------------------------------------------------ storage


def test_bucket_is_versioned_encrypted_private_and_sends_events_to_eventbridge():
    bucket = properties("DataBucket")
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    lifecycle = resolve_conditions(bucket["LifecycleConfiguration"], parameter_defaults())
    rules = {rule["Id"]: rule for rule in lifecycle["Rules"]}
    assert rules["ExpireNoncurrentVersions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    assert all(rule["Status"] == "Enabled" for rule in rules.values())
    assert resources()["DataBucket"]["DeletionPolicy"] == "Retain"


def test_bucket_policy_denies_requests_without_tls():
    policy = properties("DataBucketPolicy")
    assert policy["Bucket"] == {"Ref": "DataBucket"}
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == [BUCKET_ARN, _objects("")]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_runs_table_has_the_key_and_indexes_of_the_runs_module():
    table = properties("RunsTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "run_id", "KeyType": "HASH"}]
    attribute_types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert attribute_types == {"run_id": "S", "dataset": "S", "status": "S", "created_at": "S", "notice_pending": "S",
                               "kind": "S", "champion_of": "S"}
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {runs.DATASET_INDEX, runs.STATUS_INDEX, runs.PENDING_NOTICE_INDEX, champion.CHAMPIONS_INDEX}
    assert indexes[champion.CHAMPIONS_INDEX]["KeySchema"] == [
        {"AttributeName": "kind", "KeyType": "HASH"},
        {"AttributeName": "champion_of", "KeyType": "RANGE"},
    ]
    assert indexes[runs.PENDING_NOTICE_INDEX]["KeySchema"] == [
        {"AttributeName": "notice_pending", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    for index_name, hash_key in ((runs.DATASET_INDEX, "dataset"), (runs.STATUS_INDEX, "status")):
        assert indexes[index_name]["KeySchema"] == [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": "created_at", "KeyType": "RANGE"},
        ]
        assert indexes[index_name]["Projection"] == {"ProjectionType": "ALL"}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert resources()["RunsTable"]["DeletionPolicy"] == "Retain"


def test_idempotency_table_has_the_powertools_key_and_ttl():
    table = properties("IdempotencyTable")
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}


def test_topic_is_encrypted_and_the_email_subscription_exists_only_with_an_address():
    assert properties("NotificationTopic")["KmsMasterKeyId"] == {"Ref": "NotificationKey"}
    subscription = resources()["NotificationSubscription"]
    assert subscription["Condition"] == "HasNotificationEmail"
    assert subscription["Properties"] == {
        "TopicArn": TOPIC,
        "Protocol": "email",
        "Endpoint": {"Ref": "NotificationEmail"},
    }
    assert template()["Conditions"]["HasNotificationEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "NotificationEmail"}, ""]}]
    }
    assert parameter_defaults()["NotificationEmail"] == ""


def test_dead_letter_queues_keep_messages_fourteen_days_encrypted():
    for _, _, queue_id in FUNCTIONS.values():
        queue = properties(queue_id)
        assert queue["MessageRetentionPeriod"] == 1209600
        assert queue["SqsManagedSseEnabled"] is True


# ------------------------------------------------------------------------------------------------ functions and layer


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_function_code_lives_in_its_folder_and_the_layer_carries_dependencies(function_id):
    folder, _, _ = FUNCTIONS[function_id]
    function = properties(function_id)
    assert function["CodeUri"] == f"functions/{folder}/"
    requirements = ROOT / "functions" / folder / "requirements.txt"
    assert requirements.is_file()
    assert [
        line for line in requirements.read_text().splitlines() if line.strip() and not line.startswith("#")
    ] == []


def test_core_layer_ships_the_project_package_and_training_code_from_one_copy():
    layer = resources()["CoreLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/core/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.11"]
    assert (
        layer["Properties"]["CompatibleArchitectures"] == template()["Globals"]["Function"]["Architectures"]
    )
    # Built by layers/core/Makefile (tests/template/test_layer_build.py), for the functions' CPU.
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Metadata"]["BuildArchitecture"] == template()["Globals"]["Function"]["Architectures"][0]
    layer_dir = ROOT / "layers" / "core"
    for name in ("reviewtune", "training_code"):
        link = layer_dir / name
        assert link.is_symlink(), f"layers/core/{name} must be a symlink, so the code exists once"
        assert str(link.readlink()) == f"../../{name}"
        assert link.resolve() == (ROOT / name).resolve()
    requirements = (layer_dir / "requirements.txt").read_text().splitlines()
    assert "aws-lambda-powertools[tracer]>=3,<4" in requirements


def test_start_tuning_has_memory_for_large_files_and_five_minutes():
    function = properties("StartTuningFunction")
    assert function["MemorySize"] >= 1024
    assert function["Timeout"] == 300


def test_start_evaluation_has_five_minutes_to_describe_every_trial_one_by_one():
    maximum = int(template()["Parameters"]["MaxJobs"]["MaxValue"])
    assert maximum == 500
    assert properties("StartEvaluationFunction")["Timeout"] == 300


def test_the_reconciler_restarting_a_claim_has_what_start_tuning_has():
    """A stale claim is started over with start_tuning's code inside the reconciler's pass."""
    start, reconcile = properties("StartTuningFunction"), properties("ReconcileFunction")
    assert reconcile["MemorySize"] == start["MemorySize"] and reconcile["Timeout"] == start["Timeout"]


def test_no_function_runs_long_enough_to_approve_a_package_after_its_withdrawal_is_settled():
    """withdrawal.SETTLE_AFTER_SECONDS assumes record_results (in its own function or in the reconciler's pass)
    approves within the invocation that wrote its mark."""
    from reviewtune.core.withdrawal import SETTLE_AFTER_SECONDS

    default = template()["Globals"]["Function"].get("Timeout", 3)
    for logical_id in ("RecordResultsFunction", "ReconcileFunction"):
        assert properties(logical_id).get("Timeout", default) * 2 < SETTLE_AFTER_SECONDS, logical_id


def test_the_outbox_s_lease_outlasts_every_function_that_sends():
    """A sender alive past its lease (its "sent" write stalled) would see the next sender publish its message again:
    the lease runs out only on a dead sender when no function lives as long."""
    from reviewtune.core.outbox import LEASE_SECONDS

    default = template()["Globals"]["Function"].get("Timeout", 3)
    functions = [logical_id for logical_id, resource in resources().items()
                 if resource["Type"] == "AWS::Serverless::Function"]
    assert len(functions) >= 4
    for logical_id in functions:
        assert properties(logical_id).get("Timeout", default) < LEASE_SECONDS, logical_id


@pytest.mark.parametrize(
    ("function_id", "parameter", "default"),
    [
        ("StartTuningFunction", "StartTuningConcurrency", "2"),
        ("StartEvaluationFunction", "JobEventConcurrency", "2"),
        ("RecordResultsFunction", "JobEventConcurrency", "2"),
    ],
)
def test_functions_have_small_reserved_concurrency(function_id, parameter, default):
    condition, reserved, unreserved = properties(function_id)["ReservedConcurrentExecutions"]["Fn::If"]
    assert reserved == {"Ref": parameter}
    assert unreserved == {"Ref": "AWS::NoValue"}
    assert template()["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, "0"]}]}
    assert parameter_defaults()[parameter] == default


def _documented_variables() -> set[str]:
    """The variables of the environment table in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Environment of the Lambda functions", 1)[1].split("\n## ", 1)[0]
    found: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            found.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return found


def _own_variables() -> dict[str, set[str]]:
    """The variables a function sets beyond the Globals (its logical id -> names), POWERTOOLS_SERVICE_NAME left out."""
    return {
        function_id: set(resource["Properties"].get("Environment", {}).get("Variables", {})) - {"POWERTOOLS_SERVICE_NAME"}
        for function_id, resource in resources().items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_functions_get_every_documented_variable_and_every_variable_config_reads():
    own = _own_variables()
    assert own == {
        "StartTuningFunction": set(),
        "StartEvaluationFunction": set(),
        "RecordResultsFunction": set(),
        "ReconcileFunction": {"START_TUNING_DEAD_LETTER_QUEUE_URL"},
    }
    environment = set(function_environment()).union(*own.values())
    documented = _documented_variables()
    read_by_config = set(
        re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', Path(config.__file__).read_text())
    )
    assert len(documented) >= 26
    assert documented - environment == set()
    assert read_by_config - environment == {"AWS_REGION", "AWS_DEFAULT_REGION"}  # Lambda's runtime sets them
    assert environment - documented == {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }


def test_the_reconciler_reads_start_tuning_s_dead_letter_queue():
    variables = resources()["ReconcileFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["START_TUNING_DEAD_LETTER_QUEUE_URL"] == {"Ref": "StartTuningDeadLetterQueue"}
    assert resources()["StartTuningFunction"]["Properties"]["DeadLetterQueue"]["TargetArn"] == {
        "Fn::GetAtt": ["StartTuningDeadLetterQueue", "Arn"]
    }


def test_environment_values_come_from_the_stack():
    env = function_environment()
    assert env["BUCKET_NAME"] == {"Ref": "DataBucket"}
    assert env["RUNS_TABLE_NAME"] == {"Ref": "RunsTable"}
    assert env["IDEMPOTENCY_TABLE_NAME"] == {"Ref": "IdempotencyTable"}
    assert env["TOPIC_ARN"] == TOPIC
    assert env["SAGEMAKER_ROLE_ARN"] == SAGEMAKER_ROLE
    assert env["POWERTOOLS_SERVICE_NAME"] == "reviewtune"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == {"Fn::Sub": "reviewtune/${AWS::StackName}"}  # one per stack
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    from_parameters = {
        "JOB_NAME_PREFIX": "JobNamePrefix",
        "TRAINING_INSTANCE_TYPE": "TrainingInstanceType",
        "TRAINING_INSTANCE_COUNT": "TrainingInstanceCount",
        "MAX_JOBS": "MaxJobs",
        "MAX_PARALLEL_JOBS": "MaxParallelJobs",
        "STRATEGY": "Strategy",
        "EARLY_STOPPING": "EarlyStopping",
        "HYPERPARAMETER_RANGES": "HyperparameterRanges",
        "STATIC_HYPERPARAMETERS": "StaticHyperparameters",
        "MODEL_NAME": "ModelName",
        "MAX_SEQ_LENGTH": "MaxSeqLength",
        "EPOCHS": "Epochs",
        "PROCESSING_INSTANCE_TYPE": "ProcessingInstanceType",
        "USE_SPOT_TRAINING": "UseSpotTraining",
        "MAX_RUNTIME_SECONDS": "MaxRuntimeSeconds",
        "VALIDATION_FRACTION": "ValidationFraction",
        "TEST_FRACTION": "TestFraction",
        "MIN_ROWS_PER_CLASS": "MinRowsPerClass",
        "CLASS_BALANCE": "ClassBalance",
        "MAX_CONCURRENT_RUNS": "MaxConcurrentRuns",
        "RUN_STATE_DEADLINES": "RunStateDeadlines",
        "START_MAX_ATTEMPTS": "StartMaxAttempts",
        "WARM_START": "WarmStart",
        "CHAMPION_MARGIN_POINTS": "ChampionMarginPoints",
        "CHAMPION_MIN_COMPARED_REVIEWS": "ChampionMinComparedReviews",
        "CHAMPION_MUST_BEAT_GUESSING": "ChampionMustBeatGuessing",
        "TARGET_OBJECTIVE_METRIC_VALUE": "TargetObjectiveMetricValue",
        "MAX_JOBS_NOT_IMPROVING": "MaxNumberOfTrainingJobsNotImproving",
        "COMPLETE_ON_CONVERGENCE": "CompleteOnConvergence",
        "SKIP_DUPLICATE_CONTENT": "SkipDuplicateContent",
        "MISSED_DROP_GRACE_MINUTES": "MissedDropGraceMinutes",
        "MISSED_DROP_WINDOW_DAYS": "MissedDropWindowDays",
    }
    assert {variable: env[variable] for variable in from_parameters} == {
        variable: {"Ref": parameter} for variable, parameter in from_parameters.items()
    }
    for variable, parameter, condition in (
        ("TRAINING_IMAGE_URI", "TrainingImageUri", "UseDefaultTrainingImage"),
        ("PROCESSING_IMAGE_URI", "ProcessingImageUri", "UseDefaultProcessingImage"),
        ("INFERENCE_IMAGE_URI", "InferenceImageUri", "UseDefaultInferenceImage"),
    ):
        chosen, _, given = env[variable]["Fn::If"]
        assert (chosen, given) == (condition, {"Ref": parameter})


# ------------------------------------------------------------------------------------------------ parameters


def test_parameter_defaults_are_the_settings_defaults():
    defaults = parameter_defaults()
    settings = config.Settings(bucket="b", runs_table="t", topic_arn="a", sagemaker_role_arn="r")
    assert defaults["JobNamePrefix"] == settings.job_name_prefix == "reviewtune"
    assert defaults["TrainingInstanceType"] == settings.training_instance_type
    assert int(defaults["TrainingInstanceCount"]) == settings.training_instance_count
    assert int(defaults["MaxJobs"]) == settings.max_jobs == 4
    assert int(defaults["MaxParallelJobs"]) == settings.max_parallel_jobs == 2
    assert defaults["Strategy"] == settings.strategy == "Bayesian"
    assert defaults["EarlyStopping"] == settings.early_stopping == "Off"
    assert json.loads(defaults["HyperparameterRanges"]) == config.DEFAULT_RANGES
    assert json.loads(defaults["StaticHyperparameters"]) == {}
    assert defaults["ModelName"] == settings.model_name == "roberta-base"
    assert int(defaults["MaxSeqLength"]) == settings.max_seq_length
    assert int(defaults["Epochs"]) == settings.epochs
    assert defaults["ProcessingInstanceType"] == settings.processing_instance_type
    assert defaults["UseSpotTraining"] == "false"
    assert int(defaults["MaxRuntimeSeconds"]) == settings.max_runtime_seconds
    assert float(defaults["ValidationFraction"]) == settings.validation_fraction
    assert float(defaults["TestFraction"]) == settings.test_fraction
    assert int(defaults["MinRowsPerClass"]) == settings.min_rows_per_class
    assert defaults["ClassBalance"] == settings.class_balance
    assert int(defaults["MaxConcurrentRuns"]) == settings.max_concurrent_runs == 2
    assert int(defaults["StartMaxAttempts"]) == settings.start_max_attempts
    assert defaults["WarmStart"] == "true" and settings.warm_start is True
    assert float(defaults["ChampionMarginPoints"]) == settings.champion_margin_points == champion.DEFAULT_MARGIN_POINTS
    assert (int(defaults["ChampionMinComparedReviews"]) == settings.champion_min_compared_reviews
            == champion.DEFAULT_MIN_COMPARED_REVIEWS)
    assert defaults["ChampionMustBeatGuessing"] == "true" and settings.champion_must_beat_guessing is True
    assert defaults["TargetObjectiveMetricValue"] == "" and settings.target_objective_metric_value is None
    assert defaults["MaxNumberOfTrainingJobsNotImproving"] == "" and settings.max_jobs_not_improving is None
    assert defaults["CompleteOnConvergence"] == "" and settings.complete_on_convergence is None
    assert defaults["SkipDuplicateContent"] == "true" and settings.skip_duplicate_content is True
    assert int(defaults["MissedDropGraceMinutes"]) == settings.missed_drop_grace_minutes == config.MISSED_DROP_GRACE_MINUTES
    assert int(defaults["MissedDropWindowDays"]) == settings.missed_drop_window_days == config.MISSED_DROP_WINDOW_DAYS
    assert audit.stack_defaults(defaults) == (audit.DEFAULT_GRACE_SECONDS, config.MISSED_DROP_WINDOW_DAYS)
    assert config.Settings.from_env(
        {"BUCKET_NAME": "b", "RUNS_TABLE_NAME": "t", "TOPIC_ARN": "a", "SAGEMAKER_ROLE_ARN": "r",
         "RUN_STATE_DEADLINES": defaults["RunStateDeadlines"]}
    ).run_deadlines == settings.run_deadlines


def test_parameter_choices_are_the_ones_config_accepts():
    parameters = template()["Parameters"]
    assert tuple(parameters["Strategy"]["AllowedValues"]) == config.STRATEGIES
    assert tuple(parameters["EarlyStopping"]["AllowedValues"]) == config.EARLY_STOPPING_TYPES
    assert tuple(parameters["ClassBalance"]["AllowedValues"]) == config.CLASS_BALANCE_MODES
    assert parameters["WarmStart"]["AllowedValues"] == ["true", "false"]
    assert tuple(parameters["CompleteOnConvergence"]["AllowedValues"]) == ("", *config.CONVERGENCE_CHOICES)
    not_improving = parameters["MaxNumberOfTrainingJobsNotImproving"]["AllowedPattern"]
    assert [v for v in ("", "2", "3", "9", "10", "03") if re.fullmatch(not_improving, v)] == ["", "3", "9", "10"]
    margin = parameters["ChampionMarginPoints"]["AllowedPattern"]
    assert [v for v in ("0", "0.5", "2", "12.25", "100", "101", "-1", "x", "") if re.fullmatch(margin, v)] == [
        "0", "0.5", "2", "12.25", "100"]
    target = parameters["TargetObjectiveMetricValue"]["AllowedPattern"]
    assert [v for v in ("", "80", "81.5", "-1", "x") if re.fullmatch(target, v)] == ["", "80", "81.5"]
    assert parameters["UseSpotTraining"]["AllowedValues"] == ["false", "true"]
    for value in parameters["SkipDuplicateContent"]["AllowedValues"]:
        env = {"BUCKET_NAME": "b", "RUNS_TABLE_NAME": "t", "TOPIC_ARN": "a", "SAGEMAKER_ROLE_ARN": "r"}
        assert config.Settings.from_env({**env, "SKIP_DUPLICATE_CONTENT": value}).skip_duplicate_content is (
            value == "true"
        )
    prefix = parameters["JobNamePrefix"]
    assert prefix["MaxLength"] == names.PREFIX_MAX
    assert f"^{prefix['AllowedPattern']}$" == names.PREFIX_PATTERN.pattern


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-training:2.8.0-gpu-py312", True),
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/team/review-eval", True),
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/eval@sha256:" + "a" * 64, True),
        ("huggingface-pytorch-training:latest", False),
        ("docker.io/library/python:3.11", False),
    ],
)
def test_image_parameters_accept_only_ecr_uris_whose_account_is_the_first_field(value, accepted):
    for parameter in ("TrainingImageUri", "ProcessingImageUri", "InferenceImageUri"):
        pattern = template()["Parameters"][parameter]["AllowedPattern"]
        assert (re.fullmatch(pattern, value) is not None) is accepted


def test_default_images_are_the_hugging_face_containers_of_containers_py():
    repositories = template()["Mappings"]["DeepLearningContainers"]["Repositories"]
    assert repositories == {"Training": containers.TRAINING_REPOSITORY, "Processing": containers.PROCESSING_REPOSITORY}
    assert "-gpu-" in repositories["Training"] and "-cpu-" in repositories["Processing"]
    assert parameter_defaults()["TrainingImageUri"] == parameter_defaults()["ProcessingImageUri"] == ""
    registries = template()["Mappings"]["DeepLearningContainerRegistries"]
    for kind, key in (("training", "Training"), ("processing", "Processing")):
        assert {region: entry[key] for region, entry in registries.items() if key in entry} == containers.REGISTRIES[kind]


@pytest.mark.parametrize("region", ["us-east-1", "eu-south-1", "af-south-1", "cn-northwest-1", "us-gov-west-1"])
def test_the_functions_default_images_are_pulled_from_their_own_region_s_registry(region):
    environment = template_environment("StartTuningFunction", region=region)
    assert environment["TRAINING_IMAGE_URI"] == containers.default_image_uri("training", region)
    assert environment["PROCESSING_IMAGE_URI"] == containers.default_image_uri("processing", region)
    assert environment["INFERENCE_IMAGE_URI"] == containers.default_image_uri("processing", region)


def _find_in_maps(node):
    if isinstance(node, dict):
        if "Fn::FindInMap" in node:
            yield node["Fn::FindInMap"]
        for value in node.values():
            yield from _find_in_maps(value)
    elif isinstance(node, list):
        for value in node:
            yield from _find_in_maps(value)


@pytest.mark.parametrize("region", ["eu-central-2", "ap-south-2", "mx-central-1"])
def test_a_stack_naming_its_own_images_deploys_in_a_region_the_container_tables_lack(region):
    # A Fn::FindInMap that finds no entry fails the stack, even in the branch of a Fn::If not taken: each lookup by
    # Region has a DefaultValue (AWS::LanguageExtensions, which must come before the SAM transform).
    lookups = list(_find_in_maps({**template()["Globals"], **template()["Resources"]}))
    by_region = [arg for arg in lookups if arg[1] == {"Ref": "AWS::Region"}]
    assert len(by_region) == 5
    assert all(len(arg) == 4 and arg[3] == {"DefaultValue": ""} for arg in by_region)
    assert all(arg[1] != {"Ref": "AWS::Region"} and len(arg) == 3 for arg in lookups if arg not in by_region)
    registries = template()["Mappings"]["DeepLearningContainerRegistries"]
    assert "Training" not in registries.get(region, {})
    assert template()["Transform"].index("AWS::LanguageExtensions") == 0

    own = {name: f"123456789012.dkr.ecr.{region}.amazonaws.com/{name.lower()}:1" for name in
           ("TrainingImageUri", "ProcessingImageUri", "InferenceImageUri")}
    environment = template_environment("StartTuningFunction", region=region, parameters=own)
    assert environment["TRAINING_IMAGE_URI"] == own["TrainingImageUri"]
    assert environment["PROCESSING_IMAGE_URI"] == own["ProcessingImageUri"]
    assert environment["INFERENCE_IMAGE_URI"] == own["InferenceImageUri"]


def test_the_sagemaker_role_pulls_from_the_registries_of_the_images_in_use():
    (pull,) = [s for s in iam_statements() if s.sid == "PullJobImages"]
    accounts = [resource["Fn::Sub"][1]["Account"]["Fn::Select"][1]["Fn::Split"][1]["Fn::If"] for resource in pull.resources]
    assert accounts == [
        [
            f"UseDefault{kind}Image",
            {"Fn::FindInMap": ["DeepLearningContainerRegistries", {"Ref": "AWS::Region"}, kind, {"DefaultValue": ""}]},
            {"Ref": f"{kind}ImageUri"},
        ]
        for kind in ("Training", "Processing")
    ]


@pytest.mark.parametrize(
    ("kind", "rule"), [("training", "DefaultTrainingImageInRegion"), ("processing", "DefaultProcessingImageInRegion")]
)
def test_a_stack_where_a_default_image_is_missing_is_refused_unless_it_names_its_own(kind, rule):
    spec = template()["Rules"][rule]
    parameters = ["TrainingImageUri"] if kind == "training" else ["ProcessingImageUri", "InferenceImageUri"]
    empty = [{"Fn::Equals": [{"Ref": name}, ""]} for name in parameters]
    assert spec["RuleCondition"] == (empty[0] if len(empty) == 1 else {"Fn::Or": empty})
    (assertion,) = spec["Assertions"]
    regions, region = assertion["Assert"]["Fn::Contains"]
    assert region == {"Ref": "AWS::Region"}
    assert sorted(regions) == sorted(containers.REGISTRIES[kind])
    assert all(name in assertion["AssertDescription"] for name in parameters)


def test_hyperband_is_refused_with_early_stopping():
    rule = template()["Rules"]["HyperbandWithoutEarlyStopping"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "Strategy"}, "Hyperband"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "EarlyStopping"}, "Off"]}


# ------------------------------------------------------------------------------------------------ rules


def test_object_created_rule_sends_every_object_under_incoming_of_the_data_bucket():
    pattern = rule_event("StartTuningFunction")["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"] == {"name": [{"Ref": "DataBucket"}]}
    # No suffix filter: the function decides on the type (formats.file_format), so no file goes without an outcome.
    assert pattern["detail"]["object"]["key"] == [{"prefix": names.INCOMING_PREFIX}]


@pytest.mark.parametrize(
    ("function_id", "detail_type", "status_field", "name_field"),
    [
        (
            "StartEvaluationFunction",
            "SageMaker HyperParameter Tuning Job State Change",
            "HyperParameterTuningJobStatus",
            "HyperParameterTuningJobName",
        ),
        (
            "RecordResultsFunction",
            "SageMaker Processing Job State Change",
            "ProcessingJobStatus",
            "ProcessingJobName",
        ),
    ],
)
def test_job_rules_take_final_states_of_this_stack_s_jobs(function_id, detail_type, status_field, name_field):
    pattern = rule_event(function_id)["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.sagemaker"]
    assert pattern["detail-type"] == [detail_type]
    assert pattern["detail"][status_field] == ["Completed", "Failed", "Stopped"]
    assert pattern["detail"][name_field] == [{"prefix": {"Fn::Sub": "${JobNamePrefix}-"}}]


def test_the_sweep_s_grace_is_never_shorter_than_a_start_event_may_be_retried():
    """A version is claimed by the reconciler only once its Object Created event can no longer be on its way through
    the rule's retries (else every drop whose delivery was retried would count as missed)."""
    grace = template()["Parameters"]["MissedDropGraceMinutes"]
    event_age = rule_event("StartTuningFunction")["Properties"]["RetryPolicy"]["MaximumEventAgeInSeconds"]
    assert grace["MinValue"] * 60 >= event_age
    assert grace["MaxValue"] < template()["Parameters"]["MissedDropWindowDays"]["MinValue"] * 1440  # config.check


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_every_rule_target_and_async_invocation_ends_in_the_function_s_dead_letter_queue(function_id):
    _, event_name, queue_id = FUNCTIONS[function_id]
    queue_arn = {"Fn::GetAtt": [queue_id, "Arn"]}
    event = rule_event(function_id)
    assert event["Type"] == "EventBridgeRule"
    assert event["Properties"]["DeadLetterConfig"] == {"Arn": queue_arn}
    retry = event["Properties"]["RetryPolicy"]
    assert 0 < retry["MaximumRetryAttempts"] <= 185
    assert 60 <= retry["MaximumEventAgeInSeconds"] <= 86400
    function = properties(function_id)
    assert function["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": queue_arn}
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] <= 2
    # EventBridge may write to the queue only for this function's rule (SAM names it <function><event>).
    rule_arn = {"Fn::GetAtt": [f"{function_id}{event_name}", "Arn"]}
    allowed = [
        statement
        for statement in iam_statements()
        if statement.owner == "DeadLetterQueuesPolicy" and queue_arn in statement.resources
    ]
    assert len(allowed) == 1
    assert allowed[0].actions == ("sqs:SendMessage",)
    assert allowed[0].condition == {"ArnEquals": {"aws:SourceArn": rule_arn}}
    assert {"Ref": queue_id} in properties("DeadLetterQueuesPolicy")["Queues"]


# ------------------------------------------------------------------------------------------------ IAM


def test_no_allow_statement_grants_a_wildcard_action():
    statements = iam_statements()
    assert len(statements) > 30
    wildcard = [(s.owner, s.sid, a) for s in statements for a in s.actions if "*" in a]
    # The exceptions: the TLS-only denies of the bucket policies, which must cover every S3 action, and the
    # account's administration of its own key (what lets IAM policies grant the key's use).
    assert sorted(wildcard) == [
        ("AccessLogsBucketPolicy", "DenyInsecureTransport", "s3:*"),
        ("DataBucketPolicy", "DenyInsecureTransport", "s3:*"),
        ("NotificationKey", "AccountAdministersKey", "kms:*"),
    ]
    assert all(s.effect == "Deny" for s in statements if s.sid == "DenyInsecureTransport")
    assert principals("NotificationKey", "AccountAdministersKey") == {
        "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    }


def test_only_unscopable_actions_are_allowed_on_every_resource():
    # In a key policy "*" is the key itself.
    star = [
        s
        for s in iam_statements()
        if s.effect == "Allow" and "*" in s.resources and resources()[s.owner]["Type"] != "AWS::KMS::Key"
    ]
    assert {(s.owner, s.actions) for s in star} == {
        ("SageMakerExecutionRole", ("ecr:GetAuthorizationToken",)),
        ("SageMakerExecutionRole", ("cloudwatch:PutMetricData",)),
    }
    metrics = next(s for s in star if s.actions == ("cloudwatch:PutMetricData",))
    assert metrics.condition == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}


def test_pass_role_is_granted_only_for_the_sagemaker_role_to_sagemaker():
    passing = [s for s in iam_statements() if any(a.lower() == "iam:passrole" for a in s.actions)]
    assert {s.owner for s in passing} == {
        "StartTuningFunction",
        "StartEvaluationFunction",
        "RecordResultsFunction",  # a run's end starts the oldest queued run
        "ReconcileFunction",
    }
    for statement in passing:
        assert statement.actions == ("iam:PassRole",)
        assert statement.resources == (SAGEMAKER_ROLE,)
        assert statement.condition == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_sagemaker_permissions_are_limited_to_this_stack_s_job_names():
    for statement in iam_statements():
        if any(action.startswith("sagemaker:") for action in statement.actions):
            assert all(r["Fn::Sub"].endswith("/${JobNamePrefix}-*") for r in statement.resources), statement


def test_start_tuning_permissions():
    grants = _grants("StartTuningFunction")
    assert set(grants) == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
        "s3:PutObject",
        "s3:PutObjectTagging",
        *IDEMPOTENCY_ACTIONS,
        "dynamodb:Query",
        "sagemaker:CreateHyperParameterTuningJob",
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:StopHyperParameterTuningJob",
        "sagemaker:AddTags",
        "iam:PassRole",
        "sns:Publish",
        *TOPIC_KEY_ACTIONS,
    }
    assert grants["dynamodb:Query"] == [RUNS_INDEXES]
    assert grants["s3:ListBucket"] == [BUCKET_ARN]
    assert grants["s3:GetObjectVersion"] == [_objects("incoming/")]
    assert sorted(grants["s3:GetObject"], key=str) == sorted(
        [_objects("incoming/"), _objects("code/")], key=str
    )
    assert sorted(grants["s3:PutObject"], key=str) == sorted(
        [_objects("runs/"), _objects("rejected/"), _objects("code/")], key=str
    )
    assert sorted(grants["dynamodb:PutItem"], key=str) == sorted(
        [RUNS_TABLE_ARN, IDEMPOTENCY_TABLE_ARN], key=str
    )
    assert grants["dynamodb:DeleteItem"] == [IDEMPOTENCY_TABLE_ARN]
    assert grants["sagemaker:CreateHyperParameterTuningJob"] == [_job_arn("hyper-parameter-tuning-job")]
    assert grants["sagemaker:AddTags"] == [_job_arn("hyper-parameter-tuning-job")]
    assert grants["sns:Publish"] == [TOPIC]


def test_start_evaluation_permissions():
    grants = _grants("StartEvaluationFunction")
    # It reads the tuning job from SageMaker and creates the processing job (no Describe; stopped when its run ended
    # meanwhile); from S3 it reads nothing but whether the champion's model and training hashes are still there, and
    # the training code deployed with it, which it uploads unless that content is there (the evaluation's script).
    assert set(grants) == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        *IDEMPOTENCY_ACTIONS,
        "dynamodb:Query",
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:StopHyperParameterTuningJob",
        "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
        "sagemaker:CreateHyperParameterTuningJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:CreateProcessingJob",
        "sagemaker:StopProcessingJob",
        "sagemaker:AddTags",
        "iam:PassRole",
        "sns:Publish",
        *TOPIC_KEY_ACTIONS,
    }
    assert grants["sagemaker:StopProcessingJob"] == [_job_arn("processing-job")]
    assert grants["sagemaker:CreateHyperParameterTuningJob"] == [_job_arn("hyper-parameter-tuning-job")]
    assert grants["sagemaker:ListTrainingJobsForHyperParameterTuningJob"] == [
        _job_arn("hyper-parameter-tuning-job")
    ]
    assert grants["sagemaker:DescribeTrainingJob"] == [_job_arn("training-job")]
    assert grants["sagemaker:CreateProcessingJob"] == [_job_arn("processing-job")]
    # Both jobs it creates carry tags: the evaluation job, and the tuning job of a queued run it starts.
    assert sorted(grants["sagemaker:AddTags"], key=str) == sorted(
        [_job_arn("processing-job"), _job_arn("hyper-parameter-tuning-job")], key=str
    )
    assert sorted(grants["s3:PutObject"], key=str) == sorted([_objects("runs/*/evaluation/input/"), _objects("code/")],
                                                             key=str)
    assert grants["s3:ListBucket"] == [BUCKET_ARN]
    assert sorted(grants["s3:GetObject"], key=str) == sorted(
        [_objects("runs/*/models/"), {"Fn::Sub": "${DataBucket.Arn}/runs/*/data/train_hashes.txt"}, _objects("code/")],
        key=str,
    )
    assert grants["dynamodb:Query"] == [RUNS_INDEXES]
    assert grants["dynamodb:PutItem"] == [IDEMPOTENCY_TABLE_ARN]
    assert sorted(grants["dynamodb:UpdateItem"], key=str) == sorted(
        [RUNS_TABLE_ARN, IDEMPOTENCY_TABLE_ARN], key=str
    )


def test_record_results_permissions():
    grants = _grants("RecordResultsFunction")
    # The processing job's state-change event carries everything it needs about the job: no DescribeProcessingJob.
    assert set(grants) == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        *IDEMPOTENCY_ACTIONS,
        "dynamodb:Query",
        "sagemaker:CreateHyperParameterTuningJob",
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:StopHyperParameterTuningJob",
        "sagemaker:AddTags",
        *MODEL_REGISTRY_ACTIONS,
        "iam:PassRole",
        "sns:Publish",
        *TOPIC_KEY_ACTIONS,
    }
    assert grants["s3:GetObject"] == [_objects("runs/")]
    # it writes one object: the run's HTML report, to tell the champion decision in it
    assert grants["s3:PutObject"] == [{"Fn::Sub": "${DataBucket.Arn}/runs/*/evaluation/report/index.html"}]
    assert grants["sagemaker:CreateHyperParameterTuningJob"] == [_job_arn("hyper-parameter-tuning-job")]
    # The champion item of a dataset is written into the runs table.
    assert grants["dynamodb:PutItem"] == [RUNS_TABLE_ARN, IDEMPOTENCY_TABLE_ARN]


def test_every_function_that_publishes_may_use_the_topic_key_and_nothing_else_of_kms():
    functions = {lid for lid, r in resources().items() if r["Type"] == "AWS::Serverless::Function"}
    publishers = {s.owner for s in iam_statements() if "sns:Publish" in s.actions and s.owner in functions}
    assert publishers >= set(FUNCTIONS)
    for function_id in sorted(publishers):
        grants = _grants(function_id)
        assert {a for a in grants if a.startswith("kms:")} == TOPIC_KEY_ACTIONS, function_id
        assert all(grants[action] == [TOPIC_KEY_ARN] for action in TOPIC_KEY_ACTIONS), function_id


def test_reconcile_permissions():
    grants = _grants("ReconcileFunction")
    assert set(grants) == {
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
        "s3:PutObject",
        "s3:PutObjectTagging",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "sagemaker:CreateHyperParameterTuningJob",
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
        "sagemaker:StopHyperParameterTuningJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:CreateProcessingJob",
        "sagemaker:DescribeProcessingJob",
        "sagemaker:StopProcessingJob",
        "sagemaker:AddTags",
        *MODEL_REGISTRY_ACTIONS,
        "iam:PassRole",
        "sns:Publish",
        *TOPIC_KEY_ACTIONS,
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
    }
    assert grants["dynamodb:GetItem"] == [RUNS_TABLE_ARN]  # no idempotency table: the state machine suffices
    assert grants["dynamodb:Query"] == [RUNS_INDEXES]
    assert grants["sns:Publish"] == [TOPIC]
    start_dead_letters = [{"Fn::GetAtt": ["StartTuningDeadLetterQueue", "Arn"]}]  # no other function's queue
    for action in ("sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage"):
        assert grants[action] == start_dead_letters, action


@pytest.mark.parametrize("function_id", ["RecordResultsFunction", "ReconcileFunction"])
def test_model_registry_grants_reach_only_this_stack_s_groups_and_packages(function_id):
    """record_results registers a succeeded run's model (the reconciler calls record_results too)."""
    grants = _grants(function_id)
    for action in MODEL_REGISTRY_ACTIONS:
        assert grants[action] == [_job_arn("model-package-group"), _job_arn("model-package")], action
    for other in ("StartTuningFunction", "StartEvaluationFunction"):
        assert not MODEL_REGISTRY_ACTIONS & set(_grants(other)), other


def test_reconciler_runs_on_a_scheduler_schedule_with_its_dead_letter_queue_and_log_group():
    function = properties("ReconcileFunction")
    event = function["Events"]["Schedule"]
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == {"Ref": "ReconcileSchedule"}
    queue_arn = {"Fn::GetAtt": ["ReconcileDeadLetterQueue", "Arn"]}
    assert event["Properties"]["DeadLetterConfig"] == {"Arn": queue_arn}
    assert function["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": queue_arn}
    # one pass at a time, unless the account's quota reserves nothing (JobEventConcurrency 0)
    assert function["ReservedConcurrentExecutions"] == {"Fn::If": ["ReserveJobEventConcurrency", 1, {"Ref": "AWS::NoValue"}]}
    assert event["Properties"]["OmitName"] is True  # SAM would name every stack's schedule alike
    assert parameter_defaults()["ReconcileSchedule"].startswith("rate(")
    assert properties("ReconcileLogGroup")["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${ReconcileFunction}"}
    assert properties("ReconcileDeadLetterQueue")["MessageRetentionPeriod"] == 1209600


def test_sagemaker_role_is_for_sagemaker_and_reaches_only_this_bucket_logs_and_images():
    role = properties("SageMakerExecutionRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {
        "Effect": "Allow",
        "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    assert "ManagedPolicyArns" not in role
    grants = _grants("SageMakerExecutionRole")
    assert grants["s3:ListBucket"] == [BUCKET_ARN]
    assert sorted(grants["s3:GetObject"], key=str) == sorted([_objects("code/"), _objects("runs/")], key=str)
    assert grants["s3:PutObject"] == [_objects("runs/")]
    log_group = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/sagemaker/*"
    assert grants["logs:PutLogEvents"] == [{"Fn::Sub": log_group}]
    images = grants["ecr:BatchGetImage"]
    assert len(images) == 2
    for image, parameter in zip(images, ("TrainingImageUri", "ProcessingImageUri"), strict=True):
        arn, variables = image["Fn::Sub"]
        assert arn == "arn:${AWS::Partition}:ecr:${AWS::Region}:${Account}:repository/*"
        assert parameter in json.dumps(variables["Account"])
    assert {a.split(":")[0] for a in grants} == {"s3", "logs", "ecr", "cloudwatch"}


# ------------------------------------------------------------------------------------------------ samconfig


def test_samconfig_deploys_the_reviewtune_stack_with_iam_capability():
    samconfig = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert samconfig["version"] == 0.1
    assert samconfig["default"]["global"]["parameters"]["stack_name"] == "reviewtune"
    build = samconfig["default"]["build"]["parameters"]
    assert build["cached"] is True and build["parallel"] is True
    deploy = samconfig["default"]["deploy"]["parameters"]
    assert as_list(deploy["capabilities"]) == ["CAPABILITY_IAM"]
    assert deploy["confirm_changeset"] is True
    assert deploy["resolve_s3"] is True
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", deploy["region"])


def test_sam_generates_the_rules_the_queue_policy_refers_to_with_their_dead_letter_queues():
    from reviewtune.local.stack import to_cloudformation

    sam = copy.deepcopy(template())
    for resource in sam["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://artifacts/code.zip"
    cfn = to_cloudformation(sam, parameter_defaults(), "us-east-1")
    for function_id, (_, event_name, queue_id) in FUNCTIONS.items():
        rule = cfn["Resources"][f"{function_id}{event_name}"]
        assert rule["Type"] == "AWS::Events::Rule"
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
        assert set(target["RetryPolicy"]) == {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"}
        invoke_config = cfn["Resources"][f"{function_id}EventInvokeConfig"]["Properties"]
        assert invoke_config["MaximumRetryAttempts"] <= 2
    assert "Rules" in cfn


def test_run_data_expiring_before_a_run_could_end_is_refused():
    pattern = template()["Parameters"]["RunsExpirationDays"]["AllowedPattern"]
    assert [day for day in range(0, 400) if re.fullmatch(pattern, str(day))] == [0, *range(7, 400)]
    # 7 days outlive a run at the default deadlines as a stack raises them: claimed, queued, tuning and evaluating
    # one after the other
    settings = config.Settings.from_env({"BUCKET_NAME": "b", "RUNS_TABLE_NAME": "t", "TOPIC_ARN": "a",
                                         "SAGEMAKER_ROLE_ARN": "r"})
    assert sum(settings.run_deadlines.values()) < 7 * 86400


def test_a_claim_waiting_for_its_first_restart_outlasts_start_tuning_s_queued_events():
    """A claim past its deadline that no restart has tried waits for one up to claims.UNRESTARTED_CLAIM_GRACE_
    SECONDS: at least as long as StartTuning's events may wait in Lambda's queue, so its late event can still come."""
    from reviewtune.core import claims

    event_age = template()["Resources"]["StartTuningFunction"]["Properties"]["EventInvokeConfig"]["MaximumEventAgeInSeconds"]
    assert event_age <= claims.UNRESTARTED_CLAIM_GRACE_SECONDS
