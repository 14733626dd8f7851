from __future__ import annotations

import json
from datetime import datetime

import boto3
import pytest
from botocore.stub import Stubber

from reviewtune.core import names
from reviewtune.core.metrics import OBJECTIVE_METRIC
from reviewtune.local.sagemaker.request_validation import validate_request
from tests.support.aws import REGION, load_event, load_handler
from tests.unit.test_dataset import balanced_rows, make_file

TUNING_ARN = "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/x"


def drop(stack, key: str, body: bytes) -> dict:
    s3 = boto3.client("s3", region_name=REGION)
    response = s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    event = load_event("s3_object_created.json")
    event["detail"]["bucket"]["name"] = stack.bucket
    event["detail"]["object"].update(
        {"key": key.replace(" ", "+").replace("(", "%28").replace(")", "%29"), "etag": response["ETag"].strip('"'),
         "version-id": response["VersionId"], "size": len(body)}
    )
    return event


class SageMakerRecorder:
    """Stubs the function's SageMaker client and keeps the requests it was given (validated against the API model)."""

    def __init__(self, module):
        self.client = module.ctx.clients.sagemaker
        self.stubber = Stubber(self.client)
        self.requests: list[tuple[str, dict]] = []
        self.client.meta.events.register("provide-client-params.sagemaker.*", self._record)

    def _record(self, params, model, **_):
        validate_request(model.name, params)  # patterns and lengths too, which botocore's own check leaves out
        self.requests.append((model.name, params))

    def __enter__(self):
        self.stubber.activate()
        return self

    def __exit__(self, *exc):
        self.stubber.deactivate()


@pytest.fixture
def start_tuning(stack):
    return load_handler("start_tuning")


def test_valid_file_is_split_and_starts_one_tuning_job(stack, start_tuning, lambda_context):
    event = drop(stack, "incoming/team a/summer reviews (1).tsv", make_file(balanced_rows(40)))
    with SageMakerRecorder(start_tuning) as sm:
        sm.stubber.add_response("create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": TUNING_ARN})
        result = start_tuning.handler(event, lambda_context)
        sm.stubber.assert_no_pending_responses()

    run_id = result["run_id"]
    assert result["status"] == "TUNING" and names.TUNING_JOB_NAME_PATTERN.match(run_id) and len(run_id) <= 32
    operation, request = sm.requests[0]
    assert operation == "CreateHyperParameterTuningJob"
    assert request["HyperParameterTuningJobName"] == run_id
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": OBJECTIVE_METRIC}
    assert config["ParameterRanges"]["ContinuousParameterRanges"][0]["Name"] == "learning_rate"
    assert config["ParameterRanges"]["CategoricalParameterRanges"][0] == {"Name": "train_batch_size", "Values": ["128", "256"]}
    definition = request["TrainingJobDefinition"]
    regexes = {m["Name"]: m["Regex"] for m in definition["AlgorithmSpecification"]["MetricDefinitions"]}
    assert regexes["validation:accuracy"] == r"val_acc: ([0-9.]+)" and regexes["validation:loss"] == r"val_loss: ([0-9.]+)"
    static = definition["StaticHyperParameters"]
    assert static["model_name_or_path"] == "roberta-base" and static["sagemaker_program"] == "train.py"
    assert "learning_rate" not in static and "train_batch_size" not in static
    for key in ("freeze_bert_layer", "max_seq_length", "epochs", "train_steps_per_epoch", "validation_batch_size",
                "validation_steps_per_epoch", "seed", "run_validation"):
        assert key in static
    assert static["max_train_seconds"] == "0"  # no time limit in the cloud, but always named (warm start compares names)
    assert static["keep_layers"] == "0"  # every layer of the model, and always named for the same reason
    assert static["frozen_cache_mb"] == "0"  # nothing kept, and always named for the same reason
    assert "train:planned_steps_pct" in regexes

    s3 = boto3.client("s3", region_name=REGION)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in definition["InputDataConfig"]}
    assert channels == {s: f"s3://{stack.bucket}/runs/{run_id}/data/{s}/" for s in ("train", "validation")}
    sizes = {}
    for split in ("train", "validation", "test"):
        body = s3.get_object(Bucket=stack.bucket, Key=names.split_key(run_id, split))["Body"].read().decode()
        assert body.startswith("sentiment\treview_body\n")
        sizes[split] = body.count("\n") - 1
    assert sizes == {"train": 108, "validation": 6, "test": 6}

    code_key = static["sagemaker_submit_directory"].split(stack.bucket + "/", 1)[1]
    assert s3.head_object(Bucket=stack.bucket, Key=code_key)["ContentLength"] > 0

    item = stack.run(run_id)
    assert item["status"] == "TUNING" and item["tuning_job_arn"] == TUNING_ARN
    assert item["dataset"] == "team a/summer reviews (1).tsv"
    assert item["source"]["key"] == "incoming/team a/summer reviews (1).tsv"
    assert item["data"]["summary"]["rows"] == sizes
    assert stack.messages() == []


