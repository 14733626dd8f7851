"""events/*.json: AWS's event shapes, matched by the template's rules and consistent with the naming contract."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from reviewtune.core import events as models
from reviewtune.core import names
from reviewtune.core.errors import InvalidEventError
from tests.template.helpers import EVENTS_DIR, load_event, matches, parameter_defaults, rule_pattern

EVENT_RULES = {
    # sample event -> (function whose rule must match it, the handler's event reader)
    "s3_object_created.json": ("StartTuningFunction", models.object_created),
    "s3_object_created_encoded_key.json": ("StartTuningFunction", models.object_created),
    "tuning_job_completed.json": ("StartEvaluationFunction", models.tuning_job_state_change),
    "tuning_job_failed.json": ("StartEvaluationFunction", models.tuning_job_state_change),
    "tuning_job_stopped.json": ("StartEvaluationFunction", models.tuning_job_state_change),
    "processing_job_completed.json": ("RecordResultsFunction", models.processing_job_state_change),
    "processing_job_failed.json": ("RecordResultsFunction", models.processing_job_state_change),
}
PREFIX = parameter_defaults()["JobNamePrefix"]
BUCKET = load_event("s3_object_created.json")["detail"]["bucket"]["name"]


def _run_id() -> str:
    detail = load_event("s3_object_created.json")["detail"]
    identity = names.object_identity(
        detail["bucket"]["name"],
        detail["object"]["key"],  # EventBridge sends the key as stored
        detail["object"]["version-id"],
        None,
    )
    return names.tuning_job_name(PREFIX, identity)


def test_every_sample_event_is_listed_here():
    assert sorted(path.name for path in Path(EVENTS_DIR).glob("*.json")) == sorted(EVENT_RULES)


@pytest.mark.parametrize("name", sorted(EVENT_RULES))
def test_sample_event_matches_only_its_function_s_rule(name):
    event = load_event(name)
    function_id, _ = EVENT_RULES[name]
    for other in {"StartTuningFunction", "StartEvaluationFunction", "RecordResultsFunction"}:
        assert matches(rule_pattern(other, BUCKET), event) is (other == function_id), other


@pytest.mark.parametrize("name", sorted(EVENT_RULES))
def test_sample_event_is_read_by_the_handler_s_reader_and_by_no_other(name):
    _, reader = EVENT_RULES[name]
    event = load_event(name)
    read = reader(event)
    detail = event["detail"]
    if reader is models.object_created:
        assert (read.bucket, read.object.key) == (detail["bucket"]["name"], detail["object"]["key"])
    else:
        job = "HyperParameterTuningJob" if reader is models.tuning_job_state_change else "ProcessingJob"
        assert (read.name, read.status) == (detail[f"{job}Name"], detail[f"{job}Status"])
        assert read.detail == detail
    for other in {r for _, r in EVENT_RULES.values()} - {reader}:
        with pytest.raises(InvalidEventError):
            other(event)


@pytest.mark.parametrize(
    ("key", "routed", "handled", "readable"),
    [
        ("incoming/reviews.tsv", True, True, True),
        ("incoming/2024/q3/reviews.csv", True, True, True),
        ("incoming/REVIEWS.TSV", True, True, True),
        ("incoming/Reviews.Csv", True, True, True),
        ("incoming/reviews.tsv.gz", True, True, True),
        ("incoming/reviews.json", True, True, False),  # rejected with a message, not ignored
        ("incoming/reviews.xlsx", True, True, False),
        ("incoming/a folder/", True, False, False),  # folder marker: ignored
        ("rejected/reviews.tsv", False, False, True),
        ("rejected/reviews.csv", False, False, True),
        ("runs/reviewtune-0123456789abcdef/data/train/train.tsv", False, False, True),
        ("code/0123/src/train.py", False, False, False),
    ],
)
def test_every_object_under_incoming_reaches_start_tuning_which_decides(key, routed, handled, readable):
    from reviewtune.core.formats import file_format

    event = load_event("s3_object_created.json")
    event["detail"]["object"]["key"] = key
    assert matches(rule_pattern("StartTuningFunction", BUCKET), event) is routed
    assert names.is_accepted_key(key) is handled
    assert (file_format(key) is not None) is readable


def test_objects_of_another_bucket_or_other_s3_events_start_nothing():
    event = load_event("s3_object_created.json")
    pattern = rule_pattern("StartTuningFunction", BUCKET)
    other_bucket = copy.deepcopy(event)
    other_bucket["detail"]["bucket"]["name"] = "someone-elses-bucket"
    tagged = copy.deepcopy(event)
    tagged["detail-type"] = "Object Tags Added"
    assert matches(pattern, event)
    assert not matches(pattern, other_bucket)
    assert not matches(pattern, tagged)


@pytest.mark.parametrize(
    ("name", "status_field"),
    [
        ("tuning_job_completed.json", "HyperParameterTuningJobStatus"),
        ("processing_job_completed.json", "ProcessingJobStatus"),
    ],
)
@pytest.mark.parametrize("status", ["InProgress", "Stopping"])
def test_jobs_still_running_do_not_trigger(name, status_field, status):
    event = load_event(name)
    function_id, _ = EVENT_RULES[name]
    event["detail"][status_field] = status
    assert not matches(rule_pattern(function_id, BUCKET), event)


@pytest.mark.parametrize(
    ("name", "name_field"),
    [
        ("tuning_job_completed.json", "HyperParameterTuningJobName"),
        ("processing_job_completed.json", "ProcessingJobName"),
    ],
)
@pytest.mark.parametrize(
    "job_name", ["other-3f2a9c1d7e5b4a60", f"{PREFIX}x-3f2a9c1d7e5b4a60", "3f2a9c1d7e5b4a60"]
)
def test_jobs_of_other_stacks_do_not_trigger(name, name_field, job_name):
    event = load_event(name)
    function_id, _ = EVENT_RULES[name]
    event["detail"][name_field] = job_name
    assert not matches(rule_pattern(function_id, BUCKET), event)


def test_encoded_key_sample_carries_a_url_encoded_key():
    key = load_event("s3_object_created_encoded_key.json")["detail"]["object"]["key"]
    as_given, decoded = names.key_candidates(key)  # the key as given is tried first, then its decoded form
    assert as_given == key and decoded != key
    assert " " in decoded and "é" in decoded
    assert names.is_accepted_key(decoded)


def test_s3_samples_have_the_fields_of_an_eventbridge_object_created_event():
    for name in ("s3_object_created.json", "s3_object_created_encoded_key.json"):
        event = load_event(name)
        assert event["resources"] == [f"arn:aws:s3:::{event['detail']['bucket']['name']}"]
        assert set(event["detail"]) == {
            "version",
            "bucket",
            "object",
            "request-id",
            "requester",
            "source-ip-address",
            "reason",
        }
        assert set(event["detail"]["object"]) == {"key", "size", "etag", "version-id", "sequencer"}
        assert event["detail"]["reason"] == "PutObject"


def test_job_samples_follow_the_naming_contract_of_the_s3_sample():
    run_id = _run_id()
    for name in ("tuning_job_completed.json", "tuning_job_failed.json", "tuning_job_stopped.json"):
        detail = load_event(name)["detail"]
        assert detail["HyperParameterTuningJobName"] == run_id
        assert detail["HyperParameterTuningJobArn"].endswith(f":hyper-parameter-tuning-job/{run_id}")
        assert "BestTrainingJob" not in detail  # the state-change event never carries it
        assert detail["CreationTime"].isdigit() and detail["LastModifiedTime"].isdigit()
        output = detail["TrainingJobDefinition"]["OutputDataConfig"]["S3OutputPath"]
        assert output == names.s3_uri(BUCKET, names.models_prefix(run_id))
    assert "FailureReason" in load_event("tuning_job_failed.json")["detail"]
    for name in ("processing_job_completed.json", "processing_job_failed.json"):
        detail = load_event(name)["detail"]
        assert detail["ProcessingJobName"] == names.evaluation_job_name(run_id)
        assert detail["ProcessingJobArn"].endswith(f":processing-job/{names.evaluation_job_name(run_id)}")
        (output,) = detail["ProcessingOutputConfig"]["Outputs"]
        assert output["OutputName"] == "evaluation"
        assert output["S3Output"]["S3Uri"] == names.s3_uri(
            BUCKET, names.evaluation_prefix(run_id).rstrip("/")
        )
        assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output/evaluation"
    assert "FailureReason" in load_event("processing_job_failed.json")["detail"]