def test_duplicate_events_start_nothing_new(stack, start_tuning, lambda_context):
    event = drop(stack, "incoming/a.tsv", make_file(balanced_rows(20)))
    with SageMakerRecorder(start_tuning) as sm:
        sm.stubber.add_response("create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": TUNING_ARN})
        first = start_tuning.handler(event, lambda_context)
        redelivered = dict(event, id="another-event-id")
        second = start_tuning.handler(redelivered, lambda_context)
        # After the idempotency record is gone, the run item still prevents a second job.
        from reviewtune.core.tuning import DroppedObject
        from reviewtune.core.tuning import start_tuning as core_start

        detail = event["detail"]
        obj = DroppedObject(stack.bucket, "incoming/a.tsv", detail["object"]["version-id"], detail["object"]["etag"], None)
        third = core_start(obj, start_tuning.ctx.settings, start_tuning.ctx.clients)
    assert [name for name, _ in sm.requests] == ["CreateHyperParameterTuningJob"]
    assert second["run_id"] == first["run_id"] == third["run_id"]
    assert third["duplicate"] is True


def test_new_version_of_the_same_key_is_a_new_run(stack, start_tuning, lambda_context):
    with SageMakerRecorder(start_tuning) as sm:
        sm.stubber.add_response("create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": TUNING_ARN})
        sm.stubber.add_response("create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": TUNING_ARN + "2"})
        one = start_tuning.handler(drop(stack, "incoming/a.tsv", make_file(balanced_rows(20))), lambda_context)
        two = start_tuning.handler(drop(stack, "incoming/a.tsv", make_file(balanced_rows(21))), lambda_context)
    assert one["run_id"] != two["run_id"]


def test_bad_file_is_rejected_kept_recorded_and_notified(stack, start_tuning, lambda_context):
    event = drop(stack, "incoming/bad.csv", b"text,score\nhello,5\n")
    with SageMakerRecorder(start_tuning) as sm:
        result = start_tuning.handler(event, lambda_context)
    assert sm.requests == []
    assert result["status"] == "REJECTED" and "no label column" in result["reason"]
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_object(Bucket=stack.bucket, Key="rejected/bad.csv")["Body"].read() == b"text,score\nhello,5\n"
    assert s3.get_object(Bucket=stack.bucket, Key="incoming/bad.csv")["Body"].read() == b"text,score\nhello,5\n"
    error = json.loads(s3.get_object(Bucket=stack.bucket, Key="rejected/bad.csv.error.json")["Body"].read())
    assert "no label column" in error["reason"]
    item = stack.run(result["run_id"])
    assert item["status"] == "REJECTED" and "no label column" in item["failure_reason"]
    [message] = stack.messages()
    assert "rejected" in message["Subject"] and "no label column" in message["Message"]
    assert message["MessageAttributes"]["status"]["Value"] == "REJECTED"


def test_the_review_text_a_rejection_quotes_stays_out_of_the_function_s_log(stack, start_tuning, lambda_context, caplog):
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    quoted = "Jane Doe of 12 Elm St hated the delivery"
    rows = "".join(f"-1\treview {i}\n" for i in range(30)) + f"{quoted}\t1\n"  # one row with its columns swapped
    caplog.set_level("INFO")
    result = start_tuning.handler(drop(stack, "incoming/jane.tsv", f"sentiment\treview_body\n{rows}".encode()),
                                  lambda_context)
    assert result["status"] == "REJECTED" and quoted[:30] in result["reason"]  # the run and its message quote it
    assert quoted[:30] in stack.run(result["run_id"])["failure_reason"]
    formatter = LambdaPowertoolsFormatter()  # each record as the function writes it to CloudWatch Logs
    lines = [formatter.format(record) for record in caplog.records]
    (rejected,) = [line for line in lines if '"file rejected"' in line]
    assert result["run_id"] in rejected and "rejected/jane.tsv.error.json" in rejected
    assert [line for line in lines if quoted[:30] in line] == []


def test_sagemaker_validation_error_fails_the_run_with_its_message(stack, start_tuning, lambda_context):
    event = drop(stack, "incoming/a.tsv", make_file(balanced_rows(20)))
    with SageMakerRecorder(start_tuning) as sm:
        sm.stubber.add_client_error("create_hyper_parameter_tuning_job", "ValidationException", "Instance type not supported")
        result = start_tuning.handler(event, lambda_context)
    assert result["status"] == "FAILED"
    assert "Instance type not supported" in stack.run(result["run_id"])["failure_reason"]
    [message] = stack.messages()
    assert "Instance type not supported" in message["Message"]


def test_retry_after_the_job_was_created_completes_the_record(stack, start_tuning, lambda_context):
    event = drop(stack, "incoming/a.tsv", make_file(balanced_rows(20)))
    with SageMakerRecorder(start_tuning) as sm:
        sm.stubber.add_client_error("create_hyper_parameter_tuning_job", "ResourceInUse", "Resource Already Exists")
        sm.stubber.add_response("describe_hyper_parameter_tuning_job", _describe(TUNING_ARN))
        result = start_tuning.handler(event, lambda_context)
    item = stack.run(result["run_id"])
    assert item["tuning_job_arn"] == TUNING_ARN
    # the job's own limits, each where its description says it (the rest as sent): its 4 trials one at a time
    assert (item["config"]["max_jobs"], item["config"]["max_parallel_jobs"]) == (4, 1)
    given = datetime.fromisoformat(item["deadline_at"]) - datetime.fromisoformat(item["status_history"]["TUNING"])
    assert given.total_seconds() >= 4 * item["config"]["max_runtime_seconds"]


def _describe(arn: str) -> dict:
    return {
        "HyperParameterTuningJobName": "x",
        "HyperParameterTuningJobArn": arn,
        "HyperParameterTuningJobConfig": {"Strategy": "Bayesian", "ResourceLimits": {"MaxParallelTrainingJobs": 1}},
        "HyperParameterTuningJobStatus": "InProgress",
        "CreationTime": datetime(2026, 1, 1),
        "TrainingJobStatusCounters": {},
        "ObjectiveStatusCounters": {},
    }


def test_an_object_with_bytes_whose_key_ends_in_a_slash_is_rejected_not_ignored(stack, start_tuning, lambda_context):
    event = drop(stack, "incoming/team a/", b"sentiment\treview_body\n1\tgreat\n")
    with SageMakerRecorder(start_tuning) as sm:
        result = start_tuning.handler(event, lambda_context)
    assert result["status"] == "REJECTED" and sm.requests == []
    item = stack.run(result["run_id"])
    assert item["status"] == "REJECTED" and item["failure_reason"].startswith("'team a/' is not a file reviewtune reads")
    [message] = stack.messages()
    assert "rejected" in message["Subject"]
    assert item["rejected_uri"] == f"s3://{stack.bucket}/rejected/team a/"
    s3 = boto3.client("s3", region_name=REGION)
    kept = s3.get_object(Bucket=stack.bucket, Key="rejected/team a/", VersionId=item["rejected_version_id"])
    assert kept["Body"].read() == b"sentiment\treview_body\n1\tgreat\n"  # the file is not lost
    assert json.loads(s3.get_object(Bucket=stack.bucket, Key="rejected/team a/.error.json")["Body"].read())


@pytest.mark.parametrize(("key", "body", "status", "dataset"), [
    ("incoming/", b"sentiment\treview_body\n1\tgreat\n", "REJECTED", names.NAMELESS_DATASET),
    # 813 bytes as stored; in NFC 2,404 bytes, past what a DynamoDB key holds: the dataset keeps the key's spelling
    ("incoming/" + "\U0001D160" * 200 + ".tsv", None, "TUNING", "\U0001D160" * 200 + ".tsv"),
])
def test_a_key_whose_dataset_name_would_be_empty_or_too_long_for_dynamodb_still_gets_its_run(
    stack, start_tuning, lambda_context, key, body, status, dataset
):
    event = drop(stack, key, make_file(balanced_rows(40)) if body is None else body)
    with SageMakerRecorder(start_tuning) as sm:
        if status == "TUNING":
            sm.stubber.add_response("create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": TUNING_ARN})
        result = start_tuning.handler(event, lambda_context)
    assert result["status"] == status
    item = stack.run(result["run_id"])
    assert item["dataset"] == dataset and item["source"]["key"] == key
    if status == "REJECTED":
        [message] = stack.messages()
        assert "rejected" in message["Subject"]


def test_an_object_of_another_bucket_is_ignored(stack, start_tuning, lambda_context):
    """Only the rule keeps other buckets' events away (a manual invoke, a redrive could bring one): nothing of that
    bucket is read, recorded, copied or told here."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="another-stack-data")
    put = s3.put_object(Bucket="another-stack-data", Key="incoming/a.tsv", Body=b"id,notes\n1,x\n")
    event = drop(stack, "incoming/ours.tsv", b"sentiment\treview_body\n")
    event["detail"]["bucket"]["name"] = "another-stack-data"
    event["detail"]["object"].update({"key": "incoming/a.tsv", "etag": put["ETag"].strip('"'), "size": 13,
                                      "version-id": put.get("VersionId")})

    with SageMakerRecorder(start_tuning) as sm:
        result = start_tuning.handler(event, lambda_context)

    assert result == {"status": "IGNORED", "key": "incoming/a.tsv", "bucket": "another-stack-data"}
    assert sm.requests == [] and stack.messages() == []
    assert not [i for i in boto3.resource("dynamodb", region_name=REGION).Table(stack.runs_table).scan()["Items"]
                if "source" in i]


@pytest.mark.parametrize("key", ["runs/notes.tsv", "rejected/a.tsv", "incoming/team a/"])
def test_objects_outside_incoming_and_folder_markers_are_ignored(stack, start_tuning, lambda_context, key):
    event = drop(stack, key, b"")
    with SageMakerRecorder(start_tuning) as sm:
        result = start_tuning.handler(event, lambda_context)
    assert result["status"] == "IGNORED" and sm.requests == []
    assert stack.messages() == []
